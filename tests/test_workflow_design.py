"""A reduced design example through Snakemake to the HTML report: a fraction with replicates.

examples/toy-design.yaml (a 2^(4-1) fraction, every cell twice, toy.yaml's sizes) runs for hours of CPU;
this is its reduced version: the paper's three factors in the half fraction 2^(3-1), C = AB (resolution
III), every cell twice, on the reduced toy study's sizes (tests/test_workflow.py: 3 training steps,
20 questions a benchmark). It starts from a copy of conftest's finished ``reduced_study`` (times kept), so
the toy world and prepared data are reused, and two of its runs too (2b_clip_skip and
2b_dinov2_pretrain are cells of the fraction, and replicate 1 keeps a cell's name): about 40 jobs remain.
Every report rule must handle replicated runs of a fraction, and the HTML report must build.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.test_workflow import ROOT, reduced_toy_config, snakemake

CELLS = {"2b_clip_skip", "2b_dinov2_pretrain", "7b_clip_pretrain", "7b_dinov2_skip"}


def reduced_design_config() -> dict:
    cfg = reduced_toy_config()
    cfg["grid"] = yaml.safe_load((ROOT / "toy.yaml").read_text())["grid"]  # both toy LMs again
    cfg["design"] = {"fractional": {"generators": ["C = AB"]}}
    cfg["replicates"] = 2
    return cfg


@pytest.fixture(scope="module")
def design_study(reduced_study, tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    work = tmp_path_factory.mktemp("design") / "clone"
    shutil.copytree(reduced_study, work, symlinks=True)
    (work / "config.yaml").write_text(yaml.safe_dump(reduced_design_config(), sort_keys=False))
    run = snakemake(work)
    assert run.returncode == 0, run.stderr[-4000:]
    report = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(work / "Snakefile"), "--directory",
                             str(work), "--configfile", str(work / "config.yaml"), "--report",
                             str(work / "report.html")], capture_output=True, text=True, timeout=600)
    assert report.returncode == 0, report.stderr[-3000:]
    return work, run


@pytest.mark.workflow
def test_a_replicated_fraction_runs_to_the_report(design_study):
    work, run = design_study
    trained = set(re.findall(r"wildcards: cell=(\S+)", run.stdout + run.stderr))
    assert "2b_clip_skip" not in trained and "2b_dinov2_pretrain" not in trained  # reused from the reduced study
    report = work / "results/report"
    design = (report / "design.md").read_text()
    assert "**Regular fraction 2^(3-1)**: 4 of 8 cells." in design and "Resolution III" in design
    assert "**Main effects are not estimable clear of two-factor interactions**" in design
    assert "| language_model | A | A + BC |" in design and "8 training runs in all" in design

    table = pd.read_csv(report / "table1.csv")
    assert set(table["cell"]) == CELLS and (table["replicates"] == 2).all()
    effects = pd.read_csv(report / "effects.csv")
    main = effects[(effects["scale"] == "per question") & effects["factor"].isin(
        ["language_model", "vision_tower", "connector"])]
    assert (main["n_runs"] == 8).all() and (main["n_cells"] == 4).all()
    assert main["note"].str.startswith("main effects not estimable clear of two-factor interactions").all()
    assert {"MME perception (points)", "MMVP pair accuracy", "POPE F1 (mean over splits; delta method)"} <= \
        set(effects["scale"])
    speed = pd.read_csv(report / "speed_relative.csv")
    assert len(speed) > 0
    html = (work / "report.html").read_text()
    assert "linear probability model" in html and "Blind-image control" in html
    again = snakemake(work, "-n")
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr
