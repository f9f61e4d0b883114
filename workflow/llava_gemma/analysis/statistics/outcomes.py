"""Per-question outcomes of every cell on one benchmark, read from the cells' ``samples.jsonl``.

Each record carries ``correct`` (bool: GQA, POPE, MME, MMVP, ScienceQA-IMG) or ``score`` (in
[0, 1]: VQAv2's 10-choose-9 accuracy, MM-Vet's judge score). The ``cluster`` column is the
benchmark's unit of dependence, whose answers are correlated across questions: the image where
questions share one (GQA, POPE, VQAv2, MME, MM-Vet; each record names it in ``image``), the pair
for MMVP (two images per question pair), the question itself for ScienceQA-IMG (one image each).
``cluster_field`` says which: records written before images were named fall back to the question.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from llava_gemma.errors import UserError
from llava_gemma.study.config import Cell

CLUSTER_FIELD = {"gqa": "image", "pope": "image", "vqav2": "image", "mme": "image", "mmvet": "image",
                 "mmvp": "pair"}
# Record fields the official scales need (official_scales.py): MME's subtask, POPE's split, answer and label.
EXTRA = ("category", "split", "parsed", "label")


def read_samples(path: Path) -> list[dict]:
    if not path.is_file():
        raise UserError(f"per-question file {path} is missing; run the evaluate_benchmark job that writes it.")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def outcome_of(record: dict, path: Path) -> tuple[float, str]:
    """The outcome y and its kind: ``correct`` (0/1) or ``score`` (in [0, 1])."""
    if "correct" in record:
        return float(bool(record["correct"])), "correct"
    if "score" in record:
        return float(record["score"]), "score"
    raise UserError(f"{path}: record {record.get('id')!r} has neither 'correct' nor 'score'; "
                    "rerun its evaluation with this version of the pipeline.")


def load_outcomes(cells: list[Cell], benchmark: str, cells_dir: Path) -> pd.DataFrame:
    """Rows: cell, its three factor levels, question id, cluster, cluster_field, outcome y and its kind."""
    rows = []
    cluster_field = CLUSTER_FIELD.get(benchmark)
    for cell in cells:
        path = cells_dir / cell.name / "eval" / benchmark / "samples.jsonl"
        for rec in read_samples(path):
            qid = str(rec["id"])
            field = cluster_field if cluster_field and cluster_field in rec else "question"
            cluster = qid if field == "question" else f"{field}:{rec[field]}"
            rows.append({"cell": cell.name, "language_model": cell.language_model,
                         "vision_tower": cell.vision_tower, "connector": cell.connector,
                         "question": qid, "cluster": cluster, "cluster_field": field,
                         **dict(zip(("y", "kind"), outcome_of(rec, path))),
                         **{k: rec[k] for k in EXTRA if k in rec}})
    return pd.DataFrame(rows)
