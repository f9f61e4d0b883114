"""results/report/design.md: the design table the report opens with (the design's cells and
aliasing, from ``study.design``), and the runs its replicates make."""

from __future__ import annotations

from pathlib import Path

from llava_gemma.study.design import select_cells


def write_design(settings: dict, out: Path) -> dict:
    """results/report/design.md: the design's table and aliasing, and the runs its replicates make."""
    design = select_cells(dict(settings["factors"]), settings.get("design", "full"))
    replicates = settings.get("replicates", 1)
    runs = settings.get("runs", [])
    text = design.to_markdown().rstrip("\n") + "\n\n"
    text += (f"Replicates: {replicates} per cell (replicate k > 1 of a cell is the run <cell>_r<k>, trained with "
             f"seed train.seed + k - 1); {len(runs)} training runs in all.\n")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    return {"cells": len(design.cells), "runs": len(runs), "kind": design.kind}
