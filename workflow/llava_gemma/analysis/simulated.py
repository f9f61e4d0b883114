"""Simulated studies with known factor effects: how often the effect model's intervals cover the truth.

A simulated run (a cell and a replicate) answers every question with probability
``base + sum of its levels' effects + run effect + question effect``: the run effect (normal, SD
``run_sd``) is the seed's luck shared by all of a run's answers, the question effect (uniform in
±``question_spread``) is the question's difficulty shared by every run. The linear probability
model is then exactly true, so a 95% interval should contain each planted effect 95% of the time.
Used by tests/test_effects_simulated.py and tools/effects_coverage.py.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from llava_gemma.analysis.effects import TWO_WAY, fit_effects
from llava_gemma.design import Design


@dataclass(frozen=True)
class Scenario:
    design: Design
    effects: dict[str, float]  # factor -> effect of its second level over its first (two-level factors)
    replicates: int = 2
    n_questions: int = 200
    run_sd: float = 0.04
    question_spread: float = 0.2
    base: float = 0.45


def simulate_outcomes(s: Scenario, rng: np.random.Generator) -> pd.DataFrame:
    """Columns run, one per factor, question, y: every run answers every question once."""
    question_effect = rng.uniform(-s.question_spread, s.question_spread, s.n_questions)
    frames = []
    for i, cell in enumerate(s.design.cells):
        shift = sum(eff for f, eff in s.effects.items() if cell[f] == s.design.factors[f][1])
        for r in range(s.replicates):
            p = s.base + shift + rng.normal(0.0, s.run_sd) + question_effect
            if p.min() < 0 or p.max() > 1:
                raise ValueError("the scenario puts a probability outside [0, 1]; lower the effects or spreads.")
            frames.append(pd.DataFrame({"run": f"{i}.{r}", **cell, "question": np.arange(s.n_questions),
                                        "y": (rng.random(s.n_questions) < p).astype(float)}))
    return pd.concat(frames, ignore_index=True)


def coverage(s: Scenario, n_sims: int, seed: int, clusters: tuple[str, ...] = TWO_WAY) -> dict[str, float]:
    """Share of the 95% intervals that contain the planted effect, over ``n_sims`` studies and all factors."""
    rng = np.random.default_rng(seed)
    hits, total, widths = 0, 0, []
    for _ in range(n_sims):
        fit = fit_effects(simulate_outcomes(s, rng), s.design.factors, "sim", s.design, clusters=clusters)
        truth = fit["factor"].map(s.effects).to_numpy(float)
        hits += int(((fit["ci_low"] <= truth) & (truth <= fit["ci_high"])).sum())
        total += len(fit)
        widths += list(fit["ci_high"] - fit["ci_low"])
    return {"coverage": hits / total, "intervals": total, "mean_width": float(np.mean(widths))}
