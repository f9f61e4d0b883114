"""Replicates of a cell (same settings, other seeds): their mean and the spread between them.

The between-run SD is the sample SD (ddof=1) of the per-run values: how much a score moves with
the seed alone. It is a different quantity from a run's question-sampling interval (how much the
score would move with another draw of questions for the same trained model); Table 1 shows both.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd


def replicate_summary(per_run: pd.DataFrame, value: str, by: Sequence[str] | None = None) -> pd.DataFrame:
    """Per group of runs: ``value`` (the mean over runs), ``<value>_between_run_sd`` and ``n_runs``.

    ``per_run`` has one row per run (column ``run``) and group; ``by`` names the columns that define a
    group (e.g. ``["cell", "benchmark"]``); by default every column except ``run`` and ``value``, so pass
    ``by`` when ``per_run`` carries other measurements. Runs with no value (NaN) are not counted; the SD
    is NaN for a group with one run. Groups keep their first-seen order.
    """
    keys = [c for c in per_run.columns if c not in ("run", value)] if by is None else list(by)
    if missing := [c for c in [*keys, value] if c not in per_run.columns]:
        raise KeyError(f"per_run has no column {missing[0]!r}; its columns are {list(per_run.columns)}.")
    if not keys:
        raise ValueError("replicate_summary needs at least one column that names the group (e.g. 'cell').")
    grouped = per_run.groupby(keys, sort=False, dropna=False)[value]
    out = grouped.agg(["mean", "std", "count"]).reset_index()
    return out.rename(columns={"mean": value, "std": f"{value}_between_run_sd", "count": "n_runs"})
