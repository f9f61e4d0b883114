"""Table 1 with replicates: one row per cell from the rows of its runs.

Two kinds of uncertainty sit side by side and are kept apart. The question-sampling interval says how
much a run's score would move on another sample of questions of the same benchmark (each run's
bootstrap interval; the row shows the runs' mean half-widths around their mean). The between-replicate
spread says how much it moves when the same cell is trained again with another seed (fresh weights,
data order): the standard deviation of the runs' scores.

With two or more runs the two are combined: ``<column>_combined_low/high`` is the interval for the
cell's mean score over seeds and question samples, half-width sqrt(h_q^2 + (t * sd / sqrt(n))^2)
(h_q the question-sampling half-width, t the 97.5% Student t quantile with n - 1 df, n runs), and
``<column>_predict_low/high`` the interval for one more run of the cell (sd * sqrt(1 + 1/n) in place
of sd / sqrt(n)): the yardstick for "would another run, such as the paper's, land here?". With
2 runs, t has 1 df (12.7): honest about how little 2 seeds say.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from llava_gemma.study.config import Cell

PAPER_FACTORS = ("language_model", "vision_tower", "connector")
REPLICATE_NOTE = ("With replicates each row is the mean over its cell's runs: [low, high] is the 95% interval for "
                  "the cell's mean score combining question sampling (bootstrap over images or pairs, the runs' mean "
                  "half-width) and seed variance (t with runs - 1 df on the between-run sd / sqrt(runs)); ±sd is the "
                  "between-replicate standard deviation (the same cell trained again with another seed); "
                  "`replicates` counts the runs. table1.csv also keeps the question-only interval (_ci_low/_ci_high) "
                  "and the interval for one more run (_predict_low/_predict_high).")


def combined_intervals(mean: float, question_half: float, sd: float, n: int, column: str) -> dict[str, float]:
    """The cell mean's interval over question sampling and seeds, and one more run's (module docstring)."""
    from scipy import stats

    if n < 2 or np.isnan(sd) or np.isnan(question_half):
        return {f"{column}_{k}": float("nan") for k in ("combined_low", "combined_high", "predict_low", "predict_high")}
    t = float(stats.t.ppf(0.975, n - 1))
    mean_half = float(np.hypot(question_half, t * sd / np.sqrt(n)))
    run_half = float(np.hypot(question_half, t * sd * np.sqrt(1 + 1 / n)))
    return {f"{column}_combined_low": mean - mean_half, f"{column}_combined_high": mean + mean_half,
            f"{column}_predict_low": mean - run_half, f"{column}_predict_high": mean + run_half}


def mean_over_replicates(per_run: pd.DataFrame, runs: list[Cell], columns: list[str]) -> pd.DataFrame:
    """Rows of ``per_run`` (one per run, in ``runs`` order) folded into one per cell, first-seen order."""
    frame = per_run.copy()
    frame["cell"] = [r.cell for r in runs]
    rows = []
    for _cell, group in frame.groupby("cell", sort=False):
        row = group.iloc[0].to_dict()
        row["replicates"] = len(group)
        for column in columns:
            values = group[column].to_numpy(float)
            mean = float(np.mean(values))
            row[column] = mean
            below = float(np.mean(values - group[f"{column}_ci_low"].to_numpy(float)))
            above = float(np.mean(group[f"{column}_ci_high"].to_numpy(float) - values))
            row[f"{column}_ci_low"], row[f"{column}_ci_high"] = mean - below, mean + above
            sd = float(np.std(values, ddof=1)) if len(values) > 1 else float("nan")
            row[f"{column}_replicate_sd"] = sd
            row.update(combined_intervals(mean, (below + above) / 2, sd, len(values), column))
        rows.append(row)
    return pd.DataFrame(rows)
