"""Power before spending: the smallest main effect a planned study finds with 80% power, per benchmark,
and the replicates a target effect needs.

For a two-level factor in a balanced design of R runs and p run-level terms, the main effect is the
mean of R/2 runs minus the mean of the other R/2, so its variance is 4 s^2 / R, where s^2 is the
variance of one run's mean outcome over seeds and question noise: s^2 = seed_sd^2 + 0.25 / questions
(the binomial term at its largest, p = 0.5; shared question difficulty cancels in the contrast).
The test is a t test with R - p df, as the effect model's Bell-McCaffrey df on a balanced design, so
the smallest effect found with power 1 - beta at two-sided level alpha is
(t(1 - alpha/2, df) + t(1 - beta, df)) * 2 s / sqrt(R).

``s`` comes either from ``--seed-sd`` (with ``--questions``), or from a pilot study's effects.csv:
each benchmark's main-effect standard error there gives s = SE * sqrt(R_pilot) / 2, which holds the
pilot's seed and question noise together (its run_sd column is the seed part alone).
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
from scipy import stats

from llava_gemma.errors import UserError

ALPHA, POWER = 0.05, 0.8


def detectable_effect(run_mean_sd: float, runs: int, run_terms: int, alpha: float = ALPHA,
                      power: float = POWER) -> float:
    """Smallest main effect found with ``power`` by a two-sided t test at ``alpha`` (module docstring)."""
    df = runs - run_terms
    if df < 1:
        return math.nan
    t = stats.t.ppf(1 - alpha / 2, df) + stats.t.ppf(power, df)
    return float(t * 2 * run_mean_sd / math.sqrt(runs))


def replicates_needed(target: float, run_mean_sd: float, cells: int, run_terms: int, limit: int = 100) -> int | None:
    """Fewest replicates per cell whose design finds ``target`` with 80% power (None beyond ``limit``)."""
    for r in range(1, limit + 1):
        if detectable_effect(run_mean_sd, cells * r, run_terms) <= abs(target):
            return r
    return None


def pilot_spread(path: Path) -> dict[str, float]:
    """Per benchmark, the SD of one run's mean outcome that a pilot study's effects.csv implies."""
    if not Path(path).is_file():
        raise UserError(f"--pilot {path} does not exist; pass a study's results/report/effects.csv.")
    effects = pd.read_csv(path)
    if "scale" in effects:  # per-question rows only: official-scale rows (MME points, ...) are in other units
        effects = effects[effects["scale"].isna() | (effects["scale"] == "per question")]
    rows = effects[effects["std_error"].notna() & ~effects["factor"].astype(str).str.contains(":")]
    if rows.empty:
        raise UserError(f"--pilot {path} has no main-effect standard errors; pass a fitted study's effects.csv.")
    return {b: float(g["std_error"].mean() * math.sqrt(g["n_runs"].iloc[0]) / 2)
            for b, g in rows.groupby("benchmark", sort=False)}


def power_markdown(spread: dict[str, float], cells: int, replicates: int, run_terms: int,
                   target: float | None, source: str) -> str:
    runs = cells * replicates
    lines = [f"Power: {cells} cells x {replicates} replicate(s) = {runs} runs, {run_terms} run-level terms, "
             f"two-sided 5% test, 80% power; SD of a run's mean outcome from {source}.", "",
             "| benchmark | SD of a run's mean | smallest effect found (80% power) |"
             + (f" replicates for {target:g} |" if target else ""),
             "|---|---:|---:|" + ("---:|" if target else "")]
    for bench, sd in spread.items():
        mde = detectable_effect(sd, runs, run_terms)
        row = f"| {bench} | {sd:.4f} | {'-' if math.isnan(mde) else f'{mde:.4f}'} |"
        if target:
            need = replicates_needed(target, sd, cells, run_terms)
            row += f" {need if need else '> 100'} |"
        lines.append(row)
    return "\n".join(lines) + "\n"
