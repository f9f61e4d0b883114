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
- Degrees of freedom (``DF_RULE``): Bell and McCaffrey's (2002) small-sample df of the CR2 variance
  clustered by run, per coefficient (``bell_mccaffrey_df``; Imbens and Kolesar 2016 call it K_BM),
  computed under the working model of independent equal-variance errors. It depends on the design
  only: on a balanced two-level design it equals the run-level residual df (runs minus run-level
  terms: 4 for one run per cell of a 2^3), on unbalanced runs somewhat fewer, and it is never below 1,
  so it cannot collapse. The rule it replaces, a Satterthwaite combination of the question and run
  parts weighted by their estimates, did: where answers barely vary between runs (the toy study)
  its df fell towards 0 and the toy's VQAv2 interval was +-512 on a 0-1 scale; and floored, it still
  ran optimistic with 1-2 run-level df (coverage 0.905-0.927 in simulation), because its df grew
  exactly when the run part was underestimated by chance. Why the run clusters' df: runs are the
  coarsest dimension, and with seeds in play their few residual df govern how well the variance is
  known. The price: when question sampling dominates, or with 1-2 run-level df, the intervals are
  conservative (simulated coverage 0.94-1.00; tests/test_effects_simulated.py,
  tools/effects_coverage.py). Replicates raise the df and narrow the intervals.
- If the runs leave no residual degrees of freedom (as many runs as run-level coefficients), the
  between-run variance cannot be estimated and only the question part is used; the caller says so.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

EPS = 1e-12
DF_RULE = "Bell-McCaffrey df of the run clusters"
DF_RULE_QUESTION = "clusters - 1"


def _inv_sqrt_psd(m: np.ndarray) -> np.ndarray:
    vals, vecs = np.linalg.eigh(m)
    return (vecs / np.sqrt(np.clip(vals, EPS, None))) @ vecs.T


def psd_part(m: np.ndarray) -> np.ndarray:
    """The nearest positive semidefinite matrix to symmetric ``m``: negative eigenvalues set to 0."""
    vals, vecs = np.linalg.eigh((m + m.T) / 2)
    return (vecs * np.clip(vals, 0.0, None)) @ vecs.T


def _batches(x: np.ndarray, groups: np.ndarray, bread: np.ndarray):
    """Clusters of equal size together: rows (m, size), regressors (m, size, k), and the pieces of
    A_g = (I - H_gg)^(-1/2) = I + U diag(scale) U' (U, scale from the SVD of X_g (X'X)^(-1/2))."""
    root = _inv_sqrt_psd(np.linalg.inv(bread))  # (X'X)^(-1/2): H_gg = (X_g root)(X_g root)'
    order = np.argsort(groups, kind="stable")
    _, starts, sizes = np.unique(groups[order], return_index=True, return_counts=True)
    for size in np.unique(sizes):
        rows = order[(starts[sizes == size][:, None] + np.arange(size)[None, :])]
        xg = x[rows]
        u, s, _ = np.linalg.svd(xg @ root, full_matrices=False)
        leverage = s**2
        scale = np.where(1 - leverage > 1e-10, 1 / np.sqrt(np.clip(1 - leverage, 1e-10, None)) - 1, 0.0)
        yield rows, xg, u, scale


def _adjust(u: np.ndarray, scale: np.ndarray, v: np.ndarray) -> np.ndarray:
    """A_g v for every cluster of a batch; ``v`` is (m, size) or (m, size, k)."""
    if v.ndim == 2:
        return v + np.einsum("msr,mr->ms", u, scale * np.einsum("msr,ms->mr", u, v))
    return v + np.einsum("msr,mrk->msk", u, scale[..., None] * np.einsum("msr,msk->mrk", u, v))


def cr2_cov(x: np.ndarray, resid: np.ndarray, groups: np.ndarray, bread: np.ndarray) -> np.ndarray:
    """CR2 covariance clustered by ``groups`` (integer codes); ``bread`` is (X'X)^-1."""
    meat = np.zeros((x.shape[1], x.shape[1]))
    for rows, xg, u, scale in _batches(x, groups, bread):
        scores = np.einsum("msk,ms->mk", xg, _adjust(u, scale, resid[rows]))
        meat += scores.T @ scores
    return bread @ meat @ bread


def bell_mccaffrey_df(x: np.ndarray, groups: np.ndarray, bread: np.ndarray) -> np.ndarray:
    """Bell-McCaffrey degrees of freedom of each coefficient's CR2 variance clustered by ``groups``.

    Under the working model of independent, equal-variance errors, c'V_CR2 c = e' G G' e with column
    g of G equal to (I - H)_(.,g) A_g X_g (X'X)^-1 c; its Satterthwaite df is (sum l)^2 / sum l^2 over
    the eigenvalues l of G'G = diag(u_g'u_g) - W' (X'X)^-1 W (u_g = A_g X_g (X'X)^-1 c, w_g = X_g'u_g),
    a clusters x clusters matrix: (tr M)^2 / ||M||_F^2 (Bell and McCaffrey 2002; Imbens and Kolesar
    2016, "K_BM"). It depends on the design only, never on the noisy variance estimates, and is >= 1."""
    k = x.shape[1]
    norms, ws = [], []
    for _rows, xg, u, scale in _batches(x, groups, bread):
        ug = _adjust(u, scale, xg @ bread)  # (m, size, k): column j is u_g for coefficient j
        norms.append(np.einsum("msk,msk->mk", ug, ug))
        ws.append(np.einsum("msi,msj->mij", xg, ug))  # (m, k, k): [:, :, j] is w_g for coefficient j
    d, w = np.concatenate(norms), np.concatenate(ws)
    df = np.empty(k)
    for j in range(k):
        wj = w[:, :, j]
        m = np.diag(d[:, j]) - wj @ bread @ wj.T
        frob = float(np.sum(m * m))
        df[j] = np.trace(m) ** 2 / frob if frob > 0 else 1.0
    return np.maximum(df, 1.0)


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
        df = np.full(x.shape[1], float(df_q))  # DF_RULE_QUESTION
    else:
        both = questions.astype(np.int64) * (int(runs.max()) + 1) + runs
        v_r = cr2_cov(x, resid, runs, bread)
        excess = psd_part(v_r - cr2_cov(x, resid, both, bread))
        df = bell_mccaffrey_df(x, runs, bread)  # DF_RULE: the coarsest dimension's small-sample df
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
