"""Training curves and the data-filter summary, from the files training and preparation leave.

Loss curves: every ``train_log.jsonl`` line with a ``loss`` (the Trainer's logging steps) of
each stage-1 run (``results/stage1/<lm>_<tower>/``) and each cell's stage 2 (``model/``).
Data filter: ``data/prepared/<dataset>/filter_report.json`` flattened to one row per source.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from llava_gemma.study.config import Cell


def read_loss_log(path: Path) -> pd.DataFrame:
    """Step and loss of the logging steps (the final summary line has no ``loss``)."""
    if not path.is_file():
        return pd.DataFrame(columns=["step", "loss"])
    entries = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return pd.DataFrame([{"step": e["step"], "loss": e["loss"]} for e in entries if "loss" in e and "step" in e],
                        columns=["step", "loss"])


def loss_curves(cells: list[Cell], results_dir: Path) -> dict[str, dict[str, pd.DataFrame]]:
    """{"stage1": {pair: log}, "stage2": {cell: log}} for the runs that left a log."""
    stage1 = {c.pair: read_loss_log(results_dir / "stage1" / c.pair / "train_log.jsonl")
              for c in cells if c.pretrains_connector}
    stage2 = {c.name: read_loss_log(results_dir / "cells" / c.name / "model" / "train_log.jsonl") for c in cells}
    return {stage: {k: v for k, v in runs.items() if len(v)} for stage, runs in
            (("stage1", stage1), ("stage2", stage2))}


def write_loss_plot(cells: list[Cell], results_dir: Path, out_dir: Path) -> dict:
    from llava_gemma.analysis.figures.loss_plot import plot_loss

    curves = loss_curves(cells, results_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    plot_loss(curves, out_dir / "loss.png")
    return {stage: sorted(runs) for stage, runs in curves.items()}


def data_filter_summary(prepared_dir: Path) -> pd.DataFrame:
    """One row per (dataset, source): records in, kept, dropped and repaired with their reasons."""
    rows = []
    for report_path in sorted(prepared_dir.glob("*/filter_report.json")):
        report = json.loads(report_path.read_text())
        for source, stats in report.get("sources", {}).items():
            rows.append({"dataset": report_path.parent.name, "source": source, "records": stats["total"],
                         "kept": stats["kept"], "kept_fraction": stats["kept_fraction"],
                         "dropped": _reasons(stats.get("dropped", {})),
                         "repaired": _reasons(stats.get("repaired", {}))})
        images = report.get("images")
        if images:
            rows.append({"dataset": report_path.parent.name, "source": "(distinct images)",
                         "records": images.get("distinct"), "kept": images.get("distinct", 0)
                         - sum(images.get("unusable", {}).values()), "kept_fraction": None,
                         "dropped": _reasons(images.get("unusable", {})),
                         "repaired": f"converted: {images.get('converted', 0)}"})
    return pd.DataFrame(rows, columns=["dataset", "source", "records", "kept", "kept_fraction", "dropped",
                                       "repaired"])


def _reasons(counts: dict) -> str:
    return "; ".join(f"{reason}: {n}" for reason, n in counts.items()) or "none"
