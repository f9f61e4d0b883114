"""train_metrics.json carries the throughput accounting: real vs padded tokens, FLOPs, MFU."""

from __future__ import annotations

import json

import pytest

from tests import train_helpers as th


@pytest.fixture(scope="module")
def caption_data(tiny_backbones, tmp_path_factory):
    return th.prepare_captions(tiny_backbones, tmp_path_factory.mktemp("captions"))


def test_a_training_run_reports_tokens_flops_and_mfu(tiny_backbones, caption_data, tmp_path):
    argv = th.train_argv(tiny_backbones, *caption_data, tmp_path, per_device=4, global_batch=4, max_steps=2)
    settings = json.loads(argv[-1]) | {"peak_tflops": 1.0}  # a made-up peak, so MFU is defined on CPU
    th.run(th.llava_gemma("launch", "--tasks", "1", "--backend", "cpu", "--", *argv[:-1], json.dumps(settings)))
    m, _ = th.trained(tmp_path)

    assert m["samples_processed"] == 2 * 4
    # Right-padding to the longest row of each batch: real tokens are the attention mask's ones.
    assert 0 < m["tokens_real"] <= m["tokens_padded"]
    assert m["padding_fraction"] == pytest.approx(1 - m["tokens_real"] / m["tokens_padded"])
    assert m["tokens_per_second"] == pytest.approx(m["tokens_real"] / m["wall_seconds"])
    # Stage 1 trains only the connector, but the backward pass still runs through the LM.
    parts = m["flops_per_sample_by_part"]
    assert m["flops_per_sample"] == pytest.approx(parts["total"]) and m["flops_per_sample"] > 0
    assert m["flops_total"] == pytest.approx(m["flops_per_sample"] * 8)
    assert m["achieved_tflops"] == pytest.approx(m["flops_total"] / m["wall_seconds"] / 1e12)
    assert m["mfu"] == pytest.approx(m["achieved_tflops"] / 1.0)
    assert m["peak_memory_gib"] > 0
