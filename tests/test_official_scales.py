"""Effects on the official scales: a run's mean of the rebuilt outcomes IS the benchmark's own number
(MME points, MMVP pair accuracy, POPE's split-mean F1), so an effect is a difference in those units."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from llava_gemma.analysis.statistics.effects import fit_effects
from llava_gemma.analysis.statistics.official_scales import official_outcomes
from llava_gemma.analysis.statistics.outcomes import load_outcomes
from llava_gemma.eval.benchmarks.mme import COGNITION, PERCEPTION, MMEBenchmark
from llava_gemma.eval.benchmarks.mmvp import MMVPBenchmark
from llava_gemma.eval.benchmarks.pope import PopeBenchmark
from llava_gemma.study.config import Cell

FACTORS = ["language_model", "vision_tower", "connector"]
CELLS = [Cell(lm, tower, "pretrain") for lm in ("2b", "7b") for tower in ("clip", "dinov2")]


def _records(benchmark: str, skill: float, rng: np.random.Generator) -> list[dict]:
    """Records as the benchmark's score() writes them, from a cell answering right with P = skill."""
    out = []
    if benchmark == "mme":
        for t, task in enumerate(PERCEPTION[:3] + COGNITION[:2]):
            for img in range(4 + t):  # subtasks of different sizes: the weights matter
                for k in range(2):
                    ok = bool(rng.random() < skill)
                    out.append({"id": f"{task}-{img}-{k}", "correct": ok, "category": task, "image": f"{task}/{img}",
                                "parsed": "yes"})
    elif benchmark == "mmvp":
        for q in range(40):
            out.append({"id": str(q), "correct": bool(rng.random() < skill), "pair": q // 2})
    else:
        for split, n in (("random", 30), ("popular", 40), ("adversarial", 50)):
            for q in range(n):
                label = "yes" if q % 2 else "no"
                parsed = label if rng.random() < skill else ("no" if label == "yes" else "yes")
                out.append({"id": f"{split}-{q}", "correct": parsed == label, "parsed": parsed, "label": label,
                            "split": split, "image": f"img{q % 17}"})
    return out


def _write(cells_dir: Path, benchmark: str, seed: int = 0) -> dict[str, dict]:
    rng = np.random.default_rng(seed)
    metrics = {}
    scorer = {"mme": MMEBenchmark, "mmvp": MMVPBenchmark, "pope": PopeBenchmark}[benchmark]()
    for cell in CELLS:
        skill = 0.55 + 0.2 * (cell.language_model == "7b") + 0.1 * (cell.vision_tower == "dinov2")
        recs = _records(benchmark, skill, rng)
        path = cells_dir / cell.name / "eval" / benchmark / "samples.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(json.dumps(r) + "\n" for r in recs))
        metrics[cell.name] = scorer.aggregate(recs)
    return metrics


@pytest.mark.parametrize(("benchmark", "scale", "metric"), [
    ("mme", "MME perception (points)", "perception"), ("mme", "MME cognition (points)", "cognition"),
    ("mmvp", "MMVP pair accuracy", "pair_accuracy"),
    ("pope", "POPE F1 (mean over splits; delta method)", "split_mean/f1")])
def test_run_mean_is_the_official_number_and_effects_are_its_differences(tmp_path, benchmark, scale, metric):
    metrics = _write(tmp_path, benchmark)
    outcomes = load_outcomes(CELLS, benchmark, tmp_path).assign(run=lambda f: f["cell"])
    rows = official_outcomes(benchmark, outcomes, FACTORS)[scale]
    means = rows.groupby("run")["y"].mean()
    for cell in CELLS:
        assert means[cell.name] == pytest.approx(metrics[cell.name][metric], abs=1e-9)
    levels = {f: tuple(dict.fromkeys(getattr(c, f) for c in CELLS)) for f in FACTORS}
    effects = fit_effects(rows, levels, benchmark).set_index("factor")
    official = {c.name: metrics[c.name][metric] for c in CELLS}
    lm = (official["7b_clip_pretrain"] + official["7b_dinov2_pretrain"]
          - official["2b_clip_pretrain"] - official["2b_dinov2_pretrain"]) / 2
    assert effects.loc["language_model", "estimate"] == pytest.approx(lm, abs=1e-9)
    assert np.isfinite(effects.loc["language_model", "std_error"]) and effects.loc["language_model", "std_error"] > 0
    assert rows["cluster_field"].iloc[0] == ("pair" if benchmark == "mmvp" else "image")


def test_no_official_rows_without_the_fields_they_need():
    bare = pd.DataFrame({"run": ["a", "b"], "language_model": ["2b", "7b"], "question": ["1", "1"],
                         "cluster": ["1", "1"], "cluster_field": ["question"] * 2, "y": [1.0, 0.0]})
    assert official_outcomes("mme", bare, FACTORS) == {}
    assert official_outcomes("pope", bare, FACTORS) == {}
    assert official_outcomes("mmvp", bare, FACTORS) == {}  # no complete pairs: the cluster is the question
    assert official_outcomes("gqa", bare, FACTORS) == {}
