"""Every `snakemake` command README and the docs/ pages show for the toy study plans what its text says (dry
runs), and the cluster page's commands parse as Snakemake reads them (the targets end up as targets)."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import yaml

from tests.test_paper_dag import parse_jobs

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
# README and every docs/ page, each read on its own (a fenced block never spans two files).
PAGES = {"README.md": README} | {f"docs/{p.name}": p.read_text() for p in sorted((ROOT / "docs").glob("*.md"))}
CELL = "2b_clip_skip"
TOY_CELLS = {f"{lm}_{tower}_{c}" for lm in ("2b", "7b") for tower in ("clip", "dinov2") for c in ("pretrain", "skip")}
FULL_STUDY = "snakemake --cores 2 --configfile toy.yaml"
ONE_CELL_TARGET = f"results/cells/{CELL}/eval/pope/metrics.json"

# What each command's text says it does: the study state it is meant for ("fresh" clone or a "complete"
# study) and the jobs it must plan, as (rule, cell) counts; None means "every job of the whole study".
EXPECTED: dict[str, tuple[str, Counter | None]] = {
    FULL_STUDY: ("fresh", None),
    f"snakemake --cores 2 --configfile toy.yaml --force {ONE_CELL_TARGET}": (
        "complete", Counter({("evaluate_cell", CELL): 1})),
    f"snakemake --cores 2 --configfile toy.yaml --forcerun train_cell -- {ONE_CELL_TARGET}": (
        "complete", Counter({("train_cell", CELL): 1, ("evaluate_cell", CELL): 1})),
    f"snakemake --cores 2 --configfile toy.yaml -- {ONE_CELL_TARGET}": ("fresh", "one cell from scratch"),
}  # After a rerun, FULL_STUDY refreshes that cell and the report: see the last test.


def readme_commands(text: str) -> list[str]:
    """Every `snakemake ...` command naming toy.yaml: lines of fenced blocks (after `&&`, before `#`) and
    inline code spans."""
    commands = []
    for block in re.findall(r"^```[^\n]*\n(.*?)^```", text, flags=re.S | re.M):
        for line in block.splitlines():
            for part in line.split("#", 1)[0].split("&&"):
                if part.strip().startswith("snakemake") and "toy.yaml" in part:
                    commands.append(" ".join(part.split()))
    prose = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    commands += [" ".join(c.split()) for c in re.findall(r"`(snakemake [^`]*toy\.yaml[^`]*)`", prose)]
    return commands


def shown_commands() -> list[str]:
    return [c for text in PAGES.values() for c in readme_commands(text)]


def snakemake_args(command: str) -> list[str]:
    words = shlex.split(command)
    assert words[0] == "snakemake"
    return words[1:]


def dry_run(command: str, workdir: Path) -> list[dict]:
    # Our options go first: appended after a `--`, they would be read as targets.
    args = [a if a != "toy.yaml" else str(ROOT / "toy.yaml") for a in snakemake_args(command)]
    done = subprocess.run([sys.executable, "-m", "snakemake", "-n", "-s", str(ROOT / "Snakefile"),
                           "--directory", str(workdir), *args], capture_output=True, text=True, cwd=workdir)
    assert done.returncode == 0, f"{command}\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
    return parse_jobs(done.stdout)


@pytest.fixture(scope="module")
def fresh(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fresh")


@pytest.fixture(scope="module")
def complete(tmp_path_factory) -> Path:
    """A completed toy study made of empty files: every output of the DAG created, then `--touch`ed in the
    DAG's order so Snakemake sees it up to date (about 10 s, no job runs)."""
    workdir = tmp_path_factory.mktemp("complete")
    base = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--directory", str(workdir),
            "--configfile", str(ROOT / "toy.yaml"), "--cores", "1"]
    summary = subprocess.run([*base, "--summary"], capture_output=True, text=True, cwd=workdir, check=True)
    for line in summary.stdout.splitlines()[1:]:
        path = workdir / line.split("\t")[0]
        if "." in path.name:  # directory() outputs (models, toy world folders) have no suffix
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()
        else:
            path.mkdir(parents=True, exist_ok=True)
    subprocess.run([*base, "--touch"], capture_output=True, text=True, cwd=workdir, check=True)
    assert dry_run(FULL_STUDY, workdir) == [], "the faked study is not up to date"
    return workdir


def test_readme_shows_the_toy_commands_this_test_knows():
    assert FULL_STUDY in readme_commands(README)  # the quick start's line
    found = shown_commands()
    unknown = [c for c in found if c not in EXPECTED and "--report" not in c]
    assert not unknown, f"README or docs/ show snakemake commands this test does not check; add to EXPECTED: {unknown}"
    assert set(EXPECTED) <= set(found), "EXPECTED lists commands neither README nor docs/ show any more"


def cell_of(job: dict) -> str | None:
    w = job["wildcards"]
    if "cell" in w:
        return w["cell"]
    if "lm" in w and "tower" in w:
        return f"{w['lm']}_{w['tower']}"
    return None


