"""Device memory predicted before it is spent: activations and the LM head/loss per rank, and the warning
when a configured micro-batch at data.max_length exceeds the device (analysis/planning/step_memory.py)."""

from __future__ import annotations

import pytest
import yaml
from llava_gemma.analysis.planning.estimate import run_estimate
from llava_gemma.analysis.planning.plan import run_plan
from llava_gemma.analysis.planning.step_memory import (
    activation_bytes,
    head_loss_bytes,
    layer_bytes_per_token,
    step_memory,
)
from llava_gemma.errors import ConfigError
from transformers import GemmaConfig

from .conftest import ROOT

GEMMA_2B = GemmaConfig(hidden_size=2048, intermediate_size=16384, num_hidden_layers=18, num_attention_heads=8,
                       num_key_value_heads=1, head_dim=256, vocab_size=256_000)


def test_head_and_loss_hold_one_chunk_instead_of_every_logit():
    # Full logits: 12 bytes per logit at every position (tools/bench_head_memory.py measured 11.73 GiB
    # for 2 x 2048 x 256,000, this formula's 11.72).
    assert head_loss_bytes(4096, 246, 256_000, supervised_only=False) == 12 * 4096 * 256_000
    assert head_loss_bytes(4096, 246, 256_000) == 12 * 256 * 256_000  # 246 rows padded to 256
    assert head_loss_bytes(32768, 20_000, 256_000) == 12 * 1024 * 256_000  # one chunk at a time


def test_activations_follow_the_layer_count_and_checkpointing():
    per_token = layer_bytes_per_token(GEMMA_2B)
    assert per_token == 16 * 2048 + 4 * 2048 + 10 * 2048 + 8 * 16384
    full = activation_bytes(GEMMA_2B, 1000, checkpointing=False)
    kept = activation_bytes(GEMMA_2B, 1000, checkpointing=True)
    assert full == pytest.approx(18 * per_token * 1000 + 8 * 2048 * 1000)
    assert kept == pytest.approx(18 * 2 * 2048 * 1000 + per_token * 1000 + 8 * 2048 * 1000)
    step = step_memory(GEMMA_2B, micro_batch=16, row_tokens=2048, supervised_fraction=0.137, checkpointing=True)
    assert step.total_gb == pytest.approx(step.activations_gb + step.head_loss_gb)
    assert step.head_loss_full_logits_gb > 30 * step.head_loss_gb


def test_estimate_adds_the_step_and_warns_past_the_device():
    fits = run_estimate(ROOT / "config.yaml")  # Gaudi 2, 96 GB
    assert fits["warnings"] == []
    row = next(m for m in fits["memory"] if m["cell"] == "7b_clip_skip")
    assert row["device_capacity_gb"] == 96.0 and row["step"]["checkpointing"]
    assert row["device_total_gb"] == pytest.approx(row["device_model_states_gb"] + row["step"]["total_gb"])
    assert "| 16 x 2048 (ckpt) |" in fits["markdown"]
    small = run_estimate(ROOT / "config.yaml", backend="cuda", device_memory_gb=30)
    assert small["warnings"] and all(w.count(". ") == 0 and w.endswith(".") for w in small["warnings"])
    assert any(w.startswith("7b_clip_pretrain stage1: a micro-batch of 32 x 2048 tokens") for w in small["warnings"])
    assert "Warning: 7b_clip_skip stage2" in small["markdown"]


def test_device_memory_is_a_config_key(tmp_path):
    raw = yaml.safe_load((ROOT / "config.yaml").read_text())
    raw["train"]["device_memory_gb"] = 24
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw))
    assert run_estimate(path)["warnings"]
    assert "Warning: " in run_plan([path])
    raw["train"]["device_memory_gb"] = -1
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match="device_memory_gb"):
        run_estimate(path)


def test_plan_of_the_toy_study_has_a_memory_table_and_no_device_check():
    text = run_plan([ROOT / "toy.yaml"])
    assert "Memory per rank (cpu;" in text and "(no capacity known)" in text and "Warning" not in text
