"""The FLOPs formulas against PyTorch's own count, the MFU helpers, and ``llava-gemma estimate``.

Tiny LLaVA models (random weights, eager attention so that FlopCounterMode sees both attention
products) run a real forward and backward per stage; the real-size towers run on the meta device.
"""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from llava_gemma.analysis.planning.estimate import WorkloadDefaults, run_estimate
from llava_gemma.cli import main
from llava_gemma.errors import ConfigError, UserError
from llava_gemma.model.architectures.cells import cell_config, meta_cell
from llava_gemma.model.assemble import llava_config, set_trainable
from llava_gemma.train.flops import (
    CellShapes,
    accounting_metrics,
    achieved_flops_per_second,
    mfu,
    peak_tflops,
    prepared_counts,
    prepared_token_counts,
    training_flops,
)
from llava_gemma.train.supervised_loss import padded_rows, supervised_loss
from torch.utils.flop_counter import FlopCounterMode
from transformers import CLIPVisionConfig, Dinov2Config, GemmaConfig, LlavaForConditionalGeneration

from .conftest import ROOT

IMAGE_ID = 127
CHUNK = 4  # head rows per chunk in the counted runs
TINY_TOWERS = {
    "clip": CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                             image_size=28, patch_size=7),
    "dinov2": Dinov2Config(hidden_size=48, num_hidden_layers=2, num_attention_heads=2, mlp_ratio=4,
                           use_swiglu_ffn=True, image_size=28, patch_size=7),
}
# Grouped-query attention (4 query heads, 2 key/value heads), as Gemma 2B's 8:1.
TINY_GEMMA = GemmaConfig(vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, head_dim=8)


def counted(model, inputs: dict) -> tuple[int, int]:
    """(forward, backward) FLOPs of one training step, through the training loss
    (train/supervised_loss.py), as torch.utils.flop_counter counts them."""
    with FlopCounterMode(display=False) as counter:
        loss, _ = supervised_loss(model, inputs, chunk_rows=CHUNK)
        forward = counter.get_total_flops()
        loss.backward()
    return forward, counter.get_total_flops() - forward


@pytest.mark.parametrize("tower", list(TINY_TOWERS))
@pytest.mark.parametrize("stage", ["stage1", "stage2"])
def test_formula_matches_flop_counter_on_a_tiny_llava(tower, stage):
    torch.manual_seed(0)
    config = llava_config(TINY_GEMMA, TINY_TOWERS[tower], image_token_index=IMAGE_ID, image_seq_length=16)
    model = LlavaForConditionalGeneration._from_config(config, attn_implementation="eager")
    text_before, text_after = 5, 9
    ids = torch.cat([torch.randint(3, 100, (1, text_before)), torch.full((1, 16), IMAGE_ID),
                     torch.randint(3, 100, (1, text_after))], dim=1)
    labels = ids.masked_fill(ids == IMAGE_ID, -100)
    labels[0, :text_before] = -100  # the prompt: 9 answer labels, each predicted by the position before it
    set_trainable(model, stage)
    forward, backward = counted(model, {"input_ids": ids, "pixel_values": torch.randn(1, 3, 28, 28),
                                        "labels": labels})

    shapes = CellShapes.from_llava_config(model.config)
    supervised, rows = text_after, padded_rows(text_after, CHUNK)  # 9 labels, 12 rows: 3 chunks
    flops = training_flops(shapes, stage, text_before + text_after, supervised=supervised)
    # What runs besides the model FLOPs: the model's own head on the last position (forward), and
    # the rows padded for static shapes, and in backward the recomputation of the chunks.
    last_position, recomputed = shapes.language_model.head_forward(1), shapes.language_model.head_forward(rows)
    # Forward: only the rotary table (a 4 x T outer product) is not in the formula.
    counted_forward = flops.vision_forward + flops.connector_forward + flops.lm_forward + last_position
    assert counted_forward + flops.head_forward * (rows / supervised - 1) == pytest.approx(forward, rel=1e-3)
    assert flops.connector_backward + flops.lm_backward + recomputed \
        + flops.head_backward * (rows / supervised - 1) == pytest.approx(backward, rel=1e-3)
    assert flops.head_forward == shapes.language_model.head_forward(supervised)


