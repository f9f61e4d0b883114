"""Relevancy maps on a tiny LLaVA: the rule against a direct computation, the grid, the figure."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from llava_gemma.analysis.figures.relevancy import (
    accumulate_relevancy,
    image_relevancy,
    load_eager,
    patch_grid,
    prompt_inputs,
)
from llava_gemma.analysis.figures.relevancy_figure import write_relevancy_figure

from .conftest import TINY_TOWERS, draw_scene


@pytest.fixture(scope="module")
def tiny_llava(tiny_backbones, tmp_path_factory):
    """A tiny LLaVA whose LM has three layers (random weights), saved and loaded with eager attention."""
    from llava_gemma.model.assemble import assemble_llava
    from transformers import AutoTokenizer, GemmaConfig, GemmaForCausalLM

    lm_dir = tmp_path_factory.mktemp("lm3")
    AutoTokenizer.from_pretrained(tiny_backbones["lm"]).save_pretrained(lm_dir)
    config = GemmaConfig.from_pretrained(tiny_backbones["lm"])
    config.num_hidden_layers = 3
    torch.manual_seed(0)
    GemmaForCausalLM(config).save_pretrained(lm_dir)
    model, processor = assemble_llava(lm_dir, tiny_backbones["clip"])
    cell_dir = tmp_path_factory.mktemp("cell")
    model.save_pretrained(cell_dir)
    processor.save_pretrained(cell_dir)
    return load_eager(cell_dir)  # as the rule loads a cell's checkpoint


def direct_relevancy(model, inputs) -> tuple[np.ndarray, int]:
    """The same rule by another road: attention maps caught by hooks on each layer's attention
    module (no output_attentions), gradients by backward(), the recursion written out in numpy."""
    caught = []

    def keep(_module, _args, output):
        weights = output[1]
        weights.retain_grad()
        caught.append(weights)

    hooks = [layer.self_attn.register_forward_hook(keep) for layer in model.model.language_model.layers]
    try:
        logits = model(**inputs, use_cache=False).logits[0, -1]
        token = int(logits.argmax())
        logits[token].backward()
    finally:
        for hook in hooks:
            hook.remove()
    seq = caught[0].shape[-1]
    r = np.eye(seq)
    for weights in caught:
        a, g = weights[0].detach().double().numpy(), weights.grad[0].double().numpy()
        heads = [np.maximum(g[h] * a[h], 0.0) for h in range(a.shape[0])]
        cam = sum(heads) / len(heads)
        r = r + cam @ r
    positions = (inputs["input_ids"][0] == model.config.image_token_index).nonzero().flatten().numpy()
    return r[-1, positions], token


def test_relevancy_matches_a_direct_computation(tiny_llava):
    model, processor = tiny_llava
    grid = patch_grid(processor)
    spec = TINY_TOWERS["clip"]
    assert grid == (spec["image_size"] // spec["patch_size"],) * 2
    inputs = prompt_inputs(processor, "Is there a circle in the image?", draw_scene("red"))
    ours, token = image_relevancy(model, inputs, grid)
    model.zero_grad(set_to_none=True)
    expected, expected_token = direct_relevancy(model, inputs)
    assert token == expected_token
    assert ours.shape == grid
    np.testing.assert_allclose(ours.flatten().numpy(), expected, rtol=1e-4, atol=1e-9)
    assert (ours >= 0).all() and ours.sum() > 0  # the answer draws on the image at all


def test_accumulation_rule_on_hand_made_maps():
    # One layer, one head: R = I + (g * a)^+ ; two layers: R2 = R1 + cam2 @ R1.
    a = torch.tensor([[[[1.0, 0.0], [0.25, 0.75]]]])
    g = torch.tensor([[[[0.5, 2.0], [-4.0, 2.0]]]])
    one = accumulate_relevancy((a,), (g,))
    cam = torch.tensor([[0.5, 0.0], [0.0, 1.5]], dtype=torch.float64)
    torch.testing.assert_close(one, torch.eye(2, dtype=torch.float64) + cam)
    two = accumulate_relevancy((a, a), (g, g))
    torch.testing.assert_close(two, one + cam @ one)


def test_relevancy_figure(tmp_path):
    draw_scene("green").save(tmp_path / "img.png")
    maps = []
    for i, cell in enumerate(("2b_clip_pretrain", "7b_clip_skip")):
        entry = [{"benchmark": "pope", "qid": f"random-{q}", "prompt": "Is there a circle in the image?\nAnswer.",
                  "image_path": str(tmp_path / "img.png"), "answer_token": "Yes", "grid": [4, 4],
                  "relevancy": (np.arange(16).reshape(4, 4) * (i + 1) + q).tolist()} for q in (1, 2)]
        path = tmp_path / f"{cell}.json"
        path.write_text(json.dumps(entry))
        maps.append(path)
    result = write_relevancy_figure(maps, tmp_path / "relevancy.png")
    assert result == {"cells": ["2b_clip_pretrain", "7b_clip_skip"], "examples": 2}
    assert (tmp_path / "relevancy.png").stat().st_size > 10_000
