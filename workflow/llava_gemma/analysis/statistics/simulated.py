"""Simulated studies with known factor effects: how often the effect model's intervals cover the truth.

A simulated run (a cell and a replicate) answers every question with probability
``base + effects of its levels + interactions + run effect + image effect + question effect``:

- the run effect (normal, SD ``run_sd``) is the seed's luck shared by all of a run's answers;
- questions come ``questions_per_image`` to an image; the image effect (uniform, SD ``image_sd``)
  is a difficulty shared by the image's questions in every run, and ``effect_sd_by_image`` makes a
  factor's effect vary between images (uniform deviations, SD per factor; bounded, so
  probabilities stay in [0, 1]), so an image's questions
  move together when that factor changes: the dependence the image clusters must carry;
- the question effect (uniform in +-``question_spread``) is the question's own difficulty;
- ``interactions`` add an effect where two factors are both at their second level;
- ``replicates`` is one count for every cell, or one per cell (unbalanced runs).

The estimand of a main effect is its average effect over the other factors' levels (with an
interaction: the main effect plus half the interaction, on a balanced two-level design). The
model fitted (main effects only) is not the model simulated, as in a real study.
Used by tests/test_effects_simulated.py and tools/effects_coverage.py.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from llava_gemma.analysis.statistics.intervals import Intervals, ols_intervals
from llava_gemma.study.design import Design


@dataclass(frozen=True)
class Scenario:
    design: Design
    effects: dict[str, float]  # factor -> effect of its second level over its first (two-level factors)
    replicates: int | tuple[int, ...] = 2  # per cell, or one count for every cell
    n_questions: int = 200
    run_sd: float = 0.04
    question_spread: float = 0.2
    base: float = 0.45
    questions_per_image: int = 1
    image_sd: float = 0.0
    effect_sd_by_image: dict[str, float] = field(default_factory=dict)
    interactions: dict[tuple[str, str], float] = field(default_factory=dict)

    def truth(self) -> dict[str, float]:
        """Each factor's average effect over the other factors' levels (balanced two-level cells)."""
        out = dict(self.effects)
        for (f, g), value in self.interactions.items():
            out[f] = out.get(f, 0.0) + value / 2
            out[g] = out.get(g, 0.0) + value / 2
        return out

    def runs_per_cell(self) -> tuple[int, ...]:
        n = len(self.design.cells)
        return (self.replicates,) * n if isinstance(self.replicates, int) else tuple(self.replicates)


def _high(s: Scenario, cell: dict[str, str], factor: str) -> bool:
    return cell[factor] == s.design.factors[factor][1]


def _uniform(rng: np.random.Generator, sd: float, n: int) -> np.ndarray:
    """Uniform draws with mean 0 and standard deviation ``sd``."""
    half = sd * np.sqrt(3.0)
    return rng.uniform(-half, half, n)


@dataclass(frozen=True)
class Study:
    """One simulated study as arrays, one entry per (run, question) answer."""

    x: np.ndarray  # intercept and one indicator per factor (its second level)
    y: np.ndarray
    images: np.ndarray
    questions: np.ndarray
    runs: np.ndarray
    factors: tuple[str, ...]


def simulate_study(s: Scenario, rng: np.random.Generator) -> Study:
    """Every run answers every question once; see the module docstring for the model."""
    n_images = -(-s.n_questions // s.questions_per_image)
    image = np.arange(s.n_questions) // s.questions_per_image
    difficulty = rng.uniform(-s.question_spread, s.question_spread, s.n_questions)
    difficulty += _uniform(rng, s.image_sd, n_images)[image]
    deviation = {f: _uniform(rng, sd, n_images)[image] for f, sd in s.effect_sd_by_image.items()}
    factors = tuple(s.design.factors)
    xs, ys, runs = [], [], []
    for cell, n_runs in zip(s.design.cells, s.runs_per_cell(), strict=True):
        shift = sum(eff for f, eff in s.effects.items() if _high(s, cell, f))
        shift += sum(v for (f, g), v in s.interactions.items() if _high(s, cell, f) and _high(s, cell, g))
        varying = sum((dev for f, dev in deviation.items() if _high(s, cell, f)), np.zeros(s.n_questions))
        row = [1.0] + [float(_high(s, cell, f)) for f in factors]
        for _ in range(n_runs):
            p = s.base + shift + rng.normal(0.0, s.run_sd) + difficulty + varying
            if p.min() < 0 or p.max() > 1:
                raise ValueError("the scenario puts a probability outside [0, 1]; lower the effects or spreads.")
            ys.append((rng.random(s.n_questions) < p).astype(float))
            xs.append(np.tile(row, (s.n_questions, 1)))
            runs.append(np.full(s.n_questions, len(runs)))
    n_runs = len(runs)
    return Study(np.vstack(xs), np.concatenate(ys), np.tile(image, n_runs), np.tile(np.arange(s.n_questions), n_runs),
                 np.concatenate(runs), factors)


def simulate_outcomes(s: Scenario, rng: np.random.Generator) -> pd.DataFrame:
    """The study as ``fit_effects`` reads it: run, one column per factor, question, cluster (image), y."""
    study = simulate_study(s, rng)
    levels = {f: np.asarray(s.design.factors[f])[study.x[:, 1 + i].astype(int)] for i, f in enumerate(study.factors)}
    return pd.DataFrame({"run": study.runs.astype(str), **levels, "question": study.questions,
                         "cluster": study.images, "y": study.y})


Fit = Callable[[Study], Intervals]


def report_fit(two_way: bool = True, by_image: bool = True) -> Fit:
    """The report's interval computation, clustered by image (``by_image``) or by question."""
    def fit(study: Study) -> Intervals:
        return ols_intervals(study.x, study.y, study.images if by_image else study.questions, study.runs,
                             two_way=two_way)
    return fit


def coverage(s: Scenario, n_sims: int, seed: int, *, fit: Fit | None = None) -> dict[str, float]:
    """Over ``n_sims`` studies and all factors: the share of 95% intervals containing the truth
    (``hits`` of ``intervals``), their mean width, and the calibration of the variance (mean squared
    standard error over the mean squared error of the estimates; 1 when the standard errors are
    right on average)."""
    fit = fit or report_fit()
    rng = np.random.default_rng(seed)
    truth_of = s.truth()
    hits, total, widths, se2, err2 = 0, 0, [], [], []
    for _ in range(n_sims):
        study = simulate_study(s, rng)
        got = fit(study)
        truth = np.array([truth_of.get(f, 0.0) for f in study.factors])
        low, high, est, se = got.low[1:], got.high[1:], got.beta[1:], got.se[1:]
        hits += int(((low <= truth) & (truth <= high)).sum())
        total += len(truth)
        widths += list(high - low)
        se2 += list(se**2)
        err2 += list((est - truth) ** 2)
    return {"coverage": hits / total, "hits": hits, "intervals": total, "mean_width": float(np.mean(widths)),
            "variance_ratio": float(np.mean(se2) / np.mean(err2))}
