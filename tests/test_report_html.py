"""`snakemake --report` builds the study's HTML report, and a real headless browser renders it.

The report's files are made from fixture outputs by the same functions the rules call, in a
working directory of their own; Snakemake then collects every output the rules mark with
report(), with its caption. Chromium (Debian's ``chromium`` package) opens the page and takes a
screenshot; without chromium that part is skipped with the reason.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from llava_gemma.analysis.figures.relevancy_figure import write_relevancy_figure
from llava_gemma.analysis.figures.training import data_filter_summary, write_loss_plot
from llava_gemma.analysis.statistics.effects import build_effects, write_effects
from llava_gemma.analysis.tables.blind_control import build_blind_control, write_blind_control
from llava_gemma.analysis.tables.design_page import write_design
from llava_gemma.analysis.tables.model_card import write_model_card
from llava_gemma.analysis.tables.paper import build_comparison, write_comparison
from llava_gemma.analysis.tables.speed import build_speed, write_speed
from llava_gemma.analysis.tables.study_info import write_study_metadata
from llava_gemma.analysis.tables.table1 import build_table1, write_table1

from .conftest import draw_scene
from .test_effects import plant
from .test_model_card import PAPER_CELL
from .test_report_tables import CELLS, fixture_metrics, fixture_training, write_json

ROOT = Path(__file__).resolve().parents[1]
REPORT_FILES = {"table1.csv", "table1.html", "table1_vs_paper.csv", "effects.csv", "effects.png", "speed.csv",
                "speed_relative.csv", "speed.png", "loss.png", "data_filter.csv", "relevancy.png", "blind_control.csv",
                "study.csv", "README.md", "design.md"}


def make_report_outputs(work: Path) -> None:
    results, out = work / "results", work / "results" / "report"
    cells_dir = results / "cells"
    fixture_metrics(cells_dir)
    fixture_training(results)
    plant(cells_dir, CELLS, "gqa", 60)
    plant(cells_dir, CELLS, "pope", 60, seed=1)
    table = build_table1(CELLS, ["pope", "gqa"], cells_dir)
    write_table1(table, out)
    write_comparison(build_comparison(table, {}), out)
    write_effects(build_effects(CELLS, ["pope", "gqa"], cells_dir), out)
    write_speed(build_speed(CELLS, ["pope", "gqa"], results), out)
    write_loss_plot(CELLS, results, out)
    write_json(work / "data" / "prepared" / "instruct" / "filter_report.json", {"sources": {"coco": {
        "total": 4, "kept": 3, "kept_fraction": 0.75, "dropped": {"too_long": 1}, "repaired": {}}}})
    data_filter_summary(work / "data" / "prepared").to_csv(out / "data_filter.csv", index=False)
    for cell in CELLS:
        src = cells_dir / cell.name / "eval" / "pope" / "metrics.json"
        blind = cells_dir / cell.name / "eval_blind" / "pope" / "metrics.json"
        blind.parent.mkdir(parents=True, exist_ok=True)
        blind.write_text(src.read_text())
    write_blind_control(build_blind_control(CELLS, ["pope"], cells_dir), out)
    draw_scene("red").save(work / "scene.png")
    maps = []
    for cell in CELLS:
        path = out / "relevancy" / f"{cell.name}.json"
        write_json(path, [{"benchmark": "pope", "qid": "random-1", "prompt": "Is there a circle in the image?",
                           "image_path": str(work / "scene.png"), "answer_token": "Yes", "grid": [2, 2],
                           "relevancy": [[0.1, 0.2], [0.3, 0.4]]}])
        maps.append(path)
    write_relevancy_figure(maps, out / "relevancy.png")
    for cell in CELLS:
        card = {**PAPER_CELL, "cell": cell.name, "eval": {"benchmarks": {"pope": {}, "gqa": {}}}}
        write_model_card(card, out / "model_cards" / cell.name / "README.md", cells_dir / cell.name / "eval")
    write_design({"factors": [["language_model", ["2b", "7b"]], ["vision_tower", ["clip", "dinov2"]],
                              ["connector", ["pretrain", "skip"]]], "design": "full", "replicates": 1,
                  "runs": [c.name for c in CELLS]}, out / "design.md")
    write_study_metadata({"study": "llava-gemma-toy", "configfiles": ["config.yaml"], "cells": [c.name for c in CELLS],
                          "benchmarks": ["pope", "gqa"]}, ROOT, out / "study.csv")


@pytest.fixture(scope="module")
def report_html(tmp_path_factory) -> tuple[Path, str]:
    work = tmp_path_factory.mktemp("report")
    (work / "config.yaml").write_text(yaml.safe_dump(yaml.safe_load((ROOT / "toy.yaml").read_text())))
    make_report_outputs(work)
    cmd = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--directory", str(work),
           "--configfile", str(work / "config.yaml"), "--report", str(work / "report.html")]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    return work / "report.html", run.stdout + run.stderr


def test_report_collects_every_table_and_figure_with_a_caption(report_html):
    html, log = report_html
    added = set(re.findall(r"Adding (\S+) \(", log))
    assert REPORT_FILES <= added, REPORT_FILES - added
    text = html.read_text()
    for caption in ("official rule", "published Table 1", "linear probability model", "Chefer, Gur and Wolf",
                    "Throughput per cell", "Training loss curves", "Data filter summary", "Blind-image control",
                    "The record of this run", "model card of cell", "LLaVA-Gemma design study: llava-gemma-toy",
                    "Where to look"):
        assert caption in text, caption


def test_report_renders_in_headless_chromium(report_html, tmp_path):
    browser = shutil.which("chromium")
    if browser is None:
        pytest.skip("chromium is not installed (apt-get install -y chromium); the report was built but not rendered")
    html, _ = report_html
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars",
             "--virtual-time-budget=10000", "--window-size=1400,1000"]
    shot = tmp_path / "report.png"
    subprocess.run([browser, *flags, f"--screenshot={shot}", html.as_uri()], capture_output=True, timeout=180)
    assert shot.is_file() and shot.stat().st_size > 20_000
    dom = subprocess.run([browser, *flags, "--dump-dom", html.as_uri()], capture_output=True, text=True,
                         timeout=180).stdout
    # The page's script ran and built the navigation: one entry per report category.
    for category in ("Table 1", "Factor effects", "Relevancy maps", "Speed", "Training", "Controls", "Study",
                     "Model cards"):
        assert category in dom, category
    from PIL import Image

    with Image.open(shot) as img:
        assert img.size == (1400, 1000) and len(set(img.convert("L").getdata())) > 20  # not a blank page



def test_the_report_builds_without_docutils_warnings(report_html):
    html, log = report_html
    messages = re.findall(r"\((?:INFO|WARNING|ERROR|SEVERE)/\d\)[^\n]*", log)
    assert not messages, messages
    assert "System Message" not in html.read_text()  # docutils embeds its warnings in the page, too
