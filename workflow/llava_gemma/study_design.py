"""The config's ``design`` turned into the cells that train (the design module's ``select_cells``:
full, fractional or explicit designs with their aliasing), and the design table the report opens with."""

from __future__ import annotations

from pathlib import Path


def choose_design(factors: dict[str, list[str]], design: str | dict | list = "full"):
    """The design's cells (one level per factor each), with ``to_markdown()`` for results/report/design.md."""
    from llava_gemma.study.design.designs import select_cells

    return select_cells(factors, design)


def write_design(settings: dict, out: Path) -> dict:
    """results/report/design.md: the design's table and aliasing, and the runs its replicates make."""
    design = choose_design(dict(settings["factors"]), settings.get("design", "full"))
    replicates = settings.get("replicates", 1)
    runs = settings.get("runs", [])
    text = design.to_markdown().rstrip("\n") + "\n\n"
    text += (f"Replicates: {replicates} per cell (replicate k > 1 of a cell is the run <cell>_r<k>, trained with "
             f"seed train.seed + k - 1); {len(runs)} training runs in all.\n")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    return {"cells": len(design.cells), "runs": len(runs), "kind": design.kind}
