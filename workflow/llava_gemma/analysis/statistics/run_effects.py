"""The report's factor effects for any grid: every run's per-question outcomes, with one column per
factor (its level), fitted by ``fit_effects`` with the study's design (so aliased terms are named)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from llava_gemma.study.config import Cell


def run_outcomes(runs: list[Cell], benchmark: str, cells_dir: Path) -> pd.DataFrame:
    """Per-question outcomes of every run: run, one column per factor, question, cluster, y, kind."""
    from llava_gemma.analysis.statistics.outcomes import load_outcomes

    frame = load_outcomes(runs, benchmark, cells_dir)
    levels = {r.name: dict(r.levels) for r in runs}
    frame["run"] = frame["cell"]
    for factor, _ in runs[0].levels:
        frame[factor] = frame["run"].map(lambda name, f=factor: levels[name][f])
    return frame


def build_run_effects(runs: list[Cell], benchmarks: list[str], cells_dir: Path,
                      factors: dict[str, list[str]], design: str | dict | list = "full") -> pd.DataFrame:
    """effects.csv: one ``fit_effects`` table per benchmark over every run of every cell."""
    from llava_gemma.analysis.statistics.effects import fit_effects, with_holm
    from llava_gemma.analysis.statistics.official_scales import PER_QUESTION, official_outcomes
    from llava_gemma.study.design import select_cells

    chosen = select_cells(factors, design)
    levels = {f: tuple(lv) for f, lv in factors.items()}
    frames = []
    for b in benchmarks:
        outcomes = run_outcomes(runs, b, cells_dir)
        frames.append(fit_effects(outcomes, levels, b, chosen).assign(scale=PER_QUESTION))
        # The same effects in the benchmark's own unit (MME points, MMVP pairs, POPE F1), as extra rows.
        frames += [fit_effects(rows, levels, b, chosen).assign(scale=name)
                   for name, rows in official_outcomes(b, outcomes, list(levels)).items()]
    return with_holm(frames)
