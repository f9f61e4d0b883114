"""The blind-image control: each cell's headline metrics with real images and with blank ones.

The gap (seeing - blind) says how much a cell's answers depend on the picture; the study's
relevancy maps suggest the 2B model sometimes barely looks at it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from llava_gemma.analysis.tables.table1 import COLUMNS, to_markdown
from llava_gemma.study.config import Cell


def build_blind_control(cells: list[Cell], benchmarks: list[str], cells_dir: Path) -> pd.DataFrame:
    rows = []
    for cell in cells:
        for column, (bench, key) in COLUMNS.items():
            if bench not in benchmarks:
                continue
            seeing, blind = (json.loads((cells_dir / cell.name / kind / bench / "metrics.json").read_text())[key]
                             for kind in ("eval", "eval_blind"))
            rows.append({"cell": cell.name, "benchmark": bench, "metric": column, "seeing": seeing,
                         "blind": blind, "gap": seeing - blind})
    return pd.DataFrame(rows)


def write_blind_control(table: pd.DataFrame, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    table.to_csv(out_dir / "blind_control.csv", index=False, float_format="%.4f")
    (out_dir / "blind_control.md").write_text(to_markdown(table))
