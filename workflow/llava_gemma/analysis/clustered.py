"""Cluster-robust covariance of OLS coefficients: one-way CR2, and two-way by question and by run.

Every trained model (a run: one cell, one replicate) answers the same questions, so an outcome
shares noise with the other outcomes of its question (of its image, where questions share one:
"question" below is the benchmark's cluster) (some questions are hard for every model)
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
- Degrees of freedom (``DF_RULE``): a Satterthwaite approximation of our own, floored at the
  run-level residual degrees of freedom. Per coefficient,
  df_S = (v_q + v_excess)^2 / (v_q^2 / (G_question - 1) + v_run^2 / run_df), with run_df = runs minus
  the rank of the run-mean design, and v_run (not the excess) in the second term because the excess
  is a difference whose noise is that of V_run. It is not Bell-McCaffrey's CR2 df (which we do not
  compute for the two-way sum). Alone it collapses: when answers barely vary between runs (the toy
  study, where most questions are right or wrong in every cell) V_question is tiny, V_run is not,
  the excess is 0, and df_S falls towards 0 (a t quantile of 10^4 and more: the toy's VQAv2 interval
  of +-512 on a 0-1 scale). So df = max(df_S, run_df): never fewer degrees of freedom than the
  regression on run means, the classical analysis of the cells, which estimates the same run-level
  variance from run_df residuals. The floor only raises df where df_S fell below run_df; with a
  small run part the intervals stay somewhat conservative (df_S counts V_run's noise in full).
  In simulations (tests/test_effects_simulated.py, tools/effects_coverage.py) this covers at about
  the nominal rate with run effects, and above it when there is none.
- If the runs leave no residual degrees of freedom (as many runs as run-level coefficients), the
  between-run variance cannot be estimated and only the question part is used; the caller says so.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

EPS = 1e-12
DF_RULE = "Satterthwaite floored at run-level residual df (runs - run-level terms)"
DF_RULE_QUESTION = "clusters - 1"


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
    df: np.ndarray  # degrees of freedom per coefficient (DF_RULE)
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
        satterthwaite = np.where(denominator > 0, (a + b) ** 2 / np.where(denominator > 0, denominator, 1),
                                 float(df_q))
        df = np.maximum(satterthwaite, float(run_df))  # the floor: see DF_RULE in the module docstring
    return TwoWay(v_q + excess, v_q, excess, df, run_df)


def run_variance(x: np.ndarray, y: np.ndarray, questions: np.ndarray, runs: np.ndarray) -> float:
    """Between-run variance of a run's mean outcome that its questions' sampling does not explain.

    Method of moments on run means: the residual mean square of the run means regressed on the
    run-level design estimates run variance + within-run noise / questions per run; the within-run
    noise is the residual variance of the additive question + run model. NaN without run_df."""
    run_df = run_level_df(x, runs)
    if run_df <= 0:
        return float("nan")
    codes, inverse = np.unique(runs, return_inverse=True)
    counts = np.bincount(inverse)
    means_x = np.zeros((len(codes), x.shape[1]))
    np.add.at(means_x, inverse, x)
    means_x /= counts[:, None]
    means_y = np.bincount(inverse, weights=y) / counts
    coef, *_ = np.linalg.lstsq(means_x, means_y, rcond=None)
    between = float(np.sum((means_y - means_x @ coef) ** 2) / run_df)
    q_codes, q_inverse = np.unique(questions, return_inverse=True)
    q_means = np.bincount(q_inverse, weights=y) / np.bincount(q_inverse)
    within_resid = y - q_means[q_inverse] - means_y[inverse] + y.mean()
    within_df = max(len(y) - len(q_codes) - len(codes) + 1, 1)
    within = float(np.sum(within_resid**2) / within_df)
    return max(between - within * float(np.mean(1 / counts)), 0.0)
