"""Factor effects: a linear probability model of per-question correctness on the design factors.

For each benchmark, every (cell, question) outcome y (1/0 for correct, or a score in [0, 1]) is
regressed by OLS on an intercept and one indicator per non-baseline level of each factor
(connector: skip instead of pretrain; tower: e.g. DINOv2 instead of CLIP; LM: e.g. 7B instead
of 2B). The baseline level is the first one the grid lists. Standard errors are clustered by
question (by image for MME, by pair for MMVP), since every cell answers the same questions. On
a full, balanced grid each coefficient is the factor's average effect on the probability of a
correct answer, averaged over the other factors' levels.

With fewer cells the model keeps what the cells identify: a factor with one level in the grid
is left out, and a term whose indicator the earlier terms already determine (two factors that
only change together) is left out as confounded; ``effects.csv`` says which and why.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from llava_gemma.config import Cell

# Factor -> how a reader names it; in the paper's order of discussion.
FACTORS: dict[str, str] = {"connector": "connector", "vision_tower": "vision tower", "language_model": "language model"}
LEVEL = 0.95
EFFECT_COLUMNS = ["benchmark", "term", "factor", "level", "baseline", "estimate", "std_error", "ci_low", "ci_high",
                  "p_value", "outcome", "n_cells", "n_questions", "n_clusters", "note"]


@dataclass(frozen=True)
class Term:
    factor: str
    level: str
    baseline: str

    @property
    def label(self) -> str:
        return f"{FACTORS[self.factor]}: {self.level} instead of {self.baseline}"


def design_terms(cells: list[Cell]) -> tuple[list[Term], dict[str, str]]:
    """The candidate terms (one per non-baseline level), and the factors left out with the reason."""
    terms, left_out = [], {}
    for factor in FACTORS:
        levels = list(dict.fromkeys(getattr(c, factor) for c in cells))
        if len(levels) == 1:
            left_out[factor] = f"only {levels[0]!r} in the grid: its effect is not identified"
            continue
        terms += [Term(factor, level, levels[0]) for level in levels[1:]]
    return terms, left_out


def _indicators(frame: pd.DataFrame, terms: list[Term]) -> np.ndarray:
    return np.column_stack([np.ones(len(frame))] + [(frame[t.factor] == t.level).to_numpy(float) for t in terms])


def identified_terms(cells: list[Cell], terms: list[Term]) -> tuple[list[Term], dict[Term, str]]:
    """Keep each term that adds a dimension to the cells' design matrix; the rest are confounded."""
    cell_frame = pd.DataFrame([{f: getattr(c, f) for f in FACTORS} for c in cells])
    kept: list[Term] = []
    confounded: dict[Term, str] = {}
    for term in terms:
        trial = kept + [term]
        if np.linalg.matrix_rank(_indicators(cell_frame, trial)) == len(trial) + 1:
            kept.append(term)
        else:
            others = ", ".join(t.label for t in kept) or "the intercept"
            confounded[term] = f"confounded with {others} in these cells: not identified"
    return kept, confounded


def fit_benchmark(outcomes: pd.DataFrame, benchmark: str, cells: list[Cell]) -> pd.DataFrame:
    """One row per candidate term: the estimate with its clustered interval, or why it is left out."""
    from statsmodels.regression.linear_model import OLS

    terms, left_factors = design_terms(cells)
    kept, confounded = identified_terms(cells, terms)
    common = {"benchmark": benchmark, "n_cells": outcomes["cell"].nunique(),
              "n_questions": outcomes["question"].nunique(), "n_clusters": outcomes["cluster"].nunique(),
              "outcome": "score" if (outcomes["kind"] == "score").any() else "correct"}
    rows = []
    if kept:
        groups = pd.factorize(outcomes["cluster"])[0]
        fit = OLS(outcomes["y"].to_numpy(float), _indicators(outcomes, kept)).fit(
            cov_type="cluster", cov_kwds={"groups": groups})
        bounds = fit.conf_int(alpha=1 - LEVEL)
        for i, term in enumerate(kept, start=1):
            rows.append({**common, "term": term.label, "factor": term.factor, "level": term.level,
                         "baseline": term.baseline, "estimate": fit.params[i], "std_error": fit.bse[i],
                         "ci_low": bounds[i, 0], "ci_high": bounds[i, 1], "p_value": fit.pvalues[i], "note": ""})
    for term, why in confounded.items():
        rows.append({**common, "term": term.label, "factor": term.factor, "level": term.level,
                     "baseline": term.baseline, "note": why})
    for factor, why in left_factors.items():
        rows.append({**common, "term": f"{FACTORS[factor]} (one level)", "factor": factor, "note": why})
    return pd.DataFrame(rows, columns=EFFECT_COLUMNS)


def build_effects(cells: list[Cell], benchmarks: list[str], cells_dir: Path) -> pd.DataFrame:
    from llava_gemma.analysis.outcomes import load_outcomes

    frames = [fit_benchmark(load_outcomes(cells, b, cells_dir), b, cells) for b in benchmarks]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=EFFECT_COLUMNS)


def write_effects(effects: pd.DataFrame, out_dir: Path) -> None:
    from llava_gemma.analysis.plots import plot_effects

    out_dir.mkdir(parents=True, exist_ok=True)
    effects.to_csv(out_dir / "effects.csv", index=False, float_format="%.5f")
    plot_effects(effects, out_dir / "effects.png")
