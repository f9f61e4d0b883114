"""The factor-effect model recovers planted effects, and says what a smaller grid leaves out."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from llava_gemma.analysis.statistics.effects import build_effects, write_effects
from llava_gemma.study.config import Cell

CELLS = [Cell(lm, tower, c) for lm in ("2b", "7b") for tower in ("clip", "dinov2") for c in ("pretrain", "skip")]
PLANTED = {"connector": -0.15, "vision_tower": 0.08, "language_model": 0.12}
BASE = 0.5


def plant(cells_dir: Path, cells: list[Cell], benchmark: str, n_questions: int, seed: int = 0,
          kind: str = "correct") -> None:
    """samples.jsonl per cell with P(correct) = base + question effect + the planted factor effects."""
    rng = np.random.default_rng(seed)
    question_effect = rng.uniform(-0.2, 0.2, n_questions)
    for cell in cells:
        p = (BASE + question_effect + PLANTED["connector"] * (cell.connector == "skip")
             + PLANTED["vision_tower"] * (cell.vision_tower == "dinov2")
             + PLANTED["language_model"] * (cell.language_model == "7b"))
        outcomes = rng.random(n_questions) < p
        path = cells_dir / cell.name / "eval" / benchmark / "samples.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w") as fh:
            for q, ok in enumerate(outcomes):
                record = {"id": str(q), "prediction": "x", "target": "x"}
                if kind == "score":
                    record["score"] = float(ok)
                else:
                    record["correct"] = bool(ok)
                if benchmark == "mmvp":
                    record["pair"] = q // 2
                fh.write(json.dumps(record) + "\n")


def test_recovers_planted_effects_on_the_full_grid(tmp_path):
    plant(tmp_path, CELLS, "gqa", 1500)
    plant(tmp_path, CELLS, "vqav2", 1500, seed=1, kind="score")
    effects = build_effects(CELLS, ["gqa", "vqav2"], tmp_path)
    assert len(effects) == 6 and effects["note"].eq("").all()
    for _, row in effects.iterrows():
        truth = PLANTED[row["factor"]]
        assert row["ci_low"] < truth < row["ci_high"], row.to_dict()
        assert abs(row["estimate"] - truth) < 0.03
        assert 0.005 < row["std_error"] < 0.02
    gqa = effects[effects["benchmark"] == "gqa"].set_index("factor")
    assert gqa.loc["connector", "term"] == "connector: skip instead of pretrain"
    assert gqa.loc["language_model", "term"] == "language model: 7b instead of 2b"
    assert set(effects["outcome"]) == {"correct", "score"}
    assert gqa["n_questions"].eq(1500).all() and gqa["n_cells"].eq(8).all()


def test_balanced_grid_coefficient_is_the_average_difference(tmp_path):
    plant(tmp_path, CELLS, "gqa", 200, seed=3)
    row = build_effects(CELLS, ["gqa"], tmp_path).set_index("factor").loc["vision_tower"]
    rates = {c: pd.read_json(tmp_path / c.name / "eval" / "gqa" / "samples.jsonl", lines=True)["correct"].mean()
             for c in CELLS}
    dino = np.mean([r for c, r in rates.items() if c.vision_tower == "dinov2"])
    clip = np.mean([r for c, r in rates.items() if c.vision_tower == "clip"])
    assert row["estimate"] == pytest.approx(dino - clip)


def test_mmvp_clusters_by_pair(tmp_path):
    plant(tmp_path, CELLS, "mmvp", 300, seed=2)
    effects = build_effects(CELLS, ["mmvp"], tmp_path)
    assert effects["n_questions"].eq(300).all() and effects["n_clusters"].eq(150).all()


def test_smaller_grids_fit_what_they_identify(tmp_path):
    only_2b = [c for c in CELLS if c.language_model == "2b"]
    plant(tmp_path, only_2b, "gqa", 800)
    effects = build_effects(only_2b, ["gqa"], tmp_path).set_index("factor")
    assert "only '2b' in the grid" in effects.loc["language_model", "note"]
    assert np.isnan(effects.loc["language_model", "estimate"])
    assert abs(effects.loc["connector", "estimate"] - PLANTED["connector"]) < 0.05

    # Two cells that differ in tower and LM at once: the tower term is fitted, the LM term is confounded.
    diagonal = [Cell("2b", "clip", "pretrain"), Cell("7b", "dinov2", "pretrain")]
    plant(tmp_path, diagonal, "gqa", 800)
    effects = build_effects(diagonal, ["gqa"], tmp_path).set_index("factor")
    assert effects.loc["vision_tower", "note"] == ""
    assert "confounded with vision tower: dinov2 instead of clip" in effects.loc["language_model", "note"]
    assert "only 'pretrain'" in effects.loc["connector", "note"]

    write_effects(build_effects(diagonal, ["gqa"], tmp_path), tmp_path / "report")
    assert (tmp_path / "report" / "effects.png").stat().st_size > 10_000
    assert len(pd.read_csv(tmp_path / "report" / "effects.csv")) == 3
