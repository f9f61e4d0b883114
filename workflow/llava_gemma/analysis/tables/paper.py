"""Ours beside the paper: the published Table 1 (arXiv 2404.01331), our value, and the difference.

The published numbers ship with the package (``paper_table1.csv``, with its source). A cell
matches a paper row when its language model and tower are the checkpoints the paper used (the
grid's ``hub`` ids); a grid of toy or other models matches by the paper config's level names
instead (``2b``/``7b``, ``clip``/``dinov2``), and the ``matched_by`` column says which, since
toy models are not expected to land near the paper. Cells the paper lacks are left out.
"""

from __future__ import annotations

import math
from importlib import resources
from pathlib import Path

import pandas as pd

from llava_gemma.analysis.tables.table1 import (
    COLUMNS,
    DECIMALS,
    MISSING,
    SPLITS,
    TESTDEV_SUBMISSION,
    format_number,
    to_markdown,
)

PAPER_SOURCE = "Hinck et al., LLaVA-Gemma, arXiv 2404.01331, Table 1"
# The split of each published number: the paper's VQAv2 column is test-dev (scored on EvalAI), ours val2014.
PAPER_SPLITS = {**SPLITS, "vqav2": "test-dev"}


def paper_table() -> pd.DataFrame:
    with resources.files("llava_gemma.analysis.tables").joinpath("paper_table1.csv").open() as fh:
        return pd.read_csv(fh, comment="#", dtype={"lm_level": str, "tower_level": str})


def _match(cell_row: pd.Series, paper: pd.DataFrame, sources: dict[str, str | None]) -> tuple[pd.Series, str] | None:
    connector = paper["pretrain_connector"] == cell_row["pretrain_connector"]
    lm_hub, tower_hub = sources.get(cell_row["language_model"]), sources.get(cell_row["vision_tower"])
    by_hub = paper[connector & (paper["language_model_hub"] == lm_hub) & (paper["vision_tower_hub"] == tower_hub)]
    if lm_hub and tower_hub and len(by_hub):
        return by_hub.iloc[0], "checkpoint"
    if lm_hub or tower_hub:
        return None  # real checkpoints that differ from the paper's: no comparison by name
    by_name = paper[connector & (paper["lm_level"] == cell_row["language_model"])
                    & (paper["tower_level"] == cell_row["vision_tower"])]
    return (by_name.iloc[0], "level name") if len(by_name) else None


def build_comparison(table1: pd.DataFrame, sources: dict[str, str | None]) -> pd.DataFrame:
    """One row per (matched cell, evaluated column): paper value, ours with interval, difference."""
    paper = paper_table()
    rows = []
    for _, row in table1.iterrows():
        matched = _match(row, paper, sources)
        if matched is None:
            continue
        published, how = matched
        for column in COLUMNS:
            ours = row[column]
            theirs = published[column]
            if math.isnan(ours) and math.isnan(theirs):
                continue
            low, high, yardstick = _yardstick(row, column)
            rows.append({"cell": row["cell"], "metric": column, "paper": theirs, "ours": ours,
                         "ours_ci_low": low, "ours_ci_high": high, "difference": ours - theirs,
                         "paper_in_interval": bool(low <= theirs <= high), "interval_covers": yardstick,
                         "matched_by": how, "ours_split": row.get(f"{column}_split", SPLITS[column]),
                         "paper_split": PAPER_SPLITS[column]})
    return pd.DataFrame(rows, columns=["cell", "metric", "paper", "ours", "ours_ci_low", "ours_ci_high",
                                       "difference", "paper_in_interval", "interval_covers", "matched_by",
                                       "ours_split", "paper_split"])


def _yardstick(row: pd.Series, column: str) -> tuple[float, float, str]:
    """The interval the paper's single run is judged against: with replicates, where one more run of the
    cell would land (question sampling and seeds, replicate_rows.py); else question sampling only."""
    low, high = row.get(f"{column}_predict_low", math.nan), row.get(f"{column}_predict_high", math.nan)
    if isinstance(low, float) and not (math.isnan(low) or math.isnan(high)):
        return low, high, "one more run: question sampling and seeds"
    return row[f"{column}_ci_low"], row[f"{column}_ci_high"], "question sampling only (one run: seeds not covered)"


def comparison_markdown(comparison: pd.DataFrame) -> str:
    """Wide view: one row per cell, ``ours / paper (difference)`` per metric."""
    header = f"Ours beside the published numbers ({PAPER_SOURCE}): ours / paper (ours - paper).\n\n"
    if not comparison.empty:
        ours = comparison.drop_duplicates("metric").set_index("metric")["ours_split"].to_dict()
        header += split_lines({c: ours[c] for c in COLUMNS if c in ours})
    if comparison.empty:
        return header + ("No cell of this grid matches a row of the paper "
                         "(neither its checkpoints nor its level names).\n")
    metrics = [c for c in COLUMNS if c in set(comparison["metric"])]
    wide = []
    for cell, group in comparison.groupby("cell", sort=False):
        entry = {"cell": cell, "matched_by": group["matched_by"].iloc[0]}
        by_metric = group.set_index("metric")
        for m in metrics:
            entry[m] = _pair(by_metric.loc[m], m) if m in by_metric.index else MISSING
        wide.append(entry)
    return header + to_markdown(pd.DataFrame(wide))


def split_lines(ours: dict[str, str]) -> str:
    """Which split each compared number is on (``ours``: metric -> our split); where ours and the paper's
    differ, said so."""
    lines = []
    for m, split in ours.items():
        if split == PAPER_SPLITS[m]:
            lines.append(f"- {m}: {split} (both)")
        else:
            lines.append(f"- {m}: ours {split}, paper {PAPER_SPLITS[m]}; not the same questions. The "
                         f"{PAPER_SPLITS[m]} answers for EvalAI are in {TESTDEV_SUBMISSION}.")
    return "Splits:\n" + "\n".join(lines) + "\n\n"


def _pair(r: pd.Series, metric: str) -> str:
    ours = MISSING if math.isnan(r["ours"]) else format_number(r["ours"], metric)
    paper = MISSING if math.isnan(r["paper"]) else format_number(r["paper"], metric)
    diff = "" if math.isnan(r["difference"]) else f" ({r['difference']:+.{DECIMALS.get(metric, 3)}f})"
    return f"{ours} / {paper}{diff}"


def write_comparison(comparison: pd.DataFrame, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    comparison.to_csv(out_dir / "table1_vs_paper.csv", index=False, float_format="%.4f")
    (out_dir / "table1_vs_paper.md").write_text(comparison_markdown(comparison))
