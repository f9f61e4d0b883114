"""Factors as data (issue 17): levels override the recipe, validated by the schema; cells, shared
stage-1 runs, replicates and designs follow from the config."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml
from llava_gemma.errors import ConfigError
from llava_gemma.study.config import StudyConfig, validate_config

ROOT = Path(__file__).resolve().parents[1]


def load(name: str) -> dict:
    return yaml.safe_load((ROOT / name).read_text())


def with_factor(base: str, factor: str, levels: dict) -> dict:
    raw = copy.deepcopy(load(base))
    raw["grid"].append({"factor": factor, "levels": levels})
    return raw


def study(raw: dict) -> StudyConfig:
    validate_config(raw)
    return StudyConfig(raw)


@pytest.mark.parametrize("name", ["config.yaml", "toy.yaml"])
def test_todays_grid_keeps_its_names_and_shares_stage1_by_pair(name):
    s = study(load(name))
    assert [c.name for c in s.cells] == [f"{lm}_{t}_{c}" for lm in ("2b", "7b") for t in ("clip", "dinov2")
                                         for c in ("pretrain", "skip")]
    assert {c.name: c.pair for c in s.cells if c.pretrains_connector} == {
        f"{lm}_{t}_pretrain": f"{lm}_{t}" for lm in ("2b", "7b") for t in ("clip", "dinov2")}
    assert len({c.pair for c in s.runs if c.pair}) == 4 and len(s.runs) == 8
    assert set(s.language_models) == {"2b", "7b"} and set(s.vision_towers) == {"clip", "dinov2"}


def test_a_stage1_factor_splits_stage1_runs_and_a_stage2_factor_does_not():
    split = study(with_factor("config.yaml", "projector", {"mlp": {}, "linear": {"connector": "linear"}}))
    assert len(split.cells) == 16
    assert len({c.pair for c in split.cells if c.pair}) == 8
    assert {c.pair for c in split.cells if c.pair} >= {"2b_clip_mlp", "2b_clip_linear"}
    stage2_only = {"low": {}, "high": {"train": {"stage2": {"learning_rate": 1e-4}}}}
    shared = study(with_factor("config.yaml", "lr", stage2_only))
    assert len(shared.cells) == 16
    assert {c.pair for c in shared.cells if c.pair} == {"2b_clip", "2b_dinov2", "7b_clip", "7b_dinov2"}
    high = next(c for c in shared.cells if c.cell == "2b_clip_pretrain_high")
    assert shared.recipe(high)["train"]["stage2"]["learning_rate"] == 1e-4
    assert shared.recipe(high)["train"]["stage1"] == load("config.yaml")["train"]["stage1"]
    lr1 = study(with_factor("config.yaml", "lr1", {"a": {}, "b": {"train": {"stage1": {"learning_rate": 1e-4}}}}))
    assert len({c.pair for c in lr1.cells if c.pair}) == 8


def test_replicates_have_their_own_names_seeds_and_stage1_runs():
    raw = load("config.yaml")
    raw["replicates"] = 3
    s = study(raw)
    assert len(s.runs) == 24 and [r.replicate for r in s.runs[:8]] == [1] * 8  # every first replicate first
    names = {r.name for r in s.runs}
    assert {"2b_clip_pretrain", "2b_clip_pretrain_r2", "2b_clip_pretrain_r3"} <= names
    seeds = {s.seed(r) for r in s.runs if r.cell == "2b_clip_pretrain"}
    assert seeds == {42, 43, 44}
    assert {r.pair for r in s.runs if r.cell == "2b_clip_pretrain"} == {"2b_clip", "2b_clip_r2", "2b_clip_r3"}


def test_design_is_passed_to_the_design_module():
    raw = with_factor("toy.yaml", "projector", {"mlp": {}, "linear": {"connector": "linear"}})
    raw["design"] = {"fractional": {"generators": ["D = ABC"]}}
    s = study(raw)
    assert len(s.cells) == 8 and s.design.kind == "fractional" and s.design.resolution == 4
    raw["design"] = [{"language_model": "2b", "vision_tower": "clip", "connector": "skip", "projector": "linear"}]
    assert [c.name for c in study(raw).cells] == ["2b_clip_skip_linear"]


@pytest.mark.parametrize(("levels", "expected"), [
    ({"a": {"connector": "mlp3x"}}, "grid[3].levels.a.connector: 'mlp3x' is not one of"),
    ({"a": {"train": {"stage2": {"learning_rate": "fast"}}}},
     "grid[3].levels.a.train.stage2.learning_rate: 'fast' is not of type 'number'"),
    ({"a": {"train": {"stage3": {}}}}, "unknown key 'grid[3].levels.a.train.stage3'"),
    ({"a": {"learning_rate": 1e-4}}, "a level overrides only language_model, vision_tower"),
    ({"a": {"stage2_trains": ["tower"]}}, "grid[3].levels.a.stage2_trains[0]: 'tower' is not one of"),
    ({"a": {"vision_tower": {"hub": "google/siglip-so400m-patch14-384"}}}, "both set vision_tower"),
    ({"a": {"image_size": 448}}, "grid[3].levels.a.image_size: only a toy tower is built at a chosen size"),
    ({"a": {"train": {"stage2": {"global_batch_size": 100}}}},
     "grid[3].levels.a.train: train.stage2.global_batch_size 100"),
    ({"a_b": {}}, "grid[3].levels: 'a_b' does not match"),
])
def test_bad_overrides_name_the_level_in_one_sentence(levels, expected):
    with pytest.raises(ConfigError) as err:
        validate_config(with_factor("config.yaml", "extra", levels))
    message = str(err.value)
    assert expected in message and message.count("\n") == 0, message


def test_good_overrides_resolve():
    levels = {"base": {}, "all": {"stage2_trains": ["connector", "language_model", "vision_tower"],
                                  "instruct_sources": ["coco", "text"], "image_size": 48,
                                  "train": {"stage2": {"epochs": 2}}}}
    raw = with_factor("toy.yaml", "extra", levels)
    # Towers the workflow trains (toy.yaml ships its own, whose size is fixed like a hub tower's).
    raw["grid"][1]["levels"] = {name: {"vision_tower": {"toy": dict(
        architecture=name, image_size=32, patch_size=8, hidden_size=96, num_layers=4, num_heads=4, steps=200)}}
        for name in ("clip", "dinov2")}
    s = study(raw)
    cell = next(c for c in s.cells if c.cell == "2b_clip_pretrain_all")
    recipe = s.recipe(cell)
    assert cell.vision_tower == "clip-48px" and s.model_source("clip-48px")["toy"]["image_size"] == 48
    assert recipe["stage2_trains"][-1] == "vision_tower" and recipe["train"]["stage2"]["epochs"] == 2
    assert cell.pair == "2b_clip_all"  # image size changes the tower: its own stage-1 run
    assert set(s.vision_towers) == {"clip", "dinov2", "clip-48px", "dinov2-48px"}


def test_linear_connector_loads_with_plain_transformers_and_is_linear(tiny_backbones, tmp_path):
    import torch
    from llava_gemma.model.assemble import assemble_llava, set_trainable
    from transformers import LlavaForConditionalGeneration

    model, _ = assemble_llava(tiny_backbones["lm"], tiny_backbones["clip"], connector="linear")
    model.save_pretrained(tmp_path, safe_serialization=True)
    reloaded = LlavaForConditionalGeneration.from_pretrained(tmp_path)  # no code of ours in the folder's config
    assert reloaded.config.projector_hidden_act == "linear"
    proj = reloaded.model.multi_modal_projector
    gen = torch.Generator().manual_seed(0)
    a, b = (torch.randn(3, proj.linear_1.in_features, generator=gen) for _ in range(2))
    with torch.no_grad():
        assert torch.allclose(proj(a + b), proj(a) + proj(b) - proj(torch.zeros_like(a)), atol=1e-5)
    counts = set_trainable(model, "stage2", ["connector", "vision_tower"])
    assert counts["trainable"] == counts["connector"] + counts["vision_tower"]


def test_example_dry_run_plans_the_half_fraction_with_replicates(tmp_path):
    import re
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--cores", "1", "-s", str(ROOT / "Snakefile"),
                           "--directory", str(tmp_path), "--configfile", str(ROOT / "examples/toy-design.yaml")],
                          capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    stats = dict(re.findall(r"^(\w+)\s+(\d+)$", done.stdout.split("Job stats:")[1].split("Reasons:")[0], re.M))
    assert stats["train_connector"] == "8"   # 4 stage-1 settings x 2 replicates
    assert stats["train_cell"] == "16"       # 8 cells x 2 replicates
    assert stats["evaluate_cell"] == "16" and stats["write_design"] == "1"
    assert "results/cells/2b_clip_skip_linear_r2/model" in done.stdout


def test_example_is_the_toy_study_outside_its_design():
    """examples/toy-design.yaml repeats toy.yaml outside study, grid, design and replicates: keep them in step."""
    import yaml

    toy, example = (yaml.safe_load((ROOT / p).read_text()) for p in ("toy.yaml", "examples/toy-design.yaml"))
    own = ("study", "grid", "design", "replicates")
    assert {k: v for k, v in example.items() if k not in own} == {k: v for k, v in toy.items() if k not in own}
    toy_levels = {f["factor"]: f["levels"] for f in toy["grid"]}
    assert all(f["levels"] == toy_levels[f["factor"]] for f in example["grid"] if f["factor"] in toy_levels)


def replicated_runs(tmp_path: Path) -> tuple[StudyConfig, Path]:
    """The toy grid with a fourth factor, two replicates, and fake per-question records for every run."""
    import json

    raw = with_factor("toy.yaml", "projector", {"mlp": {}, "linear": {"connector": "linear"}})
    raw["design"], raw["replicates"] = {"fractional": {"generators": ["D = ABC"]}}, 2
    s = study(raw)
    cells_dir = tmp_path / "cells"
    for run in s.runs:
        good = 40 + 10 * (run.level("vision_tower") == "dinov2") + run.replicate  # dinov2 +0.10; seeds move 1 point
        folder = cells_dir / run.name / "eval" / "gqa"
        folder.mkdir(parents=True)
        (folder / "samples.jsonl").write_text("".join(json.dumps({"id": q, "correct": q < good}) + "\n"
                                                      for q in range(100)))
        (folder / "metrics.json").write_text(json.dumps({"accuracy": good / 100, "accuracy_ci_low": good / 100 - 0.1,
                                                         "accuracy_ci_high": good / 100 + 0.1}))
    return s, cells_dir


def test_table1_means_replicates_and_keeps_both_spreads_apart(tmp_path):
    import math

    from llava_gemma.analysis.tables.table1 import build_table1, write_table1

    s, cells_dir = replicated_runs(tmp_path)
    table = build_table1(s.runs, ["gqa"], cells_dir)
    assert len(table) == 8 and set(table["replicates"]) == {2}
    row = table.set_index("cell").loc["2b_dinov2_pretrain_linear"]
    assert (row["gqa"], row["gqa_ci_low"]) == pytest.approx((0.515, 0.415))  # mean of 0.51, 0.52; mean interval
    assert math.isclose(row["gqa_replicate_sd"], 0.00707, rel_tol=1e-2) and row["projector"] == "linear"
    write_table1(table, tmp_path / "report")
    text = (tmp_path / "report" / "table1.md").read_text()
    # Shown: the combined interval, hypot(0.1, t(1) 12.71 x 0.00707 / sqrt 2) = 0.1185 around the mean; the
    # dinov2 cells tie, so none is bold.
    assert row["gqa_combined_low"] == pytest.approx(0.515 - 0.1185, abs=2e-4)
    assert row["gqa_predict_high"] > row["gqa_combined_high"] > row["gqa_ci_high"]
    assert "| 0.515 [0.397, 0.633] ±0.007 |" in text and "between-replicate standard deviation" in text


def test_effects_use_every_run_and_name_the_aliasing(tmp_path):
    from llava_gemma.analysis.statistics.run_effects import build_run_effects

    s, cells_dir = replicated_runs(tmp_path)
    factors = {f.name: list(f.levels) for f in s.factors}
    effects = build_run_effects(s.runs, ["gqa"], cells_dir, factors, s.raw["design"]).set_index("factor")
    assert set(effects["n_runs"]) == {16}
    assert effects.loc["vision_tower", "estimate"] == pytest.approx(0.10)
    assert abs(effects.loc["projector", "estimate"]) < 1e-9
    assert "language_model" in effects.loc["projector", "note"]  # D is aliased with ABC


def test_priorities_start_every_first_replicate_and_cheaper_cells_first():
    from llava_gemma.study.run_order import train_priority

    s = study(load("examples/toy-design.yaml"))
    priority = {r.name: train_priority(s, r) for r in s.runs}
    assert min(p for n, p in priority.items() if not n.endswith("_r2")) > max(
        p for n, p in priority.items() if n.endswith("_r2"))
    assert priority["2b_clip_skip_linear"] > priority["2b_clip_pretrain_mlp"] > priority["7b_clip_skip_mlp"]