def test_stage1_backward_is_about_one_forward_and_stage2_about_two():
    shapes = CellShapes.from_llava_config(cell_config("google/gemma-2b-it", "openai/clip-vit-large-patch14-336"))
    one, two = training_flops(shapes, "stage1", 300), training_flops(shapes, "stage2", 300)
    assert one.lm_forward == two.lm_forward and one.vision_forward == two.vision_forward
    assert 1.0 < one.lm_backward / one.lm_forward < 1.1  # attention's backward is 2x even when frozen
    assert two.lm_backward / two.lm_forward == pytest.approx(2.0)
    # A text-only sample costs the LM alone.
    text_only = training_flops(shapes, "stage2", 300, images=0)
    assert text_only.vision_forward == text_only.connector_forward == text_only.connector_backward == 0
    # Entries weighted by sample counts equal the samples listed one by one.
    weighted = training_flops(shapes, "stage2", [300, 300], [1, 0], samples=[3, 2]).total
    assert weighted == pytest.approx(3 * two.total + 2 * text_only.total)


@pytest.mark.parametrize(("tower", "side"), [("openai/clip-vit-large-patch14-336", 336),
                                             ("facebook/dinov2-giant", 224)])
def test_real_tower_and_connector_forward_match_flop_counter_on_meta(tower, side):
    cell = meta_cell("google/gemma-2b-it", tower)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        cell.model.model.get_image_features(pixel_values=torch.empty(1, 3, side, side, device="meta"),
                                            vision_feature_layer=-2, vision_feature_select_strategy="default")
    flops = training_flops(CellShapes.from_llava_config(cell.model.config), "stage1", 0)
    assert flops.vision_forward + flops.connector_forward == pytest.approx(counter.get_total_flops(), rel=0.01)


def test_mfu_helpers_and_peak_resolution():
    assert achieved_flops_per_second(6e15, 10.0) == 6e14
    assert mfu(6e14, 300.0, devices=4) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="wall time"):
        achieved_flops_per_second(1.0, 0.0)
    assert peak_tflops(None, "GAUDI2") == 432.0
    assert peak_tflops(None, "NVIDIA A100-SXM4-80GB") == 312.0
    assert peak_tflops(None, "NVIDIA H100 80GB HBM3") == 989.0
    assert peak_tflops(500.0, "NVIDIA A100-SXM4-80GB") == 500.0  # the config's train.peak_tflops wins
    assert peak_tflops(None, "cpu") is None


def test_accounting_metrics_for_train_metrics_json():
    shapes = CellShapes.from_llava_config(cell_config("google/gemma-2b-it", "facebook/dinov2-giant"))
    text, images = np.array([40, 60]), np.array([1, 1])
    per_sample = training_flops(shapes, "stage1", text, images).total / 2
    metrics = accounting_metrics(shapes, "stage1", text, images, samples_processed=10, wall_seconds=2.0,
                                 devices=2, peak_tflops_per_device=432.0)
    assert metrics["flops_per_sample"] == pytest.approx(per_sample)
    assert metrics["flops_total"] == pytest.approx(10 * per_sample)
    assert metrics["achieved_tflops"] == pytest.approx(10 * per_sample / 2.0 / 1e12)
    assert metrics["mfu"] == pytest.approx(10 * per_sample / 2.0 / (2 * 432e12))
    assert set(metrics["flops_per_sample_by_part"]) >= {"vision_forward", "lm_backward", "head_forward", "total"}
    # The head as it runs: at the supervised positions only (here 30 of 40 and 60 text tokens, plus 256 image).
    head_only = accounting_metrics(shapes, "stage1", text, images, samples_processed=10, wall_seconds=2.0,
                                   devices=2, peak_tflops_per_device=432.0, supervised=np.array([30, 30]))
    saved = metrics["flops_per_sample"] - head_only["flops_per_sample"]
    lm = shapes.language_model
    assert saved == pytest.approx(2 * lm.head_forward(np.mean(text + shapes.image_tokens) - 30))  # forward + input grad
    assert head_only["head_positions_per_sample"] == 30 and metrics["head_positions_per_sample"] is None
    none = accounting_metrics(shapes, "stage1", text, images, samples_processed=10, wall_seconds=2.0, devices=2,
                              peak_tflops_per_device=None)
    assert none["mfu"] is None


