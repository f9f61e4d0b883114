"""Which factor effects a list of cells can tell apart, computed from the cells' model matrix.

Each factor's levels are coded by Helmert contrasts (with two levels: -1 for the baseline, +1 for
the other), and an interaction's columns are the products of its factors' contrast columns, as in
a full factorial where every term is orthogonal to every other. On the chosen cells, two terms T
and U are aliased when some contrast of T equals some contrast of U up to a constant: their
column spaces, centred over the cells, intersect (dim T + dim U - dim [T U] > 0). A term whose
centred columns lose rank (a factor that takes one level in the cells, or two levels that never
appear apart) is aliased with the mean, written I. For a regular two-level fraction this is
exactly the algebra of fractional.py; for other cell lists it also reports partial aliasing of
multi-level factors (one contrast of the term is not separately estimable).
"""

from __future__ import annotations

import itertools

import numpy as np

TOL = 1e-9


def helmert(n_levels: int) -> np.ndarray:
    """(n_levels, n_levels-1) contrasts; column j compares level j+1 with the levels before it."""
    out = np.zeros((n_levels, n_levels - 1))
    for j in range(1, n_levels):
        out[:j, j - 1] = -1.0
        out[j, j - 1] = float(j)
    return out


def term_columns(cells: list[dict[str, str]], factors: dict[str, tuple[str, ...]], term: tuple[str, ...]) -> np.ndarray:
    """The term's contrast columns on the cells: products of one contrast column per factor."""
    per_factor = []
    for f in term:
        codes = helmert(len(factors[f]))
        per_factor.append(np.array([codes[factors[f].index(c[f])] for c in cells]))
    columns = [np.prod([m[:, j] for m, j in zip(per_factor, combo)], axis=0)
               for combo in itertools.product(*(range(m.shape[1]) for m in per_factor))]
    return np.column_stack(columns) if columns else np.zeros((len(cells), 0))


def _rank(m: np.ndarray) -> int:
    return int(np.linalg.matrix_rank(m, tol=TOL * max(1.0, float(np.abs(m).max(initial=0.0))) * max(m.shape)))


def centred(m: np.ndarray) -> np.ndarray:
    return m - m.mean(axis=0, keepdims=True)


def terms_up_to(factors: list[str], order: int) -> list[tuple[str, ...]]:
    return [t for r in range(1, min(order, len(factors)) + 1) for t in itertools.combinations(factors, r)]


def numeric_aliases(cells: list[dict[str, str]], factors: dict[str, tuple[str, ...]],
                    max_order: int = 3) -> dict[tuple[str, ...], list[tuple[str, ...]]]:
    """Every main effect and two-factor interaction -> the terms (up to ``max_order`` factors, or () for I)
    that it is aliased with on these cells."""
    names = list(factors)
    candidates = terms_up_to(names, max_order)
    cols = {t: centred(term_columns(cells, factors, t)) for t in candidates}
    ranks = {t: _rank(m) for t, m in cols.items()}
    out: dict[tuple[str, ...], list[tuple[str, ...]]] = {}
    for term in terms_up_to(names, 2):
        found: list[tuple[str, ...]] = []
        if ranks[term] < cols[term].shape[1]:
            found.append(())  # some contrast of the term is constant over the cells: aliased with the mean
        for other in candidates:
            if other == term or ranks[term] == 0 or ranks[other] == 0:
                continue
            if ranks[term] + ranks[other] - _rank(np.hstack([cols[term], cols[other]])) > 0:
                found.append(other)
        out[term] = found
    return out


def constant_words(cells: list[dict[str, str]], factors: dict[str, tuple[str, ...]],
                   max_factors: int = 12) -> list[tuple[tuple[str, ...], int]] | None:
    """For two-level factors only: every product of factors whose sign is the same in all cells (I = ±word).

    None when a factor has more than two levels (no defining relation) or there are too many factors
    to enumerate all 2^k words quickly.
    """
    names = list(factors)
    if any(len(levels) != 2 for levels in factors.values()) or len(names) > max_factors:
        return None
    signs = {f: np.array([1 if c[f] == factors[f][1] else -1 for c in cells]) for f in names}
    words = []
    for r in range(1, len(names) + 1):
        for term in itertools.combinations(names, r):
            product = np.prod([signs[f] for f in term], axis=0)
            if np.all(product == product[0]):
                words.append((term, int(product[0])))
    return words


def numeric_resolution(aliases: dict[tuple[str, ...], list[tuple[str, ...]]],
                       words: list[tuple[tuple[str, ...], int]] | None) -> int | None:
    """The shortest defining word if the relation is known, else the smallest order sum of two aliased
    terms seen (the mean counts as order 0); None when nothing is aliased."""
    if words is not None:
        return min((len(t) for t, _ in words), default=None)
    sums = [len(t) + len(u) for t, found in aliases.items() for u in found]
    return min(sums, default=None)
