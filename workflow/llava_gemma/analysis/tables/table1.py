"""Table 1: one row per cell (the paper's order), the study's columns, each with its 95% interval.

Values come from the cells' ``metrics.json`` files (the benchmarks' official metrics; intervals
are their bootstrap intervals). POPE's two columns are means over its three splits, as LLaVA-1.5
reports POPE (see ``COLUMNS``). Units follow the paper: GQA, POPE, MMVP and ScienceQA-IMG as
fractions, MME in points, MM-Vet and VQAv2 in percent. A benchmark the config does not evaluate
stays in the table as a missing column, so a reader never mistakes "not run" for "left out".
The best cell per column is bold in the Markdown and LaTeX tables and named in the CSV's
``best_in`` column only where it is separated from the next: its interval's low end above the
runner-up's high end (the shown interval: question sampling with one run per cell, question
sampling and seeds combined with replicates). Ties and overlaps are not bold. ``failed_questions``
counts the questions of the table's benchmarks that could not be asked (an undecodable image; scored
as wrong), summed over a cell's runs, with ``failed_in`` naming the benchmarks: a value is then lower
than the model's.
"""

from __future__ import annotations

import html
import json
import math
from pathlib import Path

import pandas as pd

from llava_gemma.errors import UserError
from llava_gemma.study.config import Cell

# Table column -> (benchmark, metric key in its metrics.json); intervals are <key>_ci_low/_ci_high.
COLUMNS: dict[str, tuple[str, str]] = {
    "gqa": ("gqa", "accuracy"),
    "mme_cognition": ("mme", "cognition"),
    "mme_perception": ("mme", "perception"),
    "mm_vet": ("mmvet", "score"),
    # POPE as LLaVA-1.5 reports it: the mean over the random/popular/adversarial splits of each
    # split's value from LLaVA's llava/eval/eval_pope.py (its 7B F1 85.9 = (87.2 + 86.3 + 84.5) / 3;
    # haotian-liu/LLaVA issues #626 and #806), not the three splits pooled (``pooled/...``).
    "pope_acc": ("pope", "split_mean/accuracy"),
    "pope_f1": ("pope", "split_mean/f1"),
    "vqav2": ("vqav2", "accuracy"),
    "mmvp": ("mmvp", "pair_accuracy"),
    "scienceqa_img": ("scienceqa_img", "accuracy"),
}
# The split (or set) each column's number is measured on, as this pipeline's loaders read them. VQAv2 is
# scored on val2014 because test-dev answers are not public (the paper's column is test-dev, see
# analysis/tables/paper.py); the test-dev answers for EvalAI are written beside: TESTDEV_SUBMISSION.
SPLITS: dict[str, str] = {
    "gqa": "test-dev balanced",
    "mme_cognition": "MME",
    "mme_perception": "MME",
    "mm_vet": "MM-Vet",
    "pope_acc": "COCO val2014",
    "pope_f1": "COCO val2014",
    "vqav2": "val2014",
    "mmvp": "MMVP",
    "scienceqa_img": "test, image questions",
}
VQAV2_VAL2017 = "val2014 on val2017 images"
TESTDEV_SUBMISSION = "results/cells/<cell>/eval/vqav2_testdev/submission.json"
SPLIT_NOTE = (f"Splits in brackets. VQAv2 is scored locally (val2014 questions; `split: val2017` keeps those on COCO "
              "val2017 images, which the instruction mix never trains on); the paper reports test-dev, which only "
              f"EvalAI scores: upload {TESTDEV_SUBMISSION} (written when eval.benchmarks lists vqav2_testdev) to "
              "the VQA Challenge's test-dev phase for that number.")
# How the Markdown/LaTeX tables print a column: fractions with 3 decimals, points and percent with 1.
DECIMALS = {"mme_cognition": 0, "mme_perception": 0, "mm_vet": 1, "vqav2": 1}
FACTOR_COLUMNS = ["cell", "language_model", "vision_tower", "pretrain_connector"]
MISSING = "–"  # printed for a benchmark the config does not evaluate
FAILED_COLUMN = "failed questions"
FAILED_NOTE = ("Failed questions: questions that could not be asked (an image that does not decode); each counts as "
               "a wrong answer in its benchmark's value, so a cell with failures scores lower than its model would; "
               "the questions are named in results/cells/<cell>/eval/<benchmark>/samples.jsonl (field `error`).")
INTERVAL_NOTE = ("[low, high] is a 95% bootstrap interval over question sampling only (images resampled whole for "
                 "GQA, POPE, VQAv2, MME and MM-Vet, pairs for MMVP, questions for ScienceQA-IMG): how much the score "
                 "would move on another sample of questions for the same trained model. It does not cover seed "
                 "variance (another training run of the cell), which can be several times larger; train replicates "
                 "for an interval that does.")
BOLD_NOTE = ("Bold: the column's best cell, only where its interval lies entirely above the runner-up's; "
             "otherwise no cell of that column is bold.")


