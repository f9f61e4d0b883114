"""The config's ``design`` turned into the cells that train: the design module's ``select_cells``
(full, fractional or explicit designs with their aliasing), reached through one function."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path

from llava_gemma.errors import UserError


@dataclass(frozen=True)
class FullFactorial:
    """Every combination of levels; stands in until the design module is merged."""

    factors: dict[str, tuple[str, ...]]
    cells: tuple[dict[str, str], ...]
    kind: str = "full"
    generators: tuple[str, ...] = ()
    defining_relation: tuple[str, ...] = ()
    letters: dict[str, str] = field(default_factory=dict)
    aliases: dict[str, tuple[str, ...]] = field(default_factory=dict)
    resolution: int | None = None

    def to_markdown(self) -> str:
        names = list(self.factors)
        lines = [f"Design: full factorial, {len(self.cells)} cells.", "",
                 "| cell | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
        lines += ["| " + "_".join(c[n] for n in names) + " | " + " | ".join(c[n] for n in names) + " |"
                  for c in self.cells]
        return "\n".join(lines) + "\n"


def choose_design(factors: dict[str, list[str]], design: str | dict | list = "full"):
    """The design's cells (one level per factor each), with ``to_markdown()`` for results/report/design.md."""
    try:
        from llava_gemma.design.designs import select_cells
    except ImportError:
        if design != "full":
            raise UserError("design: only `full` is available in this version; remove the design key.") from None
        cells = tuple(dict(zip(factors, combo)) for combo in itertools.product(*factors.values()))
        return FullFactorial({k: tuple(v) for k, v in factors.items()}, cells)
    return select_cells(factors, design)


def write_design(settings: dict, out: Path) -> dict:
    """results/report/design.md: the design's table and aliasing, and the runs its replicates make."""
    design = choose_design(settings["factors"], settings.get("design", "full"))
    replicates = settings.get("replicates", 1)
    runs = settings.get("runs", [])
    text = "# Design\n\n" + design.to_markdown().rstrip("\n") + "\n\n"
    text += (f"Replicates: {replicates} per cell (replicate k > 1 of a cell is the run <cell>_r<k>, trained with "
             f"seed train.seed + k - 1); {len(runs)} training runs in all.\n")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    return {"cells": len(design.cells), "runs": len(runs), "kind": design.kind}
