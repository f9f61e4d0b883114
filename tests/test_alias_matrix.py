"""The alias matrix of the main-effects model, on designs whose answers are known from the textbooks.

Each design is also checked against the thing the matrix claims: fitting the main-effects model to
cell means generated from a truth with one interaction gives back the main effect plus that
interaction times the matrix's coefficient.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from llava_gemma.analysis.statistics.effects import fit_effects
from llava_gemma.study.design import select_cells
from llava_gemma.study.design.alias_matrix import alias_chains, chain_text

PAPER = {"language_model": ["2b", "7b"], "vision_tower": ["clip", "dinov2"], "connector": ["pretrain", "skip"]}
LETTERS = {"language_model": "A", "vision_tower": "B", "connector": "C"}
# Plackett and Burman (1946), N = 12: the cyclic generator row and a row of minus signs.
PB12_ROW = [1, 1, -1, 1, 1, 1, -1, -1, -1, 1, -1]


def _spell(term: str, letters: dict[str, str]) -> str:
    return "".join(sorted(letters[f] for f in term.split(":")))


def _ofat() -> list[dict[str, str]]:
    base = {f: lv[0] for f, lv in PAPER.items()}
    return [base] + [{**base, f: lv[1]} for f, lv in PAPER.items()]


def _pb12() -> tuple[dict[str, list[str]], list[dict[str, str]]]:
    names = [f"x{j}" for j in range(11)]
    rows = [np.roll(PB12_ROW, i) for i in range(11)] + [-np.ones(11, int)]
    return {n: ["lo", "hi"] for n in names}, [{n: "hi" if r[j] > 0 else "lo" for j, n in enumerate(names)}
                                               for r in rows]


def test_one_factor_at_a_time_carries_whole_chains():
    design = select_cells(PAPER, _ofat())
    text = {f: chain_text(f, c, lambda t: _spell(t, LETTERS)) for f, c in design.alias_chains.items()}
    assert text == {"language_model": "A - AB - AC + ABC", "vision_tower": "B - AB - BC + ABC",
                    "connector": "C - AC - BC + ABC"}
    md = design.to_markdown()
    assert "**Main effects are not estimable clear of two-factor interactions**" in md
    assert "| language_model | A | A - AB - AC + ABC |" in md
    assert "estimated clear of every term" not in md  # what design.md wrongly said before
    assert "cannot be estimated apart from the main effects" in md  # the 2FIs: 4 cells, 4 parameters


def test_half_fraction_resolution_iii_keeps_signs():
    factors = {n: ["lo", "hi"] for n in "abc"}
    plus = select_cells(factors, {"fractional": {"generators": ["C = AB"]}})
    minus = select_cells(factors, {"fractional": {"generators": ["C = -AB"]}})
    assert plus.resolution == 3 and plus.alias_chains == {"a": ((1.0, "b:c"),), "b": ((1.0, "a:c"),),
                                                         "c": ((1.0, "a:b"),)}
    assert minus.alias_chains["c"] == ((-1.0, "a:b"),) and minus.alias_chains["a"] == ((-1.0, "b:c"),)
    assert "| c | C | C - AB |" in minus.to_markdown()
    assert "**Main effects are not estimable clear" in minus.to_markdown()
    # E = -AC keeps its sign in a 2^(5-2), D = AB, E = -AC.
    five = select_cells({n: ["lo", "hi"] for n in "abcde"}, {"fractional": {"generators": ["D = AB", "E = -AC"]}})
    assert (-1.0, "a:c") in five.alias_chains["e"] and (1.0, "a:b") in five.alias_chains["d"]


def test_plackett_burman_12_is_partially_aliased_by_a_third():
    factors, cells = _pb12()
    design = select_cells(factors, cells)
    for f, chain in design.alias_chains.items():
        two = {t: c for c, t in chain if t.count(":") == 1}
        assert len(two) == 45 and all(f not in t.split(":") for t in two)  # every 2FI without f: C(10, 2)
        assert np.allclose(np.abs(list(two.values())), 1 / 3)
    md = design.to_markdown()
    assert "1/3" in md and "**Main effects are not estimable clear of two-factor interactions**" in md
    assert "are clear of each other" not in md.split("## Factors")[0]  # no resolution claim it cannot keep


def test_full_factorial_and_resolution_iv_are_clear_of_two_factor_interactions():
    full = select_cells(PAPER)
    assert all(chain == () for chain in full.alias_chains.values())
    assert "not estimable clear" not in full.to_markdown()
    four = {**PAPER, "projector": ["mlp", "linear"]}
    half = select_cells(four, {"fractional": {"generators": ["D = ABC"]}})
    assert half.alias_chains["language_model"] == ((1.0, "connector:projector:vision_tower"),)
    assert "not estimable clear" not in half.to_markdown()
    assert alias_chains([{"lm": "a"}, {"lm": "b"}, {"lm": "c"}], {"lm": ("a", "b", "c")}) is None


@pytest.mark.parametrize("make", ["ofat", "half", "pb12"])
def test_the_matrix_predicts_what_the_main_effects_model_estimates(make):
    """Plant one two-factor interaction; the fitted main effect moves by the matrix's coefficient times it."""
    if make == "ofat":
        factors, cells = PAPER, _ofat()
    elif make == "half":
        factors = {n: ["lo", "hi"] for n in "abc"}
        cells = list(select_cells(factors, {"fractional": {"generators": ["C = -AB"]}}).cells)
    else:
        factors, cells = _pb12()
    names = list(factors)
    a, b = names[0], names[1]
    truth = {names[2]: 0.3}  # a main effect of the third factor, and an interaction of the first two
    interaction = 0.2  # factorial effect of a:b (twice its -1/+1 coefficient)
    chains = select_cells(factors, cells).alias_chains
    frame = []
    for run, cell in enumerate(cells):
        s = {f: 1 if cell[f] == factors[f][1] else -1 for f in names}
        y = 0.5 + sum(v / 2 * s[f] for f, v in truth.items()) + interaction / 2 * s[a] * s[b]
        frame += [{"run": f"r{run}", **cell, "question": f"q{q}", "y": y} for q in range(3)]
    effects = fit_effects(pd.DataFrame(frame), {f: tuple(v) for f, v in factors.items()}, "sim").set_index("factor")
    for f in names:
        if f not in chains:
            continue
        coef = dict((t, c) for c, t in chains[f]).get(f"{a}:{b}" if a < b else f"{b}:{a}", 0.0)
        assert effects.loc[f, "estimate"] == pytest.approx(truth.get(f, 0.0) + coef * interaction, abs=1e-9)


def test_effect_notes_carry_the_chain():
    design = select_cells(PAPER, _ofat())
    rng = np.random.default_rng(0)
    frame = [{"run": f"r{i}", **cell, "question": f"q{q}", "y": float(rng.integers(0, 2))}
             for i, cell in enumerate(design.cells) for q in range(20)]
    effects = fit_effects(pd.DataFrame(frame), {f: tuple(v) for f, v in PAPER.items()}, "sim", design)
    note = effects.set_index("factor").loc["language_model", "note"]
    assert note.startswith("main effects not estimable clear of two-factor interactions: estimates language_model "
                           "- language_model:vision_tower - connector:language_model + "
                           "connector:language_model:vision_tower")
