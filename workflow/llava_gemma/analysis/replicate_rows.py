"""Table 1 with replicates: one row per cell from the rows of its runs.

Two kinds of uncertainty sit side by side and are kept apart. The question-sampling interval says how
much a run's score would move on another sample of questions of the same benchmark (each run's
bootstrap interval; the row shows the runs' mean half-widths around their mean). The between-replicate
spread says how much it moves when the same cell is trained again with another seed (fresh weights,
data order): the standard deviation of the runs' scores.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from llava_gemma.config import Cell

PAPER_FACTORS = ("language_model", "vision_tower", "connector")
REPLICATE_NOTE = ("With replicates each row is the mean over its cell's runs: [low, high] is the question-sampling "
                  "95% interval (bootstrap over questions; the runs' mean interval, centred on the mean) and ±sd is "
                  "the between-replicate standard deviation (the same cell trained again with another seed); "
                  "`replicates` counts the runs.")


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
            row[f"{column}_replicate_sd"] = float(np.std(values, ddof=1)) if len(values) > 1 else float("nan")
        rows.append(row)
    return pd.DataFrame(rows)
