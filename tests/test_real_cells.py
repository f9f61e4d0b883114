"""The eight real cells of config.yaml, built from their shipped architectures on the meta device.

Expected sizes are computed here from the published dimensions (not read from the shipped JSON),
so a wrong value in a JSON file fails; the totals are also checked against the model cards'
rounded figures (Gemma 2B 2.51e9, 7B 8.54e9, CLIP ViT-L/14-336 vision 3.04e8, DINOv2-giant 1.14e9).
"""

from __future__ import annotations

from functools import cache

import pytest
import torch
import yaml
from llava_gemma.errors import UserError
from llava_gemma.model.architectures import architecture, registry
from llava_gemma.model.architectures.cells import meta_cell, real_processor
from llava_gemma.model.assemble import image_token_count, prepare_tokenizer
from llava_gemma.study.config import StudyConfig
from llava_gemma.toy.tokenizer import train_toy_tokenizer
from PIL import Image

from .conftest import ROOT

GEMMA_VOCAB = 256_000
EMBEDDING_ROWS = 256_064  # <image> appended (id 256000), grown to a multiple of 64 as assemble_llava does


def gemma_params(d: int, layers: int, heads: int, kv_heads: int, head_dim: int, ffn: int) -> int:
    attention = d * heads * head_dim * 2 + d * kv_heads * head_dim * 2  # q, o and k, v; no biases
    per_layer = attention + 3 * d * ffn + 2 * d  # GeGLU MLP, two RMSNorms
    return EMBEDDING_ROWS * d + layers * per_layer + d  # tied head, final norm


def vit_params(d: int, layers: int, mlp: int, patch: int, positions: int, patch_bias: bool, extra: int) -> int:
    """A ViT: layers, patch embedding, position table, CLS token, and ``extra`` (norms, mask token)."""
    per_layer = 4 * (d * d + d) + mlp + 4 * d  # qkv + out with biases, MLP, two LayerNorms
    return layers * per_layer + 3 * patch * patch * d + patch_bias * d + positions * d + d + extra


CLIP_MLP = 2 * 1024 * 4096 + 4096 + 1024
DINO_SWIGLU = 1536 * 2 * 4096 + 2 * 4096 + 4096 * 1536 + 1536  # hidden 4096 = round8(int(6144 * 2 / 3))
EXPECTED = {
    "google/gemma-2b-it": (gemma_params(2048, 18, 8, 1, 256, 16384), 2.51e9, 2048),
    "google/gemma-7b-it": (gemma_params(3072, 28, 16, 16, 256, 24576), 8.54e9, 3072),
    # CLIP: class embedding, 577 positions, pre- and post-LayerNorm.
    "openai/clip-vit-large-patch14-336": (vit_params(1024, 24, CLIP_MLP, 14, 577, False, extra=2 * 2 * 1024),
                                          3.04e8, 1024),
    # DINOv2: CLS and mask tokens, 37 x 37 + 1 positions, two LayerScales per layer, final LayerNorm.
    "facebook/dinov2-giant": (vit_params(1536, 40, DINO_SWIGLU + 2 * 1536, 14, 1370, True, extra=1536 + 2 * 1536),
                              1.14e9, 1536),
}
IMAGE_TOKENS = {"openai/clip-vit-large-patch14-336": 576, "facebook/dinov2-giant": 256}
IMAGE_SIDE = {"openai/clip-vit-large-patch14-336": 336, "facebook/dinov2-giant": 224}


def paper_cells() -> list[tuple[str, str, str]]:
    study = StudyConfig(yaml.safe_load((ROOT / "config.yaml").read_text()))
    return [(c.name, study.model_source(c.language_model)["hub"], study.model_source(c.vision_tower)["hub"])
            for c in study.cells]


@cache
def cell(lm: str, tower: str):
    return meta_cell(lm, tower)  # pretrain and skip cells share one model: build each pair once


def test_paper_grid_has_eight_cells_all_shipped():
    cells = paper_cells()
    assert len(cells) == 8
    assert {hub for _, lm, tower in cells for hub in (lm, tower)} <= set(registry())