def read_metrics(path: Path) -> dict:
    if not path.is_file():
        raise UserError(f"metrics file {path} is missing; run the evaluate_benchmark job that writes it "
                        "(snakemake asks for it when the benchmark is listed under eval.benchmarks).")
    return json.loads(path.read_text())


def build_table1(cells: list[Cell], benchmarks: list[str], cells_dir: Path) -> pd.DataFrame:
    """The table as data: value, ``<column>_ci_low``, ``<column>_ci_high`` per column (NaN when not run).

    With replicates, one row per cell: the mean over its runs, the question-sampling interval (the
    runs' mean bootstrap interval around that mean) and ``<column>_replicate_sd``, the standard
    deviation between the runs (analysis/statistics/replicate_rows.py)."""
    from llava_gemma.analysis.statistics.replicate_rows import PAPER_FACTORS, mean_over_replicates

    extra = [f for f, _ in cells[0].levels if f not in PAPER_FACTORS] if cells else []
    rows = []
    failed: dict[str, dict[str, int]] = {}  # cell (all its runs) -> benchmark -> failed questions
    for cell in cells:
        row: dict = {"cell": cell.name, "language_model": cell.language_model, "vision_tower": cell.vision_tower,
                     "pretrain_connector": "yes" if cell.pretrains_connector else "no",
                     **{f: cell.level(f) for f in extra}}
        read = {b: read_metrics(cells_dir / cell.name / "eval" / b / "metrics.json")
                for b in dict.fromkeys(b for b, _ in COLUMNS.values()) if b in benchmarks}
        for column, (bench, key) in COLUMNS.items():
            metrics = read.get(bench, {})
            row[column] = metrics.get(key, math.nan)
            row[f"{column}_ci_low"] = metrics.get(f"{key}_ci_low", math.nan)
            row[f"{column}_ci_high"] = metrics.get(f"{key}_ci_high", math.nan)
        for bench, metrics in read.items():
            if metrics.get("failed_questions"):
                counts = failed.setdefault(cell.cell, {})
                counts[bench] = counts.get(bench, 0) + int(metrics["failed_questions"])
        row.update({f"{column}_split": SPLITS[column] for column in COLUMNS})
        if read.get("vqav2", {}).get("split") == "val2017":  # its `split` setting (eval/benchmarks/vqav2.py)
            row["vqav2_split"] = VQAV2_VAL2017
        rows.append(row)
    table = pd.DataFrame(rows)
    if any(c.replicate > 1 for c in cells):
        table = mean_over_replicates(table, cells, list(COLUMNS))
    table.attrs["factors"] = extra
    table["failed_questions"] = [sum(failed.get(c, {}).values()) for c in table["cell"]]
    table["failed_in"] = [";".join(f"{b}:{n}" for b, n in failed.get(c, {}).items()) for c in table["cell"]]
    table["best_in"] = [";".join(c for c, best in zip(COLUMNS, marks) if best) for marks in _best_marks(table)]
    return table


def shown_interval(row: pd.Series, column: str) -> tuple[float, float]:
    """The interval the table prints: combined (question sampling and seeds) with replicates, else
    question sampling only."""
    low, high = row.get(f"{column}_combined_low", math.nan), row.get(f"{column}_combined_high", math.nan)
    if isinstance(low, float) and not (math.isnan(low) or math.isnan(high)):
        return low, high
    return row[f"{column}_ci_low"], row[f"{column}_ci_high"]


def _best_marks(table: pd.DataFrame) -> list[list[bool]]:
    """Per row, per column: is this the column's best, separated from the runner-up (see the docstring)?"""
    best: dict[str, int | None] = {}
    for c in COLUMNS:
        values = table[c].astype(float)
        order = values.dropna().sort_values(ascending=False)
        if len(order) == 0 or (len(order) > 1 and order.iloc[0] == order.iloc[1]):
            best[c] = None
            continue
        first = order.index[0]
        if len(order) > 1:
            low = shown_interval(table.loc[first], c)[0]
            high = shown_interval(table.loc[order.index[1]], c)[1]
            if math.isnan(low) or math.isnan(high) or low <= high:
                best[c] = None
                continue
        best[c] = first
    return [[best[c] == i for c in COLUMNS] for i in table.index]


def evaluated_columns(table: pd.DataFrame) -> list[str]:
    return [c for c in COLUMNS if table[c].notna().any()]


def format_number(value: float, column: str) -> str:
    return f"{value:.{DECIMALS.get(column, 3)}f}"


def format_cell(row: pd.Series, column: str, bold: tuple[str, str]) -> str:
    """``value [low, high]``, the value wrapped in ``bold`` when it is the column's best."""
    value = row[column]
    if isinstance(value, float) and math.isnan(value):
        return MISSING
    text = format_number(value, column)
    if column in str(row.get("best_in", "")).split(";"):
        text = f"{bold[0]}{text}{bold[1]}"
    low, high = shown_interval(row, column)
    if not (math.isnan(low) or math.isnan(high)):
        text += f" [{format_number(low, column)}, {format_number(high, column)}]"
    spread = row.get(f"{column}_replicate_sd", math.nan)
    if not math.isnan(spread):
        text += f" ±{spread:.{DECIMALS.get(column, 3)}f}"
    return text


