"""The design generator: which cells a design picks, their aliasing and resolution, and its errors."""

from __future__ import annotations

import itertools

import pytest
from llava_gemma.errors import ConfigError
from llava_gemma.study.design import select_cells

PAPER = {"language_model": ["2b", "7b"], "vision_tower": ["clip", "dinov2"], "connector": ["pretrain", "skip"]}
FOUR = {**PAPER, "connector_arch": ["linear", "mlp2x_gelu"]}
FIVE = {name: ["lo", "hi"] for name in ("a", "b", "c", "d", "e")}
HALF = {"fractional": {"generators": ["D = ABC"]}}


def _sign(design, cell: dict, factor: str) -> int:
    return 1 if cell[factor] == design.factors[factor][1] else -1


def test_full_design_is_todays_product_order():
    design = select_cells(PAPER, "full")
    assert [tuple(c.values()) for c in design.cells] == list(itertools.product(*PAPER.values()))
    assert design.kind == "full" and design.resolution is None and design.defining_relation == ()
    assert design.letters == {"language_model": "A", "vision_tower": "B", "connector": "C"}
    assert set(design.aliases) == {"language_model", "vision_tower", "connector", "language_model:vision_tower",
                                   "connector:language_model", "connector:vision_tower"}
    assert all(v == () for v in design.aliases.values())
    assert select_cells(PAPER) == design  # "full" is the default
    three_levels = select_cells({"lm": ["2b", "7b", "9b"], "tower": ["clip"]}, "full")
    assert [c["lm"] for c in three_levels.cells] == ["2b", "7b", "9b"]
    assert "Full factorial" in design.to_markdown() and "| 8 | 7b | dinov2 | skip |" in design.to_markdown()


def test_half_fraction_d_equals_abc_is_resolution_iv():
    design = select_cells(FOUR, HALF)
    assert design.kind == "fractional" and len(design.cells) == 8 and design.resolution == 4
    assert design.generators == ("D = ABC",) and design.defining_relation == ("I = ABCD",)
    for cell in design.cells:  # the generator holds in every cell, and the base factors run through 2^3
        assert _sign(design, cell, "connector_arch") == (_sign(design, cell, "language_model")
                                                         * _sign(design, cell, "vision_tower")
                                                         * _sign(design, cell, "connector"))
    assert {tuple(c[f] for f in PAPER) for c in design.cells} == set(itertools.product(*PAPER.values()))
    # Same order as the full factorial restricted to these cells.
    full = [c for c in select_cells(FOUR).cells if c in design.cells]
    assert list(design.cells) == full
    # Each main effect is aliased with exactly one three-factor interaction, 2FIs pairwise (AB = CD, ...).
    assert design.aliases["connector"] == ("connector_arch:language_model:vision_tower",)
    assert design.aliases["language_model"] == ("connector:connector_arch:vision_tower",)
    assert design.aliases["language_model:vision_tower"] == ("connector:connector_arch",)
    assert design.aliases["connector:language_model"] == ("connector_arch:vision_tower",)
    assert design.aliased("vision_tower:language_model") == ("connector:connector_arch",)
    mains = [f for f in FOUR]
    assert all(len(design.aliases[f]) == 1 and design.aliases[f][0].count(":") == 2 for f in mains)
    md = design.to_markdown()
    assert "Resolution IV" in md and "`I = ABCD`" in md and "`D = ABC`" in md
    assert ("The connector effect cannot be told from the 3-way interaction of connector_arch, language_model "
            "and vision_tower.") in md


def test_signed_generator_picks_the_other_half():
    plus, minus = select_cells(FOUR, HALF), select_cells(FOUR, {"fractional": {"generators": ["D = -ABC"]}})
    assert minus.defining_relation == ("I = -ABCD",) and minus.resolution == 4
    assert not set(map(lambda c: tuple(c.values()), plus.cells)) & set(map(lambda c: tuple(c.values()), minus.cells))
    assert minus.aliases == plus.aliases


def test_quarter_fraction_of_five_factors_is_resolution_iii():
    design = select_cells(FIVE, {"fractional": {"generators": ["D = AB", "E = AC"]}})
    assert len(design.cells) == 8 and design.resolution == 3
    assert design.defining_relation == ("I = ABD", "I = ACE", "I = BCDE")
    assert design.aliases["a"] == ("b:d", "c:e")  # main effects aliased with two-factor interactions
    assert design.aliases["d"] == ("a:b", "b:c:e")
    assert design.aliases["b:c"] == ("d:e", "a:b:e", "a:c:d")
    assert "Resolution III" in design.to_markdown()


def test_explicit_list_of_a_fraction_matches_the_algebra():
    half = select_cells(FOUR, HALF)
    listed = select_cells(FOUR, list(reversed(half.cells)))
    assert listed.kind == "explicit" and listed.cells == half.cells  # stored in full-factorial order
    assert listed.aliases == half.aliases and listed.resolution == 4
    assert listed.defining_relation == ("I = ABCD",)
    quarter = select_cells(FIVE, {"fractional": {"generators": ["D = AB", "E = -AC"]}})
    again = select_cells(FIVE, [dict(c) for c in quarter.cells])
    assert again.aliases == quarter.aliases and again.defining_relation == quarter.defining_relation
    every = select_cells(PAPER, [dict(c) for c in select_cells(PAPER).cells])
    assert every.resolution is None and all(v == () for v in every.aliases.values())


