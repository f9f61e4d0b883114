"""Regular two-level fractions 2^(k-p): generators, defining relation, aliases, resolution.

Factors get letters A, B, C... in config order (``I`` is skipped: it names the identity). A
level's sign is -1 for a factor's first level (its baseline) and +1 for its second. A generator
``D = ABC`` (or ``D = -ABC``) sets D's sign in each cell to the (signed) product of A's, B's and
C's; the first k-p factors (the base factors) run through their full factorial and the last p
are generated. A word is a set of letters (multiplying two words is their symmetric difference,
since every letter squares to I); the defining relation is every product of generator words, and
a term's aliases are its products with the defining words.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass

from llava_gemma.errors import ConfigError

LETTERS = "ABCDEFGHJKLMNOPQRSTUVWXYZ"  # no "I": it is the identity in a defining relation
KEY = "design.fractional.generators"
_GENERATOR = re.compile(r"^\s*([A-Za-z])\s*=\s*([+-]?)\s*([A-Za-z]*)\s*$")


@dataclass(frozen=True)
class Word:
    """A signed product of factor letters; the empty word is I."""

    letters: frozenset[str]
    sign: int = 1

    def __mul__(self, other: Word) -> Word:
        return Word(self.letters ^ other.letters, self.sign * other.sign)

    def text(self, order: str = LETTERS) -> str:
        body = "".join(sorted(self.letters, key=order.index)) or "I"
        return f"-{body}" if self.sign < 0 else body


@dataclass(frozen=True)
class Generator:
    letter: str  # the generated factor's letter
    word: Word  # what it equals, over base letters

    def text(self) -> str:
        return f"{self.letter} = {self.word.text()}"

    @property
    def defining_word(self) -> Word:
        """``D = ABC`` gives ``I = ABCD``: multiply both sides by D."""
        return self.word * Word(frozenset(self.letter))


def assign_letters(factors: list[str]) -> dict[str, str]:
    if len(factors) > len(LETTERS):
        raise ConfigError(f"the design has {len(factors)} factors but letters run out at {len(LETTERS)}; "
                          "merge or drop factors.")
    return dict(zip(factors, LETTERS))


def parse_generators(generators: list, letters: dict[str, str]) -> list[Generator]:
    """Check each ``X = [-]WORD`` string against the factors; the LAST p factors are the generated ones."""
    if not isinstance(generators, list) or not generators:
        raise ConfigError(f"{KEY} must be a non-empty list such as ['D = ABC']; for every cell use design: full.")
    order = list(letters.values())
    k, p = len(order), len(generators)
    if p >= k:
        raise ConfigError(f"{KEY} has {p} generators for {k} factors; a 2^(k-p) fraction needs fewer generators "
                          "than factors (at least one base factor).")
    base, generated = order[: k - p], order[k - p:]
    parsed: dict[str, Generator] = {}
    for i, text in enumerate(generators):
        key = f"{KEY}[{i}]"
        match = _GENERATOR.match(text) if isinstance(text, str) else None
        if not match:
            raise ConfigError(f"{key} is {text!r}; write it as a letter, '=', and a word of base letters, "
                              f"e.g. '{generated[0]} = {''.join(base)}' or '{generated[0]} = -{''.join(base)}'.")
        lhs, sign, rhs = match.group(1).upper(), match.group(2), match.group(3).upper()
        for letter in lhs + rhs:
            if letter not in order:
                raise ConfigError(f"{key} ({text!r}) uses letter {letter!r}, which names no factor; the factors "
                                  f"are {_legend(letters)}.")
        if lhs in base:
            raise ConfigError(f"{key} ({text!r}) defines base factor {lhs}; with {p} generator(s) only the last "
                              f"{p} factor(s) ({', '.join(generated)}) are generated: define those, or reorder "
                              "the factors.")
        if lhs in rhs:
            raise ConfigError(f"{key} ({text!r}) defines {lhs} in terms of itself; use only base letters "
                              f"({''.join(base)}) on the right.")
        if not rhs:
            raise ConfigError(f"{key} ({text!r}) has no word on the right; give a product of base letters "
                              f"({''.join(base)}).")
        if len(set(rhs)) != len(rhs):
            raise ConfigError(f"{key} ({text!r}) repeats a letter on the right; write each base letter once.")
        if stray := [x for x in rhs if x not in base]:
            raise ConfigError(f"{key} ({text!r}) uses generated factor {stray[0]} on the right; use only base "
                              f"letters ({''.join(base)}).")
        if lhs in parsed:
            raise ConfigError(f"{key} ({text!r}) defines {lhs} a second time; give each of "
                              f"{', '.join(generated)} exactly one generator.")
        parsed[lhs] = Generator(lhs, Word(frozenset(rhs), -1 if sign == "-" else 1))
    return [parsed[g] for g in generated]  # every generated letter is defined: p distinct non-base letters


def _legend(letters: dict[str, str]) -> str:
    return ", ".join(f"{letter} = {factor}" for factor, letter in letters.items())


def defining_relation(generators: list[Generator]) -> list[Word]:
    """Every product of a non-empty subset of the generators' defining words, shortest first."""
    words = []
    gens = [g.defining_word for g in generators]
    for r in range(1, len(gens) + 1):
        for subset in itertools.combinations(gens, r):
            word = subset[0]
            for w in subset[1:]:
                word = word * w
            words.append(word)
    return sorted(words, key=_shortest_first)


def fraction_signs(letters: dict[str, str], generators: list[Generator]) -> list[dict[str, int]]:
    """Each cell as letter -> sign; base factors in itertools.product order (first factor slowest)."""
    order = list(letters.values())
    base = order[: len(order) - len(generators)]
    cells = []
    for signs in itertools.product((-1, 1), repeat=len(base)):
        cell = dict(zip(base, signs))
        for g in generators:
            value = g.word.sign
            for letter in g.word.letters:
                value *= cell[letter]
            cell[g.letter] = value
        cells.append(cell)
    return cells


def word_aliases(term: Word, relation: list[Word], max_order: int = 3) -> list[Word]:
    """The terms (up to ``max_order`` factors) that ``term`` is aliased with under the defining relation."""
    found = [term * w for w in relation]
    return sorted((w for w in found if len(w.letters) <= max_order), key=_shortest_first)


def _shortest_first(word: Word) -> tuple[int, str]:
    return len(word.letters), Word(word.letters).text()


def resolution(relation: list[Word]) -> int:
    return min(len(w.letters) for w in relation)
