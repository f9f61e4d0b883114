"""Cluster-robust covariance of OLS coefficients: one-way CR2, and two-way by question and by run.

Every trained model (a run: one cell, one replicate) answers the same questions, so an outcome
shares noise with the other outcomes of its question (some questions are hard for every model)
and with the other outcomes of its run (a seed that trained well helps every answer). The
two-way estimator of Cameron, Gelbach and Miller (2011) adds the covariance clustered by question
to the one clustered by run and subtracts the one clustered by their intersection, which both
counted.

Small-sample choices, stated because runs are few (8 to a few dozen):
- Each one-way component is CR2 (Bell and McCaffrey 2002): residuals of cluster g are scaled by
  (I - H_gg)^(-1/2) before the sandwich, which makes the component unbiased when errors are
  homoskedastic. CR1's G/(G-1) factor is far too small when regressors are constant within a run
  and runs barely outnumber coefficients (with 8 runs and 4 coefficients, half the run-level
  variance is absorbed by the fit).
- The run part, V_run - V_question∩run, estimates the between-run variance the question part
  misses; it cannot be negative, so it is projected onto the positive semidefinite matrices
  (negative eigenvalues set to 0) before it is added. The interval is then never narrower than
  the question-sampling interval. (Cameron et al. clip the eigenvalues of the whole sum instead.)
- Intervals use Student t with Welch-Satterthwaite degrees of freedom per coefficient:
  df = (v_q + v_excess)^2 / (v_q^2 / (G_question - 1) + v_run^2 / (G_run - rank(run-level design))),
  with v_run (not the excess) in the second term because the excess is estimated as a
  difference whose noise is that of V_run. Close to the normal when runs are many; close to a
  regression on run means (G_run - rank degrees of freedom) when the run part dominates. With one
  run per cell of a 2^3 design (4 run-level degrees of freedom) the intervals are therefore
  somewhat wider than question-only ones even when the cells show no extra spread.
  In simulations (tools/effects_coverage.py) this covers at about the nominal rate, slightly
  above it when there is no run effect.
- If the runs leave no residual degrees of freedom (as many runs as run-level coefficients), the
  between-run variance cannot be estimated and only the question part is used; the caller says so.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

EPS = 1e-12


def _inv_sqrt_psd(m: np.ndarray) -> np.ndarray:
    vals, vecs = np.linalg.eigh(m)
    return (vecs / np.sqrt(np.clip(vals, EPS, None))) @ vecs.T


def psd_part(m: np.ndarray) -> np.ndarray:
    """The nearest positive semidefinite matrix to symmetric ``m``: negative eigenvalues set to 0."""
    vals, vecs = np.linalg.eigh((m + m.T) / 2)
    return (vecs * np.clip(vals, 0.0, None)) @ vecs.T


def cr2_cov(x: np.ndarray, resid: np.ndarray, groups: np.ndarray, bread: np.ndarray) -> np.ndarray:
    """CR2 covariance clustered by ``groups`` (integer codes); ``bread`` is (X'X)^-1."""
    root = _inv_sqrt_psd(np.linalg.inv(bread))  # (X'X)^(-1/2): H_gg = (X_g root)(X_g root)'
    order = np.argsort(groups, kind="stable")
    _, starts, sizes = np.unique(groups[order], return_index=True, return_counts=True)
    meat = np.zeros((x.shape[1], x.shape[1]))
    for size in np.unique(sizes):
        # Batch every cluster of this size: (m, size, k) regressors and (m, size) residuals.
        rows = order[(starts[sizes == size][:, None] + np.arange(size)[None, :])]
        xg, eg = x[rows], resid[rows]
        u, s, _ = np.linalg.svd(xg @ root, full_matrices=False)
        leverage = s**2
        scale = np.where(1 - leverage > 1e-10, 1 / np.sqrt(np.clip(1 - leverage, 1e-10, None)) - 1, 0.0)
        proj = np.einsum("msr,ms->mr", u, eg)
        adjusted = eg + np.einsum("msr,mr->ms", u, scale * proj)
        scores = np.einsum("msk,ms->mk", xg, adjusted)
        meat += scores.T @ scores
    return bread @ meat @ bread


@dataclass(frozen=True)
class TwoWay:
    cov: np.ndarray  # what the intervals use
    cov_question: np.ndarray  # clustered by question only
    cov_run_excess: np.ndarray  # the between-run part added to it (zeros if not estimable)
    df: np.ndarray  # Satterthwaite degrees of freedom per coefficient
    run_df: int  # residual degrees of freedom at the run level (<= 0: run part not estimable)


def run_level_df(x: np.ndarray, runs: np.ndarray) -> int:
    """Runs minus the rank of the run-mean design: what is left to estimate a between-run variance."""
    codes, inverse = np.unique(runs, return_inverse=True)
    means = np.zeros((len(codes), x.shape[1]))
    np.add.at(means, inverse, x)
    means /= np.bincount(inverse)[:, None]
    return len(codes) - int(np.linalg.matrix_rank(means))


def two_way_cov(x: np.ndarray, resid: np.ndarray, questions: np.ndarray, runs: np.ndarray) -> TwoWay:
    """Covariance clustered by question and by run (integer codes per observation); see the module docstring."""
    bread = np.linalg.inv(x.T @ x)
    v_q = cr2_cov(x, resid, questions, bread)
    g_q = len(np.unique(questions))
    df_q = max(g_q - 1, 1)
    run_df = run_level_df(x, runs)
    if run_df <= 0:
        excess = np.zeros_like(v_q)
        df = np.full(x.shape[1], float(df_q))
    else:
        both = questions.astype(np.int64) * (int(runs.max()) + 1) + runs
        v_r = cr2_cov(x, resid, runs, bread)
        excess = psd_part(v_r - cr2_cov(x, resid, both, bread))
        # The run part is a difference whose noise is that of V_run (it holds the question noise of each
        # run's mean too), so V_run, not the difference, carries the run_df degrees of freedom.
        a, b, r = np.diag(v_q), np.diag(excess), np.diag(v_r)
        denominator = a**2 / df_q + r**2 / run_df
        df = np.where(denominator > 0, (a + b) ** 2 / np.where(denominator > 0, denominator, 1), float(df_q))
    return TwoWay(v_q + excess, v_q, excess, df, run_df)