def test_explicit_confounded_list_names_what_cannot_be_told_apart():
    diagonal = [{"language_model": "2b", "vision_tower": "clip", "connector": "pretrain"},
                {"language_model": "7b", "vision_tower": "dinov2", "connector": "pretrain"}]
    design = select_cells(PAPER, diagonal)
    # They only change together (and connector never changes, so A = B = AC = BC).
    assert design.aliases["language_model"] == ("vision_tower", "connector:language_model", "connector:vision_tower")
    assert design.aliases["connector"][0] == "I"  # connector never changes: aliased with the mean
    assert design.resolution == 1
    assert "I = -C" in design.defining_relation and "I = AB" in design.defining_relation
    md = design.to_markdown()
    assert "The language_model effect cannot be told from the vision_tower effect" in md
    assert "The connector effect cannot be estimated" in md


def test_explicit_list_with_three_levels_reports_partial_aliasing():
    factors = {"lm": ["2b", "7b", "9b"], "tower": ["clip", "dinov2"]}
    # dinov2 is only ever seen with 9b: the lm contrast "9b against the others" is the tower contrast.
    cells = [{"lm": "2b", "tower": "clip"}, {"lm": "7b", "tower": "clip"}, {"lm": "9b", "tower": "dinov2"}]
    design = select_cells(factors, cells)
    assert design.aliases["lm"][0] == "tower" and design.aliases["tower"][0] == "lm"
    assert design.resolution == 2
    # One more cell separates them (a saturated main-effects design). Centred over 4 cells, lm (2 columns)
    # and lm:tower (2 columns) live in 3 dimensions, so one lm contrast is an interaction contrast;
    # tower (1 column) stays clear.
    saturated = select_cells(factors, [*cells, {"lm": "7b", "tower": "dinov2"}])
    assert saturated.aliases["lm"] == ("lm:tower",) and saturated.aliases["tower"] == ()
    assert design.defining_relation == ()  # no defining relation for a three-level factor
    assert select_cells(factors, [dict(zip(factors, c)) for c in itertools.product(*factors.values())]) \
        .aliases["lm"] == ()


@pytest.mark.parametrize(("factors", "design", "message"), [
    (FOUR, {"fractional": {"generators": ["D = ABX"]}}, "design.fractional.generators[0] ('D = ABX') uses letter 'X'"),
    (FOUR, {"fractional": {"generators": ["A = BCD"]}}, "defines base factor A"),
    (FOUR, {"fractional": {"generators": ["D = D"]}}, "defines D in terms of itself"),
    (FOUR, {"fractional": {"generators": ["D = ABD"]}}, "defines D in terms of itself"),
    (FOUR, {"fractional": {"generators": ["D ABC"]}}, "write it as a letter, '=', and a word"),
    (FOUR, {"fractional": {"generators": ["D = AAB"]}}, "repeats a letter"),
    (FOUR, {"fractional": {"generators": ["D = "]}}, "has no word on the right"),
    (FIVE, {"fractional": {"generators": ["D = AB", "D = AC"]}}, "generators[1] ('D = AC') defines D a second"),
    (FIVE, {"fractional": {"generators": ["D = AB", "E = AD"]}}, "uses generated factor D on the right"),
    (FOUR, {"fractional": {"generators": []}}, "must be a non-empty list"),
    (FOUR, {"fractional": {"generator": ["D = ABC"]}}, "give it one key, generators"),
    ({"a": ["x", "y"], "b": ["x", "y"]}, {"fractional": {"generators": ["A = B", "B = A"]}}, "fewer generators"),
    ({**PAPER, "d": ["p", "q", "r"]}, HALF, "but 'd' has 3 (p, q, r)"),
    (PAPER, "half", "design is 'half'"),
    (PAPER, [], "empty list of cells"),
    (PAPER, [{"language_model": "2b", "vision_tower": "clip"}], "design[0] does not name factor 'connector'"),
    (PAPER, [{"language_model": "9b", "vision_tower": "clip", "connector": "skip"}],
     "design[0].language_model is '9b', which is not a level"),
    (PAPER, [{"language_model": "2b", "vision_tower": "clip", "connector": "skip", "lr": 1}],
     "design[0] names 'lr', which is not a factor"),
    (PAPER, [{"language_model": "2b", "vision_tower": "clip", "connector": "skip"}] * 2,
     "gives cell {'language_model': '2b', 'vision_tower': 'clip', 'connector': 'skip'} twice (entries 0 and 1)"),
    (PAPER, ["2b_clip_skip"], "write each cell as a mapping"),
    ({}, "full", "no factors"),
    ({"a": ["x", "x"]}, "full", "lists a level twice"),
])
def test_bad_designs_raise_one_sentence(factors, design, message):
    with pytest.raises(ConfigError) as err:
        select_cells(factors, design)
    text = str(err.value)
    assert message in text, text
    assert text.endswith(".") and text.count("\n") == 0
