"""Speed: per cell, training time and throughput per stage and evaluation questions per second.

Sources: ``results/stage1/<lm>_<tower>/train_metrics.json`` (shared by the pair's pretrain
cells; skip cells have no stage 1), ``results/cells/<cell>/model/train_metrics.json`` and each
benchmark's ``metrics.json`` (generation time only, model loading excluded). Samples/s is the
Trainer's training-loop rate; tokens/s is ``tokens_per_second`` when the training job recorded
it, else the stage's token count at that same rate. MFU and achieved TFLOP/s are copied when the
training job measured them (they need the device's peak) and left blank otherwise.

``speed_relative.csv`` compares each language-model level with the grid's first one on the
cells that differ only in the language model (geometric mean of the per-pair ratios); the
study reports the 7B model at about 0.25x the speed of the 2B one.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from llava_gemma.study.config import Cell

OPTIONAL_TRAIN_FIELDS = ("mfu", "achieved_tflops", "flops_per_sample")
SPEED_COLUMNS = ["samples_per_s", "tokens_per_s", "eval_questions_per_s"]


def _read(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def stage_speed(metrics: dict | None, prefix: str) -> dict:
    """Wall time, samples/s, tokens/s (and MFU fields when present) of one training stage."""
    if metrics is None:
        return {f"{prefix}_{k}": math.nan for k in ("wall_s", "samples_per_s", "tokens_per_s",
                                                    *OPTIONAL_TRAIN_FIELDS)}
    rate = metrics.get("train_samples_per_second") or math.nan
    samples, tokens = metrics.get("samples"), metrics.get("tokens")
    tokens_rate = metrics.get("tokens_per_second")
    if tokens_rate is None and samples and tokens:
        tokens_rate = tokens * rate / samples
    out = {f"{prefix}_wall_s": metrics.get("wall_seconds", math.nan), f"{prefix}_samples_per_s": rate,
           f"{prefix}_tokens_per_s": tokens_rate if tokens_rate is not None else math.nan}
    out.update({f"{prefix}_{k}": metrics.get(k, math.nan) for k in OPTIONAL_TRAIN_FIELDS})
    return out


def build_speed(cells: list[Cell], benchmarks: list[str], results_dir: Path) -> pd.DataFrame:
    rows = []
    for cell in cells:
        row: dict = {"cell": cell.name, "language_model": cell.language_model, "vision_tower": cell.vision_tower,
                     "connector": cell.connector}
        stage1 = _read(results_dir / "stage1" / cell.pair / "train_metrics.json") if cell.pretrains_connector else None
        row.update(stage_speed(stage1, "stage1"))
        row.update(stage_speed(_read(results_dir / "cells" / cell.name / "model" / "train_metrics.json"), "stage2"))
        evals = [m for b in benchmarks
                 if (m := _read(results_dir / "cells" / cell.name / "eval" / b / "metrics.json")) is not None]
        questions = sum(m.get("questions", 0) for m in evals)
        seconds = sum(m.get("wall_seconds", 0.0) for m in evals)
        row["eval_questions"] = questions
        row["eval_wall_s"] = seconds if evals else math.nan
        row["eval_questions_per_s"] = questions / seconds if seconds else math.nan
        rows.append(row)
    return pd.DataFrame(rows)


def relative_speed(speed: pd.DataFrame) -> pd.DataFrame:
    """Each LM level's throughput over the first level's, on cells equal in tower and connector.

    Replicated runs of a cell (several rows with the same levels) are averaged first, so each cell
    counts once and its key is unique."""
    levels = list(dict.fromkeys(speed["language_model"]))
    measures = {"stage1": "stage1_samples_per_s", "stage2": "stage2_samples_per_s",
                "evaluation": "eval_questions_per_s"}
    key = ["language_model", "vision_tower", "connector"]
    values = speed[key + list(measures.values())].copy()
    for column in measures.values():
        values[column] = pd.to_numeric(values[column], errors="coerce")
    keyed = values.groupby(key, sort=False).mean()
    rows = []
    for level in levels[1:]:
        for stage, column in measures.items():
            ratios = []
            for (lm, tower, connector), value in keyed[column].items():
                if lm != level:
                    continue
                base = keyed[column].get((levels[0], tower, connector), math.nan)
                if value > 0 and base > 0:
                    ratios.append(value / base)
            geo = math.exp(sum(map(math.log, ratios)) / len(ratios)) if ratios else math.nan
            rows.append({"comparison": f"{level} / {levels[0]}", "stage": stage, "throughput_ratio": geo,
                         "pairs": len(ratios)})
    return pd.DataFrame(rows, columns=["comparison", "stage", "throughput_ratio", "pairs"])


def write_speed(speed: pd.DataFrame, out_dir: Path) -> None:
    from llava_gemma.analysis.figures.plots import plot_speed

    out_dir.mkdir(parents=True, exist_ok=True)
    speed.to_csv(out_dir / "speed.csv", index=False, float_format="%.4g")
    relative_speed(speed).to_csv(out_dir / "speed_relative.csv", index=False, float_format="%.4g")
    plot_speed(speed, out_dir / "speed.png")
