"""Report tables from fixture outputs: Table 1 layout, ours vs the paper, speed, loss curves, data filter."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
from llava_gemma.analysis.figures.training import data_filter_summary, loss_curves, write_loss_plot
from llava_gemma.analysis.tables.paper import build_comparison, comparison_markdown, paper_table
from llava_gemma.analysis.tables.speed import build_speed, relative_speed, write_speed
from llava_gemma.analysis.tables.table1 import COLUMNS, build_table1, write_table1
from llava_gemma.errors import UserError
from llava_gemma.study.config import Cell

CELLS = [Cell(lm, tower, c) for lm in ("2b", "7b") for tower in ("clip", "dinov2") for c in ("pretrain", "skip")]


def write_json(path: Path, obj: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


def fixture_metrics(cells_dir: Path, cells: list[Cell] = CELLS) -> dict[str, float]:
    """POPE and GQA metrics per cell; 7b_dinov2_skip is best at GQA, two cells tie for the best POPE F1."""
    gqa = {}
    for i, cell in enumerate(cells):
        gqa[cell.name] = 0.30 + 0.01 * i
        write_json(cells_dir / cell.name / "eval" / "gqa" / "metrics.json",
                   {"accuracy": gqa[cell.name], "accuracy_ci_low": gqa[cell.name] - 0.02,
                    "accuracy_ci_high": gqa[cell.name] + 0.02, "questions": 100, "wall_seconds": 2.0})
        f1 = 0.8 if cell.name in ("2b_clip_pretrain", "7b_clip_skip") else 0.7
        # Split means (LLaVA-1.5's headline, Table 1's) beside pooled values that differ from them.
        write_json(cells_dir / cell.name / "eval" / "pope" / "metrics.json",
                   {"split_mean/accuracy": 0.75, "split_mean/accuracy_ci_low": 0.7,
                    "split_mean/accuracy_ci_high": 0.8, "split_mean/f1": f1, "split_mean/f1_ci_low": f1 - 0.05,
                    "split_mean/f1_ci_high": f1 + 0.05, "pooled/accuracy": 0.6, "pooled/f1": f1 - 0.1,
                    "questions": 300, "wall_seconds": 3.0})
    return gqa


def test_table1_layout_intervals_best_marks_and_missing_columns(tmp_path):
    gqa = fixture_metrics(tmp_path / "cells")
    table = build_table1(CELLS, ["pope", "gqa"], tmp_path / "cells")
    assert list(table["cell"]) == [c.name for c in CELLS]  # the paper's order: the grid's order
    for column in COLUMNS:  # every study column is there, evaluated or not
        assert {column, f"{column}_ci_low", f"{column}_ci_high"} <= set(table.columns)
    assert table["mmvp"].isna().all() and table["mme_perception"].isna().all()
    assert table.set_index("cell").loc["2b_dinov2_skip", "gqa"] == pytest.approx(gqa["2b_dinov2_skip"])
    pope = table.set_index("cell").loc["2b_clip_pretrain"]
    assert (pope["pope_acc"], pope["pope_f1"], pope["pope_f1_ci_low"]) == (0.75, 0.8, pytest.approx(0.75))
    best = table.set_index("cell")["best_in"].fillna("")
    # GQA's best (0.37 [0.35, 0.39]) overlaps the runner-up's interval (0.36 [0.34, 0.38]); POPE ties: none bold.
    assert (best == "").all()

    write_table1(table, tmp_path / "report")
    md = (tmp_path / "report" / "table1.md").read_text().splitlines()
    row = next(line for line in md if line.startswith("| 7b_dinov2_skip"))
    assert "| 0.370 [0.350, 0.390] |" in row  # not separated from the next: not bold
    assert "| – |" in row  # MMVP etc. not evaluated: shown as missing
    tex = (tmp_path / "report" / "table1.tex").read_text()
    assert "0.370 [0.350, 0.390]" in tex and r"\bottomrule" in tex
    note = (tmp_path / "report" / "table1.md").read_text()
    assert "question sampling only" in note and "does not cover seed variance" in note and "runner-up" in note


def test_table1_bold_only_where_the_best_is_separated(tmp_path):
    fixture_metrics(tmp_path / "cells")
    write_json(tmp_path / "cells" / "7b_dinov2_skip" / "eval" / "gqa" / "metrics.json",
               {"accuracy": 0.45, "accuracy_ci_low": 0.43, "accuracy_ci_high": 0.47})
    table = build_table1(CELLS, ["pope", "gqa"], tmp_path / "cells")
    assert table.set_index("cell")["best_in"].fillna("").to_dict()["7b_dinov2_skip"] == "gqa"
    write_table1(table, tmp_path / "report")
    assert "**0.450** [0.430, 0.470]" in (tmp_path / "report" / "table1.md").read_text()
    page = (tmp_path / "report" / "table1.html").read_text()  # the report's Table 1 page
    assert "<td><b>0.450</b> [0.430, 0.470]</td>" in page and page.count("<tr>") == len(table) + 1
    assert "runner-up" in page and "\x00" not in page
    csv = pd.read_csv(tmp_path / "report" / "table1.csv")
    assert list(csv.columns) == list(table.columns)


def test_table1_names_a_missing_metrics_file(tmp_path):
    with pytest.raises(UserError, match="evaluate_benchmark"):
        build_table1(CELLS[:1], ["gqa"], tmp_path / "cells")


def test_paper_table_ships_with_its_source():
    paper = paper_table()
    assert len(paper) == 10 and set(COLUMNS) <= set(paper.columns)
    gemma = paper[paper["lm_level"].notna()]
    assert len(gemma) == 8 and set(gemma["language_model_hub"]) == {"google/gemma-2b-it", "google/gemma-7b-it"}
    from importlib import resources

    text = resources.files("llava_gemma.analysis.tables").joinpath("paper_table1.csv").read_text()
    assert "arXiv 2404.01331" in text.splitlines()[0]


def test_comparison_matches_by_checkpoint_or_level_name(tmp_path):
    fixture_metrics(tmp_path / "cells")
    table = build_table1(CELLS, ["pope", "gqa"], tmp_path / "cells")
    hubs = {"2b": "google/gemma-2b-it", "7b": "google/gemma-7b-it", "clip": "openai/clip-vit-large-patch14-336",
            "dinov2": "facebook/dinov2-giant"}
    by_hub = build_comparison(table, hubs)
    assert set(by_hub["matched_by"]) == {"checkpoint"} and by_hub["cell"].nunique() == 8
    row = by_hub[(by_hub["cell"] == "2b_dinov2_pretrain") & (by_hub["metric"] == "gqa")].iloc[0]
    assert row["paper"] == pytest.approx(0.587) and row["difference"] == pytest.approx(row["ours"] - 0.587)
    # A different checkpoint for one level: those cells are not the paper's and are left out.
    other = build_comparison(table, {**hubs, "7b": "someone/else-7b"})
    assert set(other["cell"]) == {c.name for c in CELLS if c.language_model == "2b"}
    # Toy levels (no hub id) match by the paper config's level names.
    toy = build_comparison(table, dict.fromkeys(hubs))
    assert set(toy["matched_by"]) == {"level name"}
    md = comparison_markdown(toy)
    assert "arXiv 2404.01331" in md and "0.300 / 0.531 (-0.231)" in md
    renamed = build_table1([Cell("small", "clip", "pretrain")], [], tmp_path / "cells")
    assert "No cell of this grid matches" in comparison_markdown(build_comparison(renamed, {}))


def fixture_training(results: Path) -> None:
    for cell in CELLS:
        fast = cell.language_model == "2b"
        model = results / "cells" / cell.name / "model"
        write_json(model / "train_metrics.json", {"wall_seconds": 10.0 if fast else 40.0, "samples": 100,
                                                  "tokens": 5000, "train_samples_per_second": 20.0 if fast else 5.0})
        (model / "train_log.jsonl").write_text("".join(json.dumps({"loss": 3.0 / s, "step": s}) + "\n"
                                                       for s in range(1, 11)) + json.dumps({"train_loss": 1.0}) + "\n")
        if cell.pretrains_connector:
            stage1 = results / "stage1" / cell.pair
            write_json(stage1 / "train_metrics.json", {"wall_seconds": 5.0, "samples": 200, "tokens": 4000,
                                                       "train_samples_per_second": 40.0 if fast else 20.0,
                                                       "mfu": 0.31, "tokens_per_second": 999.0})
            (stage1 / "train_log.jsonl").write_text(json.dumps({"loss": 1.0, "step": 1}) + "\n")


def test_speed_table_and_relative_speed(tmp_path):
    fixture_metrics(tmp_path / "cells")
    fixture_training(tmp_path)
    speed = build_speed(CELLS, ["pope", "gqa"], tmp_path).set_index("cell")
    assert speed.loc["2b_clip_pretrain", "stage2_tokens_per_s"] == pytest.approx(5000 * 20.0 / 100)
    assert speed.loc["2b_clip_pretrain", "stage1_tokens_per_s"] == 999.0  # recorded by the job: taken as is
    assert speed.loc["2b_clip_pretrain", "stage1_mfu"] == 0.31
    assert math.isnan(speed.loc["2b_clip_skip", "stage1_samples_per_s"])  # skip cells have no stage 1
    assert math.isnan(speed.loc["2b_clip_pretrain", "stage2_mfu"])  # not measured: blank, not zero
    assert speed.loc["7b_clip_skip", "eval_questions_per_s"] == pytest.approx(400 / 5.0)
    relative = relative_speed(speed.reset_index()).set_index("stage")
    assert relative.loc["stage2", "throughput_ratio"] == pytest.approx(0.25)
    assert relative.loc["stage1", "throughput_ratio"] == pytest.approx(0.5) and relative.loc["stage1", "pairs"] == 2
    write_speed(speed.reset_index(), tmp_path / "report")
    assert (tmp_path / "report" / "speed.png").stat().st_size > 10_000
    assert pd.read_csv(tmp_path / "report" / "speed_relative.csv")["comparison"].iloc[0] == "7b / 2b"


def test_loss_curves_and_plot(tmp_path):
    fixture_training(tmp_path)
    curves = loss_curves(CELLS, tmp_path)
    assert set(curves["stage1"]) == {"2b_clip", "2b_dinov2", "7b_clip", "7b_dinov2"}
    assert list(curves["stage2"]["7b_clip_skip"]["step"]) == list(range(1, 11))  # summary line left out
    write_loss_plot(CELLS, tmp_path, tmp_path / "report")
    assert (tmp_path / "report" / "loss.png").stat().st_size > 10_000


def test_data_filter_summary(tmp_path):
    write_json(tmp_path / "instruct" / "filter_report.json", {
        "total": 10, "kept": 8, "sources": {"coco": {"total": 10, "kept": 8, "kept_fraction": 0.8,
                                                     "dropped": {"too_long": 2}, "repaired": {}}},
        "images": {"distinct": 9, "converted": 1, "unusable": {"truncated": 1}}})
    summary = data_filter_summary(tmp_path)
    coco = summary.iloc[0]
    assert (coco["dataset"], coco["source"], coco["kept"], coco["dropped"]) == ("instruct", "coco", 8, "too_long: 2")
    assert summary.iloc[1]["kept"] == 8 and "converted: 1" in summary.iloc[1]["repaired"]


def test_every_number_names_its_split_and_vqav2_differs_from_the_paper(tmp_path):
    from llava_gemma.analysis.tables.table1 import SPLITS, TESTDEV_SUBMISSION

    fixture_metrics(tmp_path / "cells")
    for cell in CELLS:  # a VQAv2 number too
        write_json(tmp_path / "cells" / cell.name / "eval" / "vqav2" / "metrics.json", {"accuracy": 70.0})
    table = build_table1(CELLS, ["pope", "gqa", "vqav2"], tmp_path / "cells")
    assert all((table[f"{c}_split"] == SPLITS[c]).all() for c in COLUMNS)
    write_table1(table, tmp_path / "report")
    md = (tmp_path / "report" / "table1.md").read_text()
    assert "vqav2 [val2014]" in md and "gqa [test-dev balanced]" in md and TESTDEV_SUBMISSION in md
    comparison = build_comparison(table, {"2b": None, "7b": None, "clip": None, "dinov2": None})
    vqa = comparison[comparison["metric"] == "vqav2"]
    assert set(vqa["ours_split"]) == {"val2014"} and set(vqa["paper_split"]) == {"test-dev"}
    gqa = comparison[comparison["metric"] == "gqa"]
    assert set(gqa["ours_split"]) == set(gqa["paper_split"]) == {"test-dev balanced"}
    text = comparison_markdown(comparison)
    assert "vqav2: ours val2014, paper test-dev" in text and "gqa: test-dev balanced (both)" in text


def test_vqav2_on_val2017_images_is_named_so_in_table1_and_beside_the_paper(tmp_path):
    from llava_gemma.analysis.tables.table1 import VQAV2_VAL2017

    fixture_metrics(tmp_path / "cells")
    for cell in CELLS:
        write_json(tmp_path / "cells" / cell.name / "eval" / "vqav2" / "metrics.json",
                   {"accuracy": 70.0, "split": "val2017"})
    table = build_table1(CELLS, ["pope", "gqa", "vqav2"], tmp_path / "cells")
    assert set(table["vqav2_split"]) == {VQAV2_VAL2017}
    write_table1(table, tmp_path / "report")
    assert f"vqav2 [{VQAV2_VAL2017}]" in (tmp_path / "report" / "table1.md").read_text()
    comparison = build_comparison(table, {"2b": None, "7b": None, "clip": None, "dinov2": None})
    assert set(comparison[comparison["metric"] == "vqav2"]["ours_split"]) == {VQAV2_VAL2017}
    assert f"vqav2: ours {VQAV2_VAL2017}, paper test-dev" in comparison_markdown(comparison)


def test_relative_speed_on_replicated_runs():
    """Two runs of each cell (the design example's replicates) used to raise 'The truth value of a Series
    is ambiguous'; each cell's runs are averaged first."""
    rows = []
    for lm, per_s in (("2b", (10.0, 14.0)), ("7b", (4.0, 6.0))):
        for tower in ("clip", "dinov2"):
            rows += [{"language_model": lm, "vision_tower": tower, "connector": "pretrain", "run": r,
                      "stage1_samples_per_s": math.nan, "stage2_samples_per_s": v, "eval_questions_per_s": 2 * v}
                     for r, v in enumerate(per_s)]
    relative = relative_speed(pd.DataFrame(rows)).set_index("stage")
    assert relative.loc["stage2", "throughput_ratio"] == pytest.approx(5.0 / 12.0)
    assert relative.loc["stage2", "pairs"] == 2 and math.isnan(relative.loc["stage1", "throughput_ratio"])
