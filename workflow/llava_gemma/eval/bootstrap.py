"""Seeded bootstrap percentile intervals for benchmark metrics.

A benchmark's units are resampled with replacement: its clusters, the units whose answers are
dependent (the image for GQA, POPE, VQAv2, MME and MM-Vet, whose questions share images; the pair
for MMVP; the question where each has its own image, ScienceQA-IMG). A cluster's questions go in or
out of a resample together (``cluster_components``), so the interval covers the sampling of images,
not only of questions, which is narrower than it should be when an image's questions move together.
Each unit carries a row of additive components, e.g. ``[correct, 1]`` for an accuracy or
``[tp, fp, tn, fn]`` for POPE's F1, so every resample's metric is a function of one row of summed
components: a resample is a vector of counts over units, and all resamples together are one
(resamples x units) count matrix times the (units x components) matrix, done in chunks in numpy.
With ``strata`` the units are resampled within each stratum, keeping its size (MME's subtasks,
POPE's splits), as the benchmark's design fixes those sizes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

N_RESAMPLES = 1000
SEED = 0
LEVEL = 0.95
_CHUNK = 200  # resamples per count matrix: bounds memory at _CHUNK x units integers

Statistic = Callable[[np.ndarray], np.ndarray]


def _resampled_sums(x: np.ndarray, rng: np.random.Generator, n_resamples: int) -> np.ndarray:
    """(n_resamples, components) sums of ``x``'s rows over bootstrap resamples of its rows."""
    m = len(x)
    sums = np.empty((n_resamples, x.shape[1]))
    for start in range(0, n_resamples, _CHUNK):
        c = min(_CHUNK, n_resamples - start)
        draws = rng.integers(0, m, size=(c, m)) + (np.arange(c) * m)[:, None]
        counts = np.bincount(draws.ravel(), minlength=c * m).reshape(c, m)
        sums[start:start + c] = counts @ x
    return sums


def bootstrap_interval(
    components: Any,
    statistic: Statistic,
    *,
    strata: Sequence[Any] | None = None,
    n_resamples: int = N_RESAMPLES,
    seed: int = SEED,
    level: float = LEVEL,
) -> tuple[float, float]:
    """Percentile ``level`` interval of ``statistic`` over bootstrap resamples of the units.

    ``components`` is a (units, k) array (or a 1-D array, one component per unit);
    ``statistic`` maps a (resamples, k) array of summed components to (resamples,) metric values.
    """
    x = np.asarray(components, dtype=float)
    if x.ndim == 1:
        x = x[:, None]
    if len(x) == 0:
        raise ValueError("bootstrap_interval needs at least one unit.")
    if n_resamples < 1 or not 0.0 < level < 1.0:
        raise ValueError("bootstrap_interval needs n_resamples >= 1 and 0 < level < 1.")
    rng = np.random.default_rng(seed)
    if strata is None:
        sums = _resampled_sums(x, rng, n_resamples)
    else:
        labels = np.asarray([str(s) for s in strata])
        if len(labels) != len(x):
            raise ValueError("bootstrap_interval: strata must give one label per unit.")
        sums = np.zeros((n_resamples, x.shape[1]))
        for label in sorted(set(labels.tolist())):  # fixed order: same seed, same interval
            sums += _resampled_sums(x[labels == label], rng, n_resamples)
    values = np.asarray(statistic(sums), dtype=float)
    alpha = (1.0 - level) / 2.0
    low, high = np.nanquantile(values, [alpha, 1.0 - alpha])
    return float(low), float(high)


def cluster_components(components: Any, clusters: Sequence[Any],
                       strata: Sequence[Any] | None = None) -> tuple[np.ndarray, list[str] | None]:
    """Per-question component rows summed per cluster (first-seen order), and each cluster's stratum.

    Clusters must nest in strata (an MME image in its subtask); where they cross (POPE's splits ask
    about the same images) resample the clusters without strata."""
    x = np.asarray(components, dtype=float)
    x = x[:, None] if x.ndim == 1 else x
    labels = [str(c) for c in clusters]
    if len(labels) != len(x):
        raise ValueError("cluster_components: clusters must give one label per question.")
    codes, first = np.unique(labels, return_index=True)
    order = np.argsort(first)  # first-seen order: the same records give the same resamples
    index = {c: i for i, c in enumerate(codes[order])}
    sums = np.zeros((len(codes), x.shape[1]))
    np.add.at(sums, [index[c] for c in labels], x)
    if strata is None:
        return sums, None
    pairs = {(c, str(s)) for c, s in zip(labels, strata, strict=True)}
    if len(pairs) != len(codes):
        raise ValueError("cluster_components: a cluster spans several strata; resample the clusters without strata.")
    stratum = [str(strata[i]) for i in first[order]]
    return sums, stratum


def ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den elementwise, 0.0 where den is 0 (the benchmarks' convention for empty groups)."""
    num, den = np.asarray(num, dtype=float), np.asarray(den, dtype=float)
    return np.divide(num, den, out=np.zeros(np.broadcast(num, den).shape), where=den != 0)


def mean_interval(values: Any, *, scale: float = 1.0, clusters: Sequence[Any] | None = None,
                  **kwargs: Any) -> tuple[float, float]:
    """Interval of ``scale`` x the mean of per-question ``values`` (accuracy, judge score...), resampling
    ``clusters`` (one label per value, e.g. its image) whole when given, else single questions."""
    v = np.asarray(values, dtype=float)
    comps = np.stack([v, np.ones_like(v)], axis=1)
    if clusters is not None:
        comps, _ = cluster_components(comps, clusters)
    return bootstrap_interval(comps, lambda s: scale * ratio(s[:, 0], s[:, 1]), **kwargs)


def interval_keys(metric: str, interval: tuple[float, float]) -> dict[str, float]:
    """``{metric}_ci_low`` / ``{metric}_ci_high`` entries for a metrics dict."""
    return {f"{metric}_ci_low": interval[0], f"{metric}_ci_high": interval[1]}
