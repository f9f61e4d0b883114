"""Two-factor interactions of two-level factors, fitted where the design estimates them.

The main-effect rows of effects.csv come from the main-effects model. Interaction rows come from a
second fit that adds every estimable two-factor interaction, coded as the product of centred
indicators, (d_A - 1/2)(d_B - 1/2): its coefficient is A's effect where B is at its second level
minus A's effect where B is at its baseline, and on a balanced design the column is orthogonal to
the main effects. An interaction is fitted when the cells separate it from the main effects and the
other interactions, the design does not alias it (a full factorial, or resolution V and up), and the
runs leave at least ``MIN_RUN_DF`` run-level degrees of freedom for the seed part once the
interactions are in. An aliased interaction gets a row naming its aliases. With one run per cell of
a 2^3 the interactions would leave one run-level df (t quantile 12.7): they are not fitted and no
row is written; there the main-effects model counts them as run-level noise (docs/effects.md).
Train replicates to estimate them.
"""

from __future__ import annotations

from itertools import combinations
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from llava_gemma.analysis.statistics import clustered
from llava_gemma.analysis.statistics.intervals import ols_intervals
from llava_gemma.analysis.statistics.terms import Term
from llava_gemma.study.design.alias_matrix import chain_text

MIN_RUN_DF = 2

if TYPE_CHECKING:
    from llava_gemma.study.design import Design


def _centred(outcomes: pd.DataFrame, term: Term) -> np.ndarray:
    return (outcomes[term.factor].astype(str) == term.level).to_numpy(float) - 0.5


def _label(a: Term, b: Term) -> tuple[str, str, str, str]:
    return (f"{a.factor_label} x {b.factor_label}: ({a.level} vs {a.baseline}) x ({b.level} vs {b.baseline})",
            f"{a.factor}:{b.factor}", f"{a.level}:{b.level}", f"{a.baseline}:{b.baseline}")


def interaction_rows(outcomes: pd.DataFrame, kept: list[Term], x_main: np.ndarray, clusters: np.ndarray,
                     runs: np.ndarray, cells: pd.DataFrame, design: Design | None, common: dict) -> list[dict]:
    """effects.csv rows for the two-factor interactions of the two-level factors among ``kept``."""

    two_level = [t for t in kept if sum(u.factor == t.factor for u in kept) == 1]
    pairs = list(combinations(two_level, 2))
    if not pairs:
        return []
    rows, fitted = [], []
    cell_x = np.column_stack([np.ones(len(cells))] + [(cells[t.factor] == t.level).to_numpy(float) for t in kept])
    for a, b in pairs:
        label, factor, level, baseline = _label(a, b)
        base = {**common, "term": label, "factor": factor, "level": level, "baseline": baseline}
        aliases = [x for x in (design.aliased(f"{a.factor}:{b.factor}") if design is not None else ()) if x != "I"]
        column = ((cells[a.factor] == a.level).to_numpy(float) - 0.5) * ((cells[b.factor] == b.level).to_numpy(float)
                                                                         - 0.5)
        trial = np.column_stack([cell_x, column])
        pair = ":".join(sorted((a.factor, b.factor)))
        chain = (design.interaction_chains or {}).get(pair) if design is not None else None
        if aliases:
            rows.append({**base, "note": f"not estimable apart from {', '.join(aliases)} in this design"})
        elif chain and any(t.count(":") <= 1 for _, t in chain):  # carries another 2FI: not an interaction alone
            rows.append({**base, "note": f"not fitted: partially aliased, estimates {chain_text(pair, chain)}"})
        elif np.linalg.matrix_rank(trial) < trial.shape[1]:
            rows.append({**base, "note": "not estimable: the cells do not separate it from the main effects"})
        else:
            fitted.append((a, b, base))
            cell_x = trial
    if not fitted:
        return rows
    x = np.column_stack([x_main] + [_centred(outcomes, a) * _centred(outcomes, b) for a, b, _ in fitted])
    if clustered.run_level_df(x, runs) < MIN_RUN_DF:
        return rows
    fit = ols_intervals(x, outcomes["y"].to_numpy(float), clusters, runs)
    first = x_main.shape[1]
    for i, (_, _, base) in enumerate(fitted, start=first):
        rows.append({**base, "estimate": fit.beta[i], "std_error": fit.se[i], "ci_low": fit.low[i],
                     "ci_high": fit.high[i], "p_value": fit.p[i], "df": fit.df[i], "df_rule": fit.df_rule,
                     "note": f"from the model with {len(fitted)} two-factor interaction(s); main effects from the "
                             "main-effects model"})
    return rows
