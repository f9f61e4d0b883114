"""Lack of fit of the main-effects model against pure error, where replicates allow.

With replicated cells, the spread of a cell's runs around their cell mean is pure error (seeds,
and each run's own answer noise): it needs no model. The runs' departure from the main-effects fit
beyond that spread is lack of fit: interactions the model leaves out. On the runs' mean outcomes
(each run answers the same questions),

    SS_resid = sum over runs (m_r - fit_r)^2           (main-effects model, runs weighted equally)
    SS_pe    = sum over runs (m_r - mean of its cell)^2,  df_pe  = runs - cells
    SS_lof   = SS_resid - SS_pe,                        df_lof = cells - (1 + terms)
    F        = (SS_lof / df_lof) / (SS_pe / df_pe)      ~ F(df_lof, df_pe) if the model fits.

The test treats the benchmark's questions as fixed: it asks whether these cells, on these questions,
depart from additivity more than replicate runs of one cell differ. It needs df_pe >= 1 (some cell
has two runs) and df_lof >= 1 (more cells than the model's parameters: a full factorial or a
fraction with spare cells, not a saturated design). Interaction rows (interactions.py) say which
interaction, where the design estimates it; this says whether anything is missing at all.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

TERM = "lack of fit of the main-effects model"


@dataclass(frozen=True)
class LackOfFit:
    f: float
    df_lof: int
    df_pe: int
    p: float


def lack_of_fit(run_means: np.ndarray, x_runs: np.ndarray, cell_of_run: np.ndarray) -> LackOfFit | None:
    """The F test from one mean outcome per run, its main-effects model row and its cell; None where the
    runs leave no pure-error or no lack-of-fit degrees of freedom."""
    m = np.asarray(run_means, float)
    cells = pd.factorize(pd.Series(cell_of_run))[0]
    n_cells, rank = cells.max() + 1, np.linalg.matrix_rank(x_runs)
    df_pe, df_lof = len(m) - n_cells, n_cells - rank
    if df_pe < 1 or df_lof < 1:
        return None
    fitted = x_runs @ np.linalg.lstsq(x_runs, m, rcond=None)[0]
    cell_means = np.bincount(cells, m) / np.bincount(cells)
    ss_pe = float(((m - cell_means[cells]) ** 2).sum())
    ss_lof = max(float(((m - fitted) ** 2).sum()) - ss_pe, 0.0)
    if ss_pe <= 0:
        return None  # replicates identical to the last digit: no pure-error variance to test against
    f = (ss_lof / df_lof) / (ss_pe / df_pe)
    return LackOfFit(f, int(df_lof), int(df_pe), float(stats.f.sf(f, df_lof, df_pe)))


def lack_of_fit_rows(outcomes: pd.DataFrame, x: np.ndarray, factors: list[str], common: dict) -> list[dict]:
    """An effects.csv row for the test (none where it cannot run); ``x`` is the per-answer model matrix."""
    runs = pd.factorize(outcomes["run"])[0]
    counts = np.bincount(runs)
    means = np.bincount(runs, outcomes["y"].to_numpy(float)) / counts
    first = np.unique(runs, return_index=True)[1]  # one answer per run gives its model row and cell
    cell = outcomes[factors].astype(str).agg("|".join, axis=1).to_numpy()[first]
    test = lack_of_fit(means, x[first], cell)
    if test is None:
        return []
    return [{**common, "term": TERM, "factor": "lack of fit", "p_value": test.p, "df": test.df_pe,
             "note": f"F({test.df_lof}, {test.df_pe}) = {test.f:.3g}: run means against the main-effects model, "
                     "tested against pure error (replicates' spread within cells); questions held fixed"}]