@pytest.mark.parametrize("command", list(EXPECTED))
def test_readme_command_plans_what_its_text_says(command, request):
    state, expected = EXPECTED[command]
    jobs = dry_run(command, request.getfixturevalue(state))
    planned = Counter((job["rule"], cell_of(job)) for job in jobs)
    if expected is None:  # the whole study: every cell trained, evaluated and reported
        assert {c for (rule, c) in planned if rule == "train_cell"} == TOY_CELLS
        assert {c for (rule, c) in planned if rule == "evaluate_cell"} == TOY_CELLS
        assert planned[("all", None)] == 1
    elif isinstance(expected, str):  # one cell from scratch: its data and backbones, nothing of other cells
        assert {c for (_, c) in planned if c is not None} == {CELL}  # a skip cell needs no stage 1 either
        assert planned[("train_cell", CELL)] == 1 and planned[("evaluate_cell", CELL)] == 1
        models = {job["wildcards"]["model"] for job in jobs
                  if job["rule"] in ("pretrain_toy_vision_tower", "install_local_model")}
        assert {"2b", "clip"} <= models and "7b" not in models  # data preparation also reads every tower
        assert {job["wildcards"]["dataset"] for job in jobs if job["rule"] == "prepare_dataset"} == {"instruct"}
    else:
        assert planned == expected


def test_the_report_command_parses_with_its_config():
    from snakemake.cli import get_argument_parser

    (command,) = [c for c in shown_commands() if "--report" in c]
    args = get_argument_parser().parse_args(snakemake_args(command))
    assert list(map(str, args.configfile)) == ["toy.yaml"]
    assert str(args.report) == "results/report.html" and not args.targets


def cluster_commands(text: str) -> list[str]:
    return [" ".join(line.split("#", 1)[0].split()) for block in re.findall(r"^```[^\n]*\n(.*?)^```", text,
                                                                           flags=re.S | re.M)
            for line in block.splitlines() if line.startswith("snakemake --profile profiles/mycluster")]


def test_cluster_rerun_commands_read_their_targets_as_targets():
    from snakemake.cli import get_argument_parser

    commands = [c for text in PAGES.values() for c in cluster_commands(text)]
    assert len(commands) >= 3
    for command in commands:
        args = get_argument_parser().parse_args(snakemake_args(command))
        assert list(map(str, [args.profile] if isinstance(args.profile, str) else args.profile)) == [
            "profiles/mycluster"], command
        assert args.targets and all(t == "all" or t.startswith("results/cells/") for t in args.targets), command
        if "--forcerun" in command:
            assert set(args.forcerun) == {"train_cell"}, command


def test_toy_yaml_is_what_the_commands_expect():
    cfg = yaml.safe_load((ROOT / "toy.yaml").read_text())
    assert cfg["eval"]["one_job_per"] == "cell"  # README: one job evaluates a cell on all its benchmarks
    assert "skip" in next(f["levels"] for f in cfg["grid"] if f["factor"] == "connector")


def test_quick_start_block_keeps_its_two_lines_and_the_install_notes_hold():
    first = re.search(r"^```[^\n]*\n(.*?)^```", README, flags=re.S | re.M).group(1).splitlines()
    # .ci/run takes the pytest line from this block: it must stay two lines, install+study and tests.
    assert first == [f"pip install torch==2.13.0 && pip install -e '.[test]' && {FULL_STUDY}", "python -m pytest -q"]
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert 'requires-python = ">=3.11,<3.13"' in pyproject and "Python 3.11 or 3.12" in README
    assert "pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu" in README
    quick = re.search(r'python -m pytest -q -m "((?:not \w+)(?: and not \w+)*)"', README)
    assert quick, "README names the quick subset's command"
    markers = set(re.findall(r'^\s*"(\w+): ', pyproject, flags=re.M))
    named = set(re.findall(r"not (\w+)", quick.group(1)))
    assert {"workflow", "slow", "slurm"} <= named <= markers  # the quick subset names real markers


REPORT_JOBS = {"make_table1", "make_blind_control_table", "fit_factor_effects", "make_speed_table", "describe_study",
               "all"}


def test_after_a_one_cell_rerun_the_study_command_refreshes_only_that_cell_and_the_report(complete, tmp_path):
    # What the rerun commands leave behind, simulated in a copy: that cell's new evaluation (then also a new
    # model). Their outputs are newer than everything else.
    study = tmp_path / "study"
    shutil.copytree(complete, study, symlinks=True)
    cell = study / "results" / "cells" / CELL
    later = max(p.stat().st_mtime for p in study.rglob("*")) + 10

    def renew(*paths: Path, at: float) -> None:
        # New content too: Snakemake takes a newer file with its recorded checksum as unchanged.
        for path in paths:
            if path.is_file():
                path.write_text(f"rerun at {at}\n")
            os.utime(path, (at, at))

    evaluation = [p for p in cell.rglob("*") if p.is_file() and {"eval", "eval_blind"} & set(p.parts)]
    renew(*evaluation, at=later)
    planned = {(job["rule"], cell_of(job)) for job in dry_run(FULL_STUDY, study)}
    assert planned == {("write_model_card", CELL)} | {(rule, None) for rule in REPORT_JOBS}

    renew(cell / "model", *(cell / "model").rglob("*"), at=later)  # with Snakemake's .snakemake_timestamp
    renew(*evaluation, at=later + 10)
    planned = {(job["rule"], cell_of(job)) for job in dry_run(FULL_STUDY, study)}
    assert planned == {("write_model_card", CELL), ("compute_relevancy", CELL), ("plot_relevancy", None),
                       ("plot_training_loss", None)} | {(rule, None) for rule in REPORT_JOBS}