def to_markdown(table: pd.DataFrame) -> str:
    """A plain Markdown table of a DataFrame (floats with 3 decimals)."""
    header = "| " + " | ".join(table.columns) + " |"
    rule = "|" + "|".join("---" for _ in table.columns) + "|"
    lines = [header, rule]
    for _, row in table.iterrows():
        lines.append("| " + " | ".join(_fmt(v) for v in row) + " |")
    return "\n".join(lines) + "\n"


def _fmt(value) -> str:
    if isinstance(value, float) and math.isnan(value):
        return MISSING
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def factor_columns(table: pd.DataFrame) -> list[str]:
    """The paper's factor columns, the grid's other factors, and the replicate count when there are several."""
    return FACTOR_COLUMNS + table.attrs.get("factors", []) + (["replicates"] if "replicates" in table else [])


def table_note(table: pd.DataFrame) -> str:
    from llava_gemma.analysis.statistics.replicate_rows import REPLICATE_NOTE

    failures = "\n\n" + FAILED_NOTE if table.get("failed_questions", pd.Series(dtype=int)).any() else ""
    return (SPLIT_NOTE + "\n\n" + (REPLICATE_NOTE if "replicates" in table else INTERVAL_NOTE) + "\n\n" + BOLD_NOTE
            + failures)


def column_split(table: pd.DataFrame, column: str) -> str:
    """The split a column was measured on: the rows' own (VQAv2's depends on its setting), else SPLITS."""
    found = table.get(f"{column}_split", pd.Series(dtype=str)).dropna().unique()
    return str(found[0]) if len(found) == 1 else SPLITS[column]


def table1_display(table: pd.DataFrame, bold: tuple[str, str] = ("**", "**")) -> pd.DataFrame:
    """Factor columns plus one ``value [interval]`` text column per benchmark column."""
    shown = table[factor_columns(table)].copy()
    for column in COLUMNS:
        cells = [format_cell(row, column, bold) for _, row in table.iterrows()]
        shown[f"{column} [{column_split(table, column)}]"] = cells
    shown[FAILED_COLUMN] = [_failed_text(row) for _, row in table.iterrows()]
    return shown


def _failed_text(row: pd.Series) -> str:
    """``0``, or the count and where: ``3 (pope 3)``."""
    n = int(row.get("failed_questions", 0))
    return f"{n} ({row['failed_in'].replace(':', ' ').replace(';', ', ')})" if n else "0"


def to_latex(table: pd.DataFrame) -> str:
    """A booktabs table: best value per column in bold, intervals in brackets, '–' for not run."""
    shown = table1_display(table, bold=(r"\textbf{", "}"))
    names = [c.replace("_", r"\_") for c in shown.columns]
    lines = [r"\begin{tabular}{" + "l" * len(factor_columns(table)) + "r" * (len(COLUMNS) + 1) + "}", r"\toprule",
             " & ".join(names) + r" \\", r"\midrule"]
    for _, row in shown.iterrows():
        lines.append(" & ".join(str(v).replace("_", r"\_") for v in row) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", *("% " + line for line in table_note(table).split("\n") if line)]
    return "\n".join(lines) + "\n"


def to_html(table: pd.DataFrame) -> str:
    """A standalone HTML page of the table, best values in bold and the note below (the report shows it)."""
    shown = table1_display(table, bold=BOLD_MARKS)
    rows = "\n".join("<tr>" + "".join(f"<td>{_html_text(v)}</td>" for v in row) + "</tr>"
                     for _, row in shown.iterrows())
    head = "".join(f"<th>{html.escape(c)}</th>" for c in shown.columns)
    note = "".join(f"<p>{html.escape(par)}</p>" for par in table_note(table).split("\n\n") if par.strip())
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Table 1</title><style>{HTML_STYLE}</style>"
            f"</head><body><table><thead><tr>{head}</tr></thead><tbody>\n{rows}\n</tbody></table>{note}</body></html>\n")


BOLD_MARKS = ("\x00", "\x01")  # bold placeholders: the text is escaped first, then they become <b></b>


def _html_text(value) -> str:
    return html.escape(str(value)).replace(BOLD_MARKS[0], "<b>").replace(BOLD_MARKS[1], "</b>")


HTML_STYLE = ("body{font-family:sans-serif;font-size:13px} table{border-collapse:collapse} "
              "th,td{padding:3px 8px;border-bottom:1px solid #ddd;text-align:right;white-space:nowrap} "
              "th{border-bottom:2px solid #333} p{max-width:70em}")


def write_table1(table: pd.DataFrame, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "table1.html").write_text(to_html(table))
    table.to_csv(out_dir / "table1.csv", index=False, float_format="%.4f")
    (out_dir / "table1.md").write_text(to_markdown(table1_display(table)) + "\n" + table_note(table) + "\n")
    (out_dir / "table1.tex").write_text(to_latex(table))