def test_estimate_for_the_paper_config():
    result = run_estimate(ROOT / "config.yaml", devices=8, peak_tflops=432.0, mfu=0.4)
    cells = {c["cell"]: c for c in result["cells"]}
    assert len(cells) == 8
    defaults = WorkloadDefaults()
    assert result["workload"]["stage1"]["samples"] == defaults.stage1_samples
    assert result["workload"]["stage2"]["samples"] == defaults.stage2_samples
    for name, c in cells.items():
        assert c["total_flops"] == pytest.approx(c["stage1_flops"] + c["stage2_flops"])
        assert c["predicted_hours"] == pytest.approx(c["total_flops"] / (8 * 432e12 * 0.4) / 3600)
        if name.endswith("_skip"):
            assert c["stage1_flops"] == 0 and c["paper_mfu"] is None
            assert c["stage2_flops"] == cells[name.replace("_skip", "_pretrain")]["stage2_flops"]
        else:
            seconds = {"2b": 4, "7b": 16}[name[:2]] * 3600
            assert c["paper_mfu"] == pytest.approx(c["total_flops"] / seconds / (8 * 432e12))
            assert 0.05 < c["paper_mfu"] < 0.6  # a plausible utilisation, not a unit slip
    # More parameters and more image tokens cost more.
    assert cells["7b_clip_pretrain"]["total_flops"] > 3 * cells["2b_clip_pretrain"]["total_flops"]
    assert cells["2b_clip_pretrain"]["total_flops"] > cells["2b_dinov2_pretrain"]["total_flops"]
    # Stage 2 of the 2B CLIP cell: 624,610 image samples of 300 + 576 tokens, ~6 x 2.0e9 FLOPs per token
    # in the layers, and the head (2,048 x 256,000) at the 120 supervised positions only.
    per_sample = 6 * (2.0e9 * 876 + 2048 * 256_000 * 120)
    assert cells["2b_clip_skip"]["stage2_flops"] == pytest.approx(per_sample * 624_610, rel=0.1)
    parts = cells["2b_clip_skip"]["parts"]["stage2"]
    assert parts["head_forward"] == pytest.approx(2 * 2048 * 256_000 * 120 * 665_298, rel=0.01)  # text-only too
    table = result["markdown"].splitlines()
    first = table[:table.index("")]
    assert table[0].startswith("| cell | stage 1 EFLOP") and len([r for r in first if r.startswith("| ")]) == 9
    assert "| 7b_dinov2_skip | stage2 | 2 | 8 |" in result["markdown"]  # the memory table, Gaudi's ZeRO-2