@pytest.mark.parametrize(("name", "lm", "tower"), paper_cells(), ids=[c[0] for c in paper_cells()])
def test_real_cell_counts_per_part_and_stage(name, lm, tower):
    built = cell(lm, tower)
    assert all(p.device.type == "meta" for p in built.model.parameters())
    counts = built.parameters()
    lm_exact, lm_card, lm_dim = EXPECTED[lm]
    tower_exact, tower_card, vision_dim = EXPECTED[tower]
    assert counts["language_model"] == lm_exact
    assert counts["language_model"] == pytest.approx(lm_card, rel=0.005)
    assert counts["vision_tower"] == tower_exact
    assert counts["vision_tower"] == pytest.approx(tower_card, rel=0.005)
    assert counts["connector"] == vision_dim * lm_dim + lm_dim + lm_dim * lm_dim + lm_dim

    assert built.trainable("stage1") == counts["connector"]
    assert not any(p.requires_grad for p in built.model.model.vision_tower.parameters())
    assert built.trainable("stage2") == counts["connector"] + counts["language_model"]
    assert not any(p.requires_grad for p in built.model.model.vision_tower.parameters())

    config = built.model.config
    assert built.image_tokens == IMAGE_TOKENS[tower]
    assert config.image_token_index == GEMMA_VOCAB and config.text_config.vocab_size == EMBEDDING_ROWS
    assert config.vision_feature_layer == -2 and config.vision_feature_select_strategy == "default"
    assert built.model.lm_head.weight is built.model.model.language_model.embed_tokens.weight


@pytest.mark.parametrize("tower", list(IMAGE_TOKENS))
def test_tower_yields_one_feature_per_image_token(tower):
    """A meta-device forward of tower and connector: the features the LM receives per image."""
    built = cell("google/gemma-2b-it", tower)
    side = IMAGE_SIDE[tower]
    with torch.no_grad():
        features = built.model.model.get_image_features(
            pixel_values=torch.empty(1, 3, side, side, device="meta"), vision_feature_layer=-2,
            vision_feature_select_strategy="default")
    features = features[0] if isinstance(features, list | tuple) else features
    assert tuple(features.shape)[-2:] == (IMAGE_TOKENS[tower], 2048)


@pytest.fixture(scope="module")
def gemma_style_tokenizer(tmp_path_factory):
    """A tiny SentencePiece Gemma-style tokenizer (the real one is not available offline)."""
    out = tmp_path_factory.mktemp("tokenizer")
    lines = ["Describe the image briefly.", "a red circle on a grey square.", "What colour is the circle?"] * 20
    train_toy_tokenizer(lines, out, vocab_size=300)
    return out


@pytest.mark.parametrize("tower", list(IMAGE_TOKENS))
def test_processor_expands_image_to_the_cells_token_count(gemma_style_tokenizer, tower):
    processor = real_processor(tower, prepare_tokenizer(gemma_style_tokenizer))
    assert image_token_count(processor) == IMAGE_TOKENS[tower]
    prompt = processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Describe the image briefly."}]}],
        add_generation_prompt=True, tokenize=False)
    assert prompt.count("<image>") == 1
    inputs = processor(text=[prompt], images=[Image.new("RGB", (500, 375), (200, 30, 30))], return_tensors="pt")
    image_id = processor.tokenizer.convert_tokens_to_ids("<image>")
    assert (inputs["input_ids"] == image_id).sum().item() == IMAGE_TOKENS[tower]
    side = IMAGE_SIDE[tower]
    assert tuple(inputs["pixel_values"].shape) == (1, 3, side, side)


def test_unknown_or_misplaced_architecture_is_a_clear_error():
    with pytest.raises(UserError, match=r"no shipped architecture for .google/gemma-9b..*add its public config"):
        architecture("google/gemma-9b")
    with pytest.raises(UserError, match="is a vision_tower, not a language_model"):
        meta_cell("facebook/dinov2-giant", "openai/clip-vit-large-patch14-336")
