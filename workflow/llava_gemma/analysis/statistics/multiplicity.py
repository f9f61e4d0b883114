"""Multiple comparisons: Holm's step-down adjustment of the effect p-values.

A factor is tested on every benchmark (7 benchmarks x 3 factors: 21 tests in the paper study).
Within each term (a factor's level against its baseline) the benchmarks' p-values are adjusted
together by Holm (1979), which controls the family-wise error rate per factor at the nominal level
under any dependence between benchmarks: ``p_holm`` < 0.05 says "this factor moves this benchmark"
with at most a 5% chance that any of that factor's claims is false. The intervals stay unadjusted.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def holm(p_values: np.ndarray) -> np.ndarray:
    """Holm-adjusted p-values (NaN stays NaN and is not counted as a test)."""
    p = np.asarray(p_values, dtype=float)
    out = np.full_like(p, np.nan)
    tested = np.flatnonzero(~np.isnan(p))
    if len(tested) == 0:
        return out
    order = tested[np.argsort(p[tested], kind="stable")]
    m = len(order)
    adjusted = np.maximum.accumulate((m - np.arange(m)) * p[order])
    out[order] = np.minimum(adjusted, 1.0)
    return out


def add_holm(effects: pd.DataFrame) -> pd.DataFrame:
    """``effects`` with ``p_holm``: Holm over the benchmarks of each term (factor and level)."""
    out = effects.copy()
    out["p_holm"] = np.nan
    keys = ["factor", "level"] + (["scale"] if "scale" in out and out["scale"].notna().all() else [])
    for _, index in out.groupby(keys, dropna=True).groups.items():  # one family per term (and scale)
        out.loc[index, "p_holm"] = holm(out.loc[index, "p_value"].to_numpy(float))
    return out