def test_memory_per_rank_follows_the_zero_accounting():
    from llava_gemma.analysis.planning.memory import cell_memory, memory_estimate
    from llava_gemma.model.architectures.cells import meta_cell

    # 10B parameters, 8B trained, on 8 ranks in bf16: 2 + 2 + 12 bytes per parameter, ZeRO partitioning.
    z2 = memory_estimate("c", "stage2", parameters=10**10, trainable=8 * 10**9, largest_tensor=10**9, zero_stage=2,
                         ranks=8)
    assert (z2.device_weights_gb, z2.device_gradients_gb, z2.device_optimizer_gb) == pytest.approx((20, 2, 12))
    assert (z2.host_load_fp32_gb, z2.host_load_gb) == pytest.approx((40, 20))
    z3 = memory_estimate("c", "stage2", parameters=10**10, trainable=8 * 10**9, largest_tensor=10**9, zero_stage=3,
                         ranks=8)
    assert z3.device_weights_gb == pytest.approx(2.5) and z3.host_load_gb == pytest.approx(2.5 + 2)
    # The 7B DINOv2 cell: about 9.7B parameters, so an fp32 load is about 39 GB on every rank (issue 14).
    meta = meta_cell("google/gemma-7b-it", "facebook/dinov2-giant")
    stage1, stage2 = cell_memory("7b_dinov2_pretrain", meta, {"stage1": 2, "stage2": 3}, 8, "bf16")
    assert 38 < stage1.host_load_fp32_gb < 40 and stage1.host_load_gb == pytest.approx(stage1.host_load_fp32_gb / 2)
    assert stage2.host_load_gb < stage1.host_load_gb / 4  # ZeRO-3 partitions while loading
    assert stage1.trainable < 0.01 * stage1.parameters < stage2.trainable


def test_estimate_cli_prints_markdown_and_json(capfd):
    assert main(["estimate", "--config", str(ROOT / "config.yaml"), "--mfu", "0.5"]) == 0
    out = capfd.readouterr().out
    assert "| 7b_dinov2_skip |" in out and "at MFU 0.5" in out
    assert main(["estimate", "--config", str(ROOT / "config.yaml"), "--json"]) == 0
    parsed = json.loads(capfd.readouterr().out)
    assert parsed["hardware"] == {"devices": 8, "peak_tflops": 432.0, "mfu": 0.4}


def _prepared(path, rows: list[tuple[int, str | None]]):
    path.parent.mkdir(parents=True)
    # Labels: the last quarter of each row supervised (plus a supervised first label, which no position predicts).
    labels = [[0] + [-100] * (n - 1 - n // 4) + list(range(n // 4)) for n, _ in rows]
    pq.write_table(pa.table({"input_ids": [list(range(n)) for n, _ in rows], "labels": labels,
                             "image": [i for _, i in rows]}), path)
    return path


def test_estimate_uses_prepared_token_counts(tmp_path):
    rows = [(101, "coco/1.jpg"), (51, None), (301, "gqa/2.jpg")]  # input_ids include one <image> per image
    path = _prepared(tmp_path / "instruct" / "data.parquet", rows)
    text, images = prepared_token_counts(path)
    assert text.tolist() == [100, 51, 300] and images.tolist() == [1, 0, 1]
    assert prepared_counts(path)[2].tolist() == [25, 12, 75]  # the shifted supervised labels
    result = run_estimate(ROOT / "config.yaml", prepared=[path])
    assert result["workload"]["stage2"] == {"samples": 3, "source": str(path)}
    shapes = CellShapes.from_llava_config(cell_config("google/gemma-2b-it", "openai/clip-vit-large-patch14-336"))
    cell = next(c for c in result["cells"] if c["cell"] == "2b_clip_skip")
    expected = training_flops(shapes, "stage2", text, images, supervised=[25, 12, 75])
    assert cell["stage2_flops"] == pytest.approx(expected.total)


def test_estimate_errors_name_the_fix(tmp_path):
    wrong = _prepared(tmp_path / "elsewhere" / "data.parquet", [(10, None)])
    with pytest.raises(UserError, match=r"data/prepared/<pretrain\|instruct>/data.parquet"):
        run_estimate(ROOT / "config.yaml", prepared=[wrong])
    with pytest.raises(UserError, match="does not exist"):
        run_estimate(ROOT / "config.yaml", prepared=[tmp_path / "pretrain" / "data.parquet"])
    with pytest.raises(ConfigError, match="toy model; estimate covers real checkpoints"):
        run_estimate(ROOT / "toy.yaml")
    with pytest.raises(UserError, match="--mfu"):
        run_estimate(ROOT / "config.yaml", mfu=1.5)
