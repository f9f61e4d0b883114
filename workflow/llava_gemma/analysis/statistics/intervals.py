"""OLS coefficients with clustered intervals, in arrays: the numeric core of ``fit_effects``.

Kept apart from the tables so simulations (tests/test_effects_simulated.py) can run thousands of
fits cheaply on exactly the code the report runs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from llava_gemma.analysis.statistics import clustered


@dataclass(frozen=True)
class Intervals:
    beta: np.ndarray
    se: np.ndarray
    df: np.ndarray
    low: np.ndarray
    high: np.ndarray
    p: np.ndarray
    run_df: int  # <= 0: the run part was not estimable (question part only)
    df_rule: str


def ols_intervals(x: np.ndarray, y: np.ndarray, clusters: np.ndarray, runs: np.ndarray, *,
                  two_way: bool = True, level: float = 0.95) -> Intervals:
    """OLS of ``y`` on ``x`` with CR2 intervals clustered by ``clusters`` and (``two_way``) by ``runs``.

    ``clusters`` and ``runs`` are integer codes per observation; clustered.py states the estimator
    and the degrees of freedom (``DF_RULE``)."""
    from scipy import stats

    beta, *_ = np.linalg.lstsq(x, y, rcond=None)
    resid = y - x @ beta
    run_df = clustered.run_level_df(x, runs)
    if two_way and run_df > 0:
        fit = clustered.two_way_cov(x, resid, clusters, runs)
        cov, df, rule = fit.cov, fit.df, clustered.DF_RULE
    else:
        cov = clustered.cr2_cov(x, resid, clusters, np.linalg.inv(x.T @ x))
        df, rule = np.full(len(beta), float(max(len(np.unique(clusters)) - 1, 1))), clustered.DF_RULE_QUESTION
    se = np.sqrt(np.clip(np.diag(cov), 0.0, None))
    crit = stats.t.ppf(0.5 + level / 2, df)
    p = 2 * stats.t.sf(np.abs(beta / np.where(se > 0, se, np.nan)), df)
    return Intervals(beta, se, df, beta - crit * se, beta + crit * se, p, run_df if two_way else 0, rule)
