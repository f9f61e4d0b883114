"""Lack of fit against pure error: holds its size without an interaction, finds a planted one, and is
absent where the runs cannot support it (no replicates, or a saturated design)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from llava_gemma.analysis.statistics.effects import fit_effects
from llava_gemma.analysis.statistics.lack_of_fit import TERM, lack_of_fit
from llava_gemma.analysis.statistics.simulated import Scenario, simulate_outcomes
from llava_gemma.study.design import select_cells

PAPER = {"language_model": ("2b", "7b"), "vision_tower": ("clip", "dinov2"), "connector": ("pretrain", "skip")}
EFFECTS = {"language_model": 0.1, "vision_tower": 0.05, "connector": -0.05}
N_SIMS = 150


def _scenario(interaction: float, replicates: int = 3) -> Scenario:
    return Scenario(select_cells({f: list(v) for f, v in PAPER.items()}), EFFECTS, replicates=replicates,
                    n_questions=400, run_sd=0.02,
                    interactions={("language_model", "vision_tower"): interaction} if interaction else {})


def _test_on_run_means(outcomes: pd.DataFrame):
    runs = outcomes.groupby("run", sort=False)
    means = runs["y"].mean().to_numpy()
    first = runs.first()
    x = np.column_stack([np.ones(len(first))] + [(first[f] == v[1]).to_numpy(float) for f, v in PAPER.items()])
    cells = first[list(PAPER)].agg("|".join, axis=1).to_numpy()
    return lack_of_fit(means, x, cells)


def _rejections(interaction: float, seed: int) -> float:
    rng = np.random.default_rng(seed)
    tests = [_test_on_run_means(simulate_outcomes(_scenario(interaction), rng)) for _ in range(N_SIMS)]
    assert all(t is not None and (t.df_lof, t.df_pe) == (4, 16) for t in tests)  # 8 cells - 4, 24 runs - 8
    return float(np.mean([t.p < 0.05 for t in tests]))


def test_size_without_an_interaction_and_power_with_one():
    size = _rejections(0.0, seed=1)
    mc = 3 * np.sqrt(0.05 * 0.95 / N_SIMS)
    assert 0.05 - mc <= size <= 0.05 + mc, size
    assert _rejections(0.12, seed=2) >= 0.7  # LM x tower 0.12: the noncentrality gives power about 0.9


@pytest.mark.parametrize("interaction", [0.0, 0.15])
def test_effects_csv_row(interaction):
    outcomes = simulate_outcomes(_scenario(interaction), np.random.default_rng(3))
    effects = fit_effects(outcomes, PAPER, "sim")
    row = effects[effects["term"] == TERM].iloc[0]
    assert row["note"].startswith("F(4, 16) = ") and row["df"] == 16
    assert (row["p_value"] < 0.01) if interaction else (row["p_value"] > 0.01)
    assert pd.isna(row["estimate"])  # a test, not an effect: nothing for the figure to plot


def test_no_test_without_replicates_or_spare_cells():
    one_run = simulate_outcomes(_scenario(0.0, replicates=1), np.random.default_rng(4))
    assert TERM not in set(fit_effects(one_run, PAPER, "sim")["term"])  # no pure error
    half = select_cells({f: list(v) for f, v in PAPER.items()}, {"fractional": {"generators": ["C = AB"]}})
    saturated = Scenario(half, EFFECTS, replicates=2, n_questions=100)
    outcomes = simulate_outcomes(saturated, np.random.default_rng(5))
    assert TERM not in set(fit_effects(outcomes, PAPER, "sim", half)["term"])  # 4 cells, 4 parameters
