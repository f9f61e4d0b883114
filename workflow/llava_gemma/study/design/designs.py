"""Which cells a study trains: the full factorial, a regular 2^(k-p) fraction, or an explicit list.

``select_cells(factors, design)`` takes the config's factors (name -> level names, first level the
baseline) and its ``design`` value, and returns a ``Design``: the chosen cells in a stable order
(the full factorial in ``itertools.product`` order over the factors in config order, first factor
slowest; fractions and explicit lists in the same order, restricted to their cells), with the
aliasing structure and resolution that say which effects the cells can tell apart.

Alias names join factor names, sorted alphabetically, with ":" ("connector:language_model"), so
a term has one spelling whatever the config order; "I" is the mean (a term constant in the cells).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from llava_gemma.errors import ConfigError
from llava_gemma.study.design import alias_matrix, estimable, fractional


@dataclass(frozen=True)
class Design:
    factors: dict[str, tuple[str, ...]]  # factor -> level names, config order; first = baseline
    cells: tuple[dict[str, str], ...]  # factor -> level name, in a stable order
    kind: str  # "full" | "fractional" | "explicit"
    generators: tuple[str, ...] = ()  # e.g. ("D = ABC",)
    defining_relation: tuple[str, ...] = ()  # e.g. ("I = ABCD",)
    letters: dict[str, str] = field(default_factory=dict)  # factor -> letter, config order
    aliases: dict[str, tuple[str, ...]] = field(default_factory=dict)  # main effects and 2FIs -> aliased terms
    resolution: int | None = None  # None: nothing aliased (e.g. the full factorial)
    # Main effect -> (coefficient, term) pairs its estimate also carries (alias_matrix.py); None: not two-level.
    alias_chains: dict[str, tuple[tuple[float, str], ...]] | None = None
    # Two-factor interaction beside the main effects -> what it carries; None: not separable from them.
    interaction_chains: dict[str, tuple[tuple[float, str], ...] | None] | None = None

    def to_markdown(self) -> str:
        from llava_gemma.study.design.markdown import design_markdown

        return design_markdown(self)

    def aliased(self, term: str) -> tuple[str, ...]:
        """What ``term`` (factor names in any order, joined by ":") is aliased with; () if nothing."""
        return self.aliases.get(term_name(term.split(":")), ())


def term_name(factors: list[str] | tuple[str, ...]) -> str:
    return ":".join(sorted(factors)) if factors else "I"


def select_cells(factors: dict[str, list[str]], design: str | dict | list = "full") -> Design:
    """The cells ``design`` picks from the factorial of ``factors``; see the module docstring."""
    levels = _check_factors(factors)
    letters = fractional.assign_letters(list(levels))
    if design is None or design == "full":
        cells = [dict(zip(levels, combo)) for combo in itertools.product(*levels.values())]
        two_level = all(len(lv) == 2 for lv in levels.values())
        return Design(levels, tuple(cells), "full", letters=letters,
                      aliases={term_name(t): () for t in estimable.terms_up_to(list(levels), 2)},
                      alias_chains={f: () for f in levels} if two_level else None,
                      interaction_chains={term_name(t): () for t in itertools.combinations(levels, 2)}
                      if two_level else None)
    if isinstance(design, dict) and set(design) == {"fractional"}:
        return _fraction(levels, letters, design["fractional"])
    if isinstance(design, list):
        return _explicit(levels, letters, design)
    raise ConfigError(f"design is {design!r}; use 'full', {{fractional: {{generators: ['D = ABC']}}}}, "
                      "or a list of cells naming a level of every factor.")


def _check_factors(factors: dict[str, list[str]]) -> dict[str, tuple[str, ...]]:
    if not factors:
        raise ConfigError("the design has no factors; list at least one factor with its levels.")
    out = {}
    for name, levels in factors.items():
        levels = tuple(str(x) for x in levels)
        if not levels:
            raise ConfigError(f"factor {name!r} has no levels; give it at least one.")
        if len(set(levels)) != len(levels):
            raise ConfigError(f"factor {name!r} lists a level twice ({list(levels)}); name each level once.")
        out[str(name)] = levels
    return out


def _fraction(levels: dict[str, tuple[str, ...]], letters: dict[str, str], spec: object) -> Design:
    if not isinstance(spec, dict) or set(spec) != {"generators"}:
        raise ConfigError(f"design.fractional is {spec!r}; give it one key, generators, e.g. "
                          "{generators: ['D = ABC']}.")
    for name, lv in levels.items():
        if len(lv) != 2:
            raise ConfigError(f"design.fractional needs every factor to have exactly 2 levels, but {name!r} has "
                              f"{len(lv)} ({', '.join(lv)}); give it two levels, or use design: full or an "
                              "explicit list of cells.")
    generators = fractional.parse_generators(spec["generators"], letters)
    relation = fractional.defining_relation(generators)
    by_letter = {letter: name for name, letter in letters.items()}
    cells = [{by_letter[x]: levels[by_letter[x]][(s + 1) // 2] for x, s in signs.items()}
             for signs in fractional.fraction_signs(letters, generators)]
    cells = [{name: c[name] for name in levels} for c in cells]  # config order within each cell
    _reject_repeats(cells, fractional.KEY)
    aliases = {}
    for term in estimable.terms_up_to(list(levels), 2):
        word = fractional.Word(frozenset(letters[f] for f in term))
        found = fractional.word_aliases(word, relation)
        aliases[term_name(term)] = tuple(term_name([by_letter[x] for x in w.letters]) for w in found)
    return Design(levels, tuple(cells), "fractional", generators=tuple(g.text() for g in generators),
                  defining_relation=tuple(f"I = {w.text()}" for w in relation), letters=letters,
                  aliases=aliases, resolution=fractional.resolution(relation),
                  alias_chains=alias_matrix.alias_chains(cells, levels),
                  interaction_chains=alias_matrix.interaction_chains(cells, levels))


def _reject_repeats(cells: list[dict[str, str]], key: str) -> None:
    seen: dict[tuple, int] = {}
    for i, cell in enumerate(cells):
        combo = tuple(cell.values())
        if combo in seen:
            raise ConfigError(f"{key} gives cell {cell} twice (entries {seen[combo]} and {i}); list each cell once "
                              "(use replicates: N to train a cell more than once).")
        seen[combo] = i


def _explicit(levels: dict[str, tuple[str, ...]], letters: dict[str, str], entries: list) -> Design:
    if not entries:
        raise ConfigError("design is an empty list of cells; list at least one cell, or use design: full.")
    cells = []
    for i, entry in enumerate(entries):
        key = f"design[{i}]"
        if not isinstance(entry, dict):
            raise ConfigError(f"{key} is {entry!r}; write each cell as a mapping factor: level.")
        if unknown := [k for k in entry if k not in levels]:
            raise ConfigError(f"{key} names {unknown[0]!r}, which is not a factor; the factors are "
                              f"{', '.join(levels)}.")
        for name, lv in levels.items():
            if name not in entry:
                raise ConfigError(f"{key} does not name factor {name!r}; add {name}: one of {', '.join(lv)}.")
            if str(entry[name]) not in lv:
                raise ConfigError(f"{key}.{name} is {entry[name]!r}, which is not a level of {name!r}; use one of "
                                  f"{', '.join(lv)}.")
        cells.append({name: str(entry[name]) for name in levels})
    _reject_repeats(cells, "design")
    cells.sort(key=lambda c: tuple(levels[f].index(c[f]) for f in levels))  # full-factorial order
    found = estimable.numeric_aliases(cells, levels)
    words = estimable.constant_words(cells, levels)
    relation = () if words is None else tuple(
        f"I = {'-' if sign < 0 else ''}{''.join(letters[f] for f in term)}"
        for term, sign in sorted(words, key=lambda w: (len(w[0]), [letters[f] for f in w[0]])))
    aliases = {term_name(t): tuple(term_name(u) for u in us) for t, us in found.items()}
    return Design(levels, tuple(cells), "explicit", defining_relation=relation, letters=letters,
                  aliases=aliases, resolution=estimable.numeric_resolution(found, words),
                  alias_chains=alias_matrix.alias_chains(cells, levels),
                  interaction_chains=alias_matrix.interaction_chains(cells, levels))
