"""The alias matrix of the main-effects model: what each main-effect estimate really carries.

Exact column coincidence (estimable.py, fractional.py) misses partial aliasing: for the usual ML
ablation, a baseline plus one change per factor, no interaction column equals a main-effect column,
yet A's estimate is A - AB - AC + ABC. The alias matrix says it. With two-level factors coded -1
(baseline) and +1, the report fits the main-effects model X1 (intercept and main effects) to runs
whose truth may hold any interaction X2; least squares then estimates

    E[b1] = b1 + (X1'X1)^-1 X1'X2 b2,

so row A of the alias matrix (X1'X1)^-1 X1'X2 gives, with their signs, the multiples of each
interaction that A's estimate also carries. The factorial effect of a term (twice its +-1
coefficient, which is what effects.csv reports for a main effect: second level minus baseline)
obeys the same relation. Regular fractions give +-1 entries (``D = -ABC``: D's estimate is D - ABC),
Plackett-Burman designs +-1/3, a one-factor-at-a-time list whole chains. Every interaction order is
included up to ``FULL_ORDER_MAX`` factors (then up to three-factor interactions). A main effect that
the earlier ones already determine (fit_effects leaves it out as confounded) becomes a column of X2,
so the kept estimates show it too. Two-level factors only: a factor with more levels has no single
sign coding, and estimable.py's partial-aliasing check covers it.
"""

from __future__ import annotations

import itertools
from fractions import Fraction

import numpy as np

FULL_ORDER_MAX = 12  # 2^12 interaction columns at most: every order for up to 12 factors
TOL = 1e-9

Chain = tuple[tuple[float, str], ...]  # (coefficient, term) pairs, term = factor names joined by ":"


def _term(factors: tuple[str, ...]) -> str:
    return ":".join(sorted(factors))


def _signs(cells: list[dict[str, str]], factors: dict[str, tuple[str, ...]]) -> dict[str, np.ndarray]:
    return {f: np.array([1.0 if c[f] == levels[1] else -1.0 for c in cells]) for f, levels in factors.items()}


def alias_chains(cells: list[dict[str, str]], factors: dict[str, tuple[str, ...]]) -> dict[str, Chain] | None:
    """Each identified main effect -> the other terms its estimate carries, as (coefficient, term), largest
    order last. ``cells`` may repeat a cell (one row per run: replicates weight it). None when some factor
    has other than two levels; a main effect confounded with earlier ones has no entry."""
    if not cells or any(len(levels) != 2 for levels in factors.values()):
        return None
    return _chains(cells, factors, [(f,) for f in factors])[0]


def interaction_chains(cells: list[dict[str, str]],
                       factors: dict[str, tuple[str, ...]]) -> dict[str, Chain | None] | None:
    """Each two-factor interaction, fitted alone beside the main effects -> what its estimate carries;
    None for one the cells cannot separate from the main effects (and the mean)."""
    if not cells or any(len(levels) != 2 for levels in factors.values()):
        return None
    mains = [(f,) for f in factors]
    columns = _all_columns(cells, factors)
    x_main = np.column_stack([np.ones(len(cells))] + [columns[m] for m in mains])
    rank = np.linalg.matrix_rank(x_main, tol=TOL * len(cells))
    out: dict[str, Chain | None] = {}
    for pair in itertools.combinations(factors, 2):
        if np.linalg.matrix_rank(np.column_stack([x_main, columns[pair]]), tol=TOL * len(cells)) == rank:
            out[_term(pair)] = None  # the main effects (and the mean) already determine its column
            continue
        chains, _ = _chains(cells, factors, [*mains, pair], columns)
        out[_term(pair)] = chains[_term(pair)]
    return out


def _all_columns(cells: list[dict[str, str]], factors: dict[str, tuple[str, ...]]) -> dict[tuple[str, ...], np.ndarray]:
    """Every term's -1/+1 column (every order up to FULL_ORDER_MAX factors, else up to three)."""
    names = list(factors)
    signs = _signs(cells, factors)
    order = len(names) if len(names) <= FULL_ORDER_MAX else 3
    return {t: np.prod([signs[f] for f in t], axis=0) for r in range(1, order + 1)
            for t in itertools.combinations(names, r)}


def _chains(cells: list[dict[str, str]], factors: dict[str, tuple[str, ...]], fitted: list[tuple[str, ...]],
            columns: dict[tuple[str, ...], np.ndarray] | None = None,
            ) -> tuple[dict[str, Chain], list[tuple[str, ...]]]:
    """Alias rows of the model with ``fitted`` terms (kept in order while they add rank), and the dropped ones."""
    columns = columns if columns is not None else _all_columns(cells, factors)
    kept, dropped = [], []
    x1 = np.ones((len(cells), 1))
    for t in fitted:  # in order, as fit_effects keeps terms
        trial = np.column_stack([x1, columns[t]])
        if np.linalg.matrix_rank(trial, tol=TOL * len(cells)) == trial.shape[1]:
            kept.append(t)
            x1 = trial
        else:
            dropped.append(t)
    chosen = set(fitted)
    others = dropped + [t for t in columns if t not in chosen]
    if not others:
        return {_term(t): () for t in kept}, dropped
    x2 = np.column_stack([columns[t] for t in others])
    matrix = np.linalg.lstsq(x1, x2, rcond=None)[0][1:]  # drop the intercept's row
    out = {_term(t): tuple((round(float(c), 12), _term(u)) for c, u in zip(row, others) if abs(c) > TOL)
           for t, row in zip(kept, matrix)}
    return out, dropped


def carries_two_factor(chains: dict[str, Chain] | None) -> bool:
    """Whether some main-effect estimate carries a two-factor interaction (or another main effect)."""
    return any(term.count(":") <= 1 for chain in (chains or {}).values() for _, term in chain)


def coefficient_text(c: float) -> str:
    """1 -> '', 0.3333 -> '1/3', 0.25 -> '1/4', 0.4142 -> '0.414'."""
    frac = Fraction(abs(c)).limit_denominator(64)
    if abs(float(frac) - abs(c)) > 1e-6:
        return f"{abs(c):.3g} "
    return "" if frac == 1 else f"{frac} "


def chain_text(head: str, chain: Chain, spell=lambda term: term, max_terms: int = 24) -> str:
    """``A - AB - AC + ABC`` (with ``spell`` turning a term into letters or names). Beyond ``max_terms``
    terms, those of three or more factors are counted instead of listed."""
    shown = list(chain)
    tail = ""
    if len(shown) > max_terms:
        rest = [(c, t) for c, t in shown if t.count(":") >= 2]
        shown = [(c, t) for c, t in shown if t.count(":") < 2]
        if rest:
            top = coefficient_text(max(abs(c) for c, _ in rest)).strip() or "1"
            tail = f" + {len(rest)} terms of three or more factors (coefficients up to ±{top})"
    body = "".join(f" {'-' if c < 0 else '+'} {coefficient_text(c)}{spell(t)}" for c, t in shown)
    return f"{spell(head)}{body}{tail}"
