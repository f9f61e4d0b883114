"""Tiny stand-ins of the paper's hub checkpoints: the real ``model_type`` and architecture, the files
each repo really publishes, sizes shrunk.

=============================  =========================================================================
repo                           files (as published on the hub)
=============================  =========================================================================
google/gemma-2b-it, -7b-it     config.json, generation_config.json, model-0000k-of-0000n.safetensors (2b: 2
                               shards, 7b: more) + model.safetensors.index.json, tokenizer.model,
                               tokenizer.json, tokenizer_config.json, special_tokens_map.json, and the
                               repo's ``<name>.gguf`` (which a download must skip)
openai/clip-vit-large-patch14  config.json (model_type ``clip``: the full CLIP, text half too),
-336                           preprocessor_config.json, ``pytorch_model.bin`` and no safetensors,
                               plus tf_model.h5 and flax_model.msgpack (skipped)
facebook/dinov2-giant          config.json (model_type ``dinov2``, SwiGLU MLP as giant),
                               preprocessor_config.json (BitImageProcessor), model.safetensors and
                               pytorch_model.bin (a download takes only the safetensors)
=============================  =========================================================================

Shrunk, and said here: widths and depths; the towers' input side (56 px instead of CLIP's 336 and
DINOv2's 224, patch 14 kept, so 16 image tokens instead of 576 and 256, and ``image_size`` in the
configs to match); the Gemma vocabulary (a few hundred SentencePiece pieces trained on the toy text,
Gemma's special ids, ``<start_of_turn>``/``<end_of_turn>`` and no ``<image>``, as in Gemma). Not
published here, though the real repos have them: CLIP's own text tokenizer files (the pipeline never
reads them) and the repos' READMEs and licences. Weights are random: the rehearsal proves layouts,
not learning.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from transformers import (
    BitImageProcessor,
    CLIPConfig,
    CLIPImageProcessor,
    CLIPModel,
    Dinov2Config,
    Dinov2Model,
    GemmaConfig,
    GemmaForCausalLM,
)

from llava_gemma.toy.tokenizer import train_toy_tokenizer
from llava_gemma.toy.towers import IMAGENET_MEAN, IMAGENET_STD, OPENAI_CLIP_MEAN, OPENAI_CLIP_STD

TOWER_SIDE = 56  # px; patch 14 -> 4 x 4 = 16 image tokens
# Gemma's own chat template (tokenizer_config.json of the -it repos), which the pipeline replaces by its own.
GEMMA_IT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if (message['role'] == 'assistant') %}{% set role = 'model' %}{% else %}{% set role = message['role'] %}"
    "{% endif %}{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{'<start_of_turn>model\n'}}{% endif %}")
GEMMA_SIZES = {"2b": dict(hidden_size=64, num_layers=2, num_heads=2, num_kv_heads=1, head_dim=32, shards=2),
               "7b": dict(hidden_size=96, num_layers=2, num_heads=4, num_kv_heads=4, head_dim=24, shards=4)}


def build_gemma(out: Path, corpus: list[str], size: str, seed: int = 0) -> Path:
    """A tiny ``GemmaForCausalLM`` repo (-it flavour): sharded safetensors with index, tokenizer, generation config."""
    spec = GEMMA_SIZES[size]
    torch.manual_seed(seed)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = train_toy_tokenizer(corpus, out, vocab_size=600, image_token=False)
    tokenizer.chat_template = GEMMA_IT_TEMPLATE
    config = GemmaConfig(
        vocab_size=len(tokenizer), hidden_size=spec["hidden_size"], intermediate_size=4 * spec["hidden_size"],
        num_hidden_layers=spec["num_layers"], num_attention_heads=spec["num_heads"],
        num_key_value_heads=spec["num_kv_heads"], head_dim=spec["head_dim"], max_position_embeddings=8192,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, tie_word_embeddings=True, torch_dtype="bfloat16")
    model = GemmaForCausalLM(config)
    total = sum(p.numel() * p.element_size() for p in model.state_dict().values())
    model.save_pretrained(out, safe_serialization=True, max_shard_size=f"{total // spec['shards'] // 1000 + 1}KB")
    tokenizer.save_pretrained(out)
    # The hub repos keep the chat template inside tokenizer_config.json (no chat_template.jinja file).
    (out / "chat_template.jinja").unlink(missing_ok=True)
    tok_config = json.loads((out / "tokenizer_config.json").read_text())
    (out / "tokenizer_config.json").write_text(json.dumps({**tok_config, "chat_template": GEMMA_IT_TEMPLATE}, indent=2))
    (out / f"gemma-{size}-it.gguf").write_bytes(b"GGUF" + bytes(60))  # published beside, never downloaded
    shards = sorted(out.glob("model-*.safetensors"))
    if len(shards) < 2 or not (out / "model.safetensors.index.json").is_file():
        raise RuntimeError(f"the {size} stand-in was saved unsharded; lower max_shard_size in rehearsal/models.py.")
    return out


def build_clip(out: Path, seed: int = 0) -> Path:
    """openai/clip-vit-large-patch14-336 in miniature: a full ``CLIPModel`` published as pytorch_model.bin only."""
    torch.manual_seed(seed)
    out.mkdir(parents=True, exist_ok=True)
    config = CLIPConfig(
        text_config=dict(vocab_size=100, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, max_position_embeddings=16),
        vision_config=dict(image_size=TOWER_SIDE, patch_size=14, hidden_size=32, intermediate_size=64,
                           num_hidden_layers=3, num_attention_heads=2, hidden_act="quick_gelu"),
        projection_dim=16)
    model = CLIPModel(config)
    config.save_pretrained(out)
    torch.save(model.state_dict(), out / "pytorch_model.bin")
    CLIPImageProcessor(size={"shortest_edge": TOWER_SIDE}, crop_size={"height": TOWER_SIDE, "width": TOWER_SIDE},
                       image_mean=OPENAI_CLIP_MEAN, image_std=OPENAI_CLIP_STD).save_pretrained(out)
    (out / "tf_model.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(56))
    (out / "flax_model.msgpack").write_bytes(bytes(64))
    return out


def build_dinov2(out: Path, seed: int = 0) -> Path:
    """facebook/dinov2-giant in miniature: ``Dinov2Model`` with SwiGLU, model.safetensors and pytorch_model.bin."""
    torch.manual_seed(seed)
    out.mkdir(parents=True, exist_ok=True)
    config = Dinov2Config(image_size=TOWER_SIDE, patch_size=14, hidden_size=32, num_hidden_layers=3,
                          num_attention_heads=2, mlp_ratio=4, use_swiglu_ffn=True)
    model = Dinov2Model(config)
    model.save_pretrained(out, safe_serialization=True)
    torch.save(model.state_dict(), out / "pytorch_model.bin")
    BitImageProcessor(size={"shortest_edge": TOWER_SIDE * 8 // 7},
                      crop_size={"height": TOWER_SIDE, "width": TOWER_SIDE}, do_center_crop=True,
                      image_mean=IMAGENET_MEAN, image_std=IMAGENET_STD, do_convert_rgb=True).save_pretrained(out)
    return out


MODEL_BUILDERS = {"gemma": build_gemma, "clip": build_clip, "dinov2": build_dinov2}
