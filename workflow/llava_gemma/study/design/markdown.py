"""``results/report/design.md``: the chosen cells and what they can and cannot tell apart, in plain words."""

from __future__ import annotations

from typing import Protocol

from llava_gemma.study.design import alias_matrix


class Design(Protocol):
    """What the page reads of a ``designs.Design`` (named here, not imported: designs imports this module)."""

    factors: dict[str, tuple[str, ...]]
    cells: tuple[dict[str, str], ...]
    kind: str
    generators: tuple[str, ...]
    defining_relation: tuple[str, ...]
    letters: dict[str, str]
    aliases: dict[str, tuple[str, ...]]
    resolution: int | None
    alias_chains: dict[str, tuple[tuple[float, str], ...]] | None
    interaction_chains: dict[str, tuple[tuple[float, str], ...] | None] | None

ROMAN = {1: "I", 2: "II", 3: "III", 4: "IV", 5: "V", 6: "VI", 7: "VII", 8: "VIII"}
MEANING = {
    1: "a main effect is aliased with the mean: some factor never changes in these cells",
    2: "some main effects are aliased with each other",
    3: "no two main effects are aliased, but main effects are aliased with two-factor interactions",
    4: "main effects are clear of each other and of two-factor interactions (aliased with three-factor "
       "interactions or higher); two-factor interactions are aliased with each other",
}


def roman(n: int) -> str:
    return ROMAN.get(n, str(n))


def _letters(design: Design, term: str) -> str:
    if term == "I":
        return "I"
    order = list(design.letters.values())
    return "".join(sorted((design.letters[f] for f in term.split(":")), key=order.index))


def _describe(term: str) -> str:
    parts = term.split(":")
    if term == "I":
        return "the mean"
    if len(parts) == 1:
        return f"the {parts[0]} effect"
    joined = ", ".join(parts[:-1]) + f" and {parts[-1]}"
    return f"the {len(parts)}-way interaction of {joined}"


def _plain(term: str, aliases: tuple[str, ...], design: Design) -> str:
    subject = _describe(term)
    subject = subject[0].upper() + subject[1:]
    mains, pairs = design.alias_chains or {}, design.interaction_chains or {}
    if not aliases and term in mains and mains[term]:
        return f"{subject} is partially aliased: its estimate also carries the terms its alias-matrix row lists."
    if not aliases and term in pairs and pairs[term] is None:
        return f"{subject} cannot be estimated apart from the main effects in these cells."
    if not aliases and pairs.get(term):
        chain = alias_matrix.chain_text(term, pairs[term], lambda t: _letters(design, t))
        return f"{subject} is partially aliased: fitted beside the main effects, its estimate is {chain}."
    if not aliases:
        return f"{subject} is estimated clear of every term up to three factors."
    if "I" in aliases:
        return f"{subject} cannot be estimated (fully or in part): it does not vary apart from the mean in these cells."
    return f"{subject} cannot be told from {'; '.join(_describe(a) for a in aliases)}."


def _summary(design: Design) -> list[str]:
    n_full = 1
    for levels in design.factors.values():
        n_full *= len(levels)
    k, n = len(design.factors), len(design.cells)
    if design.kind == "full":
        return [f"**Full factorial**: all {n} cells of {k} factors. Every main effect and interaction can be "
                "estimated separately (resolution: full)."]
    if design.kind == "fractional":
        p = len(design.generators)
        head = f"**Regular fraction 2^({k}-{p})**: {n} of {n_full} cells."
    else:
        head = f"**Explicit list of cells**: {n} of {n_full} possible cells."
    if design.resolution is None:
        return [head, "No main effect or two-factor interaction is completely aliased with another term "
                "(resolution: not defined for these cells)."]
    if design.resolution > 3 and alias_matrix.carries_two_factor(design.alias_chains):
        return [head, f"Resolution {roman(design.resolution)} counts complete aliasing only (the shortest word of "
                "the defining relation); these cells also alias terms in part (a non-regular design, below)."]
    meaning = MEANING.get(design.resolution, "main effects and two-factor interactions are clear of each other")
    return [head, f"Resolution {roman(design.resolution)}: {meaning}."]


def _partial(design: Design) -> list[str]:
    """The one sentence a reader must not miss, when main effects carry two-factor interactions."""
    if not alias_matrix.carries_two_factor(design.alias_chains):
        return []
    return ["", "**Main effects are not estimable clear of two-factor interactions**: each main-effect estimate "
            "also carries the interactions its row of the alias matrix below lists, with those signs and weights."]


def _matrix_section(design: Design) -> list[str]:
    chains = design.alias_chains
    if chains is None:
        return ["", "## Alias matrix", "", "Not computed: a factor has more than two levels (the Aliases table above "
                "reports partial aliasing of its contrasts)."]
    out = ["", "## Alias matrix of the main-effects model", "",
           "What each main-effect estimate carries when the truth holds interactions of any order (each term a "
           "factorial effect: its second level minus its baseline, -1/+1 coding; (X1'X1)^-1 X1'X2 over the runs). "
           "A main effect confounded with earlier ones is not estimated and appears in the others' rows.", ""]
    rows = [[f, _letters(design, f), alias_matrix.chain_text(f, chain, lambda t: _letters(design, t))]
            for f, chain in chains.items()]
    return out + _table(["main effect", "letter", "its estimate"], rows)


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(r) + " |" for r in rows]


def design_markdown(design: Design) -> str:
    out = ["# Design", "", *_summary(design), *_partial(design), "", "## Factors", ""]
    out += _table(["letter", "factor", "levels (first is the baseline)"],
                  [[design.letters[f], f, ", ".join(lv)] for f, lv in design.factors.items()])
    if design.generators:
        out += ["", "## Generators", ""]
        by_letter = {letter: factor for factor, letter in design.letters.items()}
        for g in design.generators:
            lhs, rhs = (side.strip() for side in g.split("="))
            names = ", ".join(by_letter[x] for x in rhs.lstrip("-"))
            flip = " times -1" if rhs.startswith("-") else ""
            out.append(f"- `{g}`: {by_letter[lhs]} is not varied on its own; its sign in each cell is the product "
                       f"of the signs of {names}{flip} (-1 is a factor's first level, +1 its second).")
    if design.defining_relation:
        out += ["", "## Defining relation", "", "`" + ", ".join(design.defining_relation) + "`"]
    out += ["", f"## Cells ({len(design.cells)})", ""]
    out += _table(["#", *design.factors], [[str(i), *c.values()] for i, c in enumerate(design.cells, 1)])
    out += ["", "## Aliases", "",
            "Each main effect and two-factor interaction, with the terms (up to three factors) it is completely "
            "aliased with in these cells (an estimate of the term also carries theirs); partial aliasing of main "
            "effects is in the alias matrix below.", ""]
    rows = [[term, _letters(design, term), ", ".join(f"{a} ({_letters(design, a)})" for a in aliases) or "none",
             _plain(term, aliases, design)] for term, aliases in design.aliases.items()]
    out += _table(["term", "letters", "aliased with", "meaning"], rows)
    out += _matrix_section(design)
    return "\n".join(out) + "\n"
