"""Partial reruns cost only what changed (issue 26).

On a finished reduced toy study (conftest's ``reduced_study``, a clone's layout: the workflow and its shipped
models beside data/ and results/), copied and then moved to another path, each change of the table below is
made to its config and a dry run must plan exactly the jobs that change implies, no more and no fewer. The
table is the source of README's "What a change costs" table.

The reduced study evaluates one job per cell (``eval.one_job_per: cell``, as toy.yaml): a changed setting of
one benchmark re-evaluates the cells, not only that benchmark (with ``one_job_per: benchmark``, the paper's
choice, it would be that benchmark's jobs alone).
"""

from __future__ import annotations

import re
import shutil
from collections import Counter
from pathlib import Path

import pytest
import yaml

from tests.test_workflow import snakemake

pytestmark = pytest.mark.workflow

CELLS = ("2b_clip_pretrain", "2b_clip_skip", "2b_dinov2_pretrain", "2b_dinov2_skip")
PRETRAIN_CELLS = ("2b_clip_pretrain", "2b_dinov2_pretrain")
DINOV2_CELLS = ("2b_dinov2_pretrain", "2b_dinov2_skip")
SECOND_REPLICATES = tuple(f"{cell}_r2" for cell in CELLS)

# What follows a changed evaluation of a set of cells: its model cards and every table that reads metrics.
REPORT_OF_METRICS = Counter(make_table1=1, make_blind_control_table=1, fit_factor_effects=1, make_speed_table=1,
                            describe_study=1)


def after_evaluation(cells) -> Counter:
    return Counter(evaluate_cell=len(cells), write_model_card=len(cells)) + REPORT_OF_METRICS


def after_training(cells) -> Counter:
    """A retrained cell: its evaluation, model card, relevancy map (first replicates), and every report."""
    return (Counter(train_cell=len(cells), compute_relevancy=len(cells), plot_relevancy=1, plot_training_loss=1)
            + after_evaluation(cells))


def after_data(cells, pairs) -> Counter:
    return (Counter(prepare_dataset=2, summarise_data_filter=1, train_connector=len(pairs))
            + after_training(cells))


def _set(path: str, value):
    """An edit of the config: ``path`` (dot-separated keys) set to ``value``."""
    def edit(cfg: dict) -> None:
        *parents, leaf = path.split(".")
        node = cfg
        for key in parents:
            node = node[key]
        node[leaf] = value
    return edit


def _override_level(factor: str, level: str, overrides: dict):
    def edit(cfg: dict) -> None:
        entry = next(f for f in cfg["grid"] if f["factor"] == factor)
        entry["levels"][level] = {**entry["levels"][level], **overrides}
    return edit


# (name, edit of the config, the jobs a dry run must plan; {} = nothing).
CHANGES = [
    ("one benchmark's evaluation setting", _set("eval.benchmarks.pope.limit", 50), after_evaluation(CELLS)),
    ("the blind-control list", _set("eval.blind_control", ["pope", "mme"]),
     after_evaluation(CELLS)),
    ("a report setting", _set("report", {"relevancy_examples": [{"benchmark": "pope", "id": "random-3"}]}),
     Counter(compute_relevancy=len(CELLS), plot_relevancy=1)),
    ("a stage-2 hyperparameter", _set("train.stage2.learning_rate", 5.0e-5), after_training(CELLS)),
    ("a stage-1 hyperparameter", _set("train.stage1.learning_rate", 5.0e-4),
     Counter(train_connector=2) + after_training(PRETRAIN_CELLS)),
    ("a data filter setting", _set("data.max_drop_fraction", 0.4), after_data(CELLS, ["2b_clip", "2b_dinov2"])),
    ("one level's override", _override_level("vision_tower", "dinov2", {"train": {"stage2": {"learning_rate": 5e-5}}}),
     after_training(DINOV2_CELLS)),
    # Only the new runs train (stage 1 is replicated too); the tables count runs, so they are made again.
    ("replicates 1 -> 2", _set("replicates", 2),
     Counter(train_connector=2, train_cell=4, evaluate_cell=4, write_model_card=4, write_design=1,
             plot_training_loss=1) + REPORT_OF_METRICS),
]


def planned_jobs(workdir: Path) -> tuple[Counter, set[str]]:
    """The jobs a dry run plans (by rule, without `all`) and the cells of the training jobs among them."""
    run = snakemake(workdir, "-n")
    assert run.returncode == 0, run.stderr[-3000:]
    out = run.stdout + run.stderr
    rules = Counter(re.findall(r"^(?:local)?rule (\w+):$", out, flags=re.M))
    rules.pop("all", None)
    trained = set(re.findall(r"^rule train_cell:\n(?:    .*\n)*?    wildcards: cell=(\S+)$", out, flags=re.M))
    return rules, trained


@pytest.fixture(scope="module")
def copied_study(reduced_study, tmp_path_factory) -> Path:
    """A copy of the finished study, times kept (as `cp -a` or `rsync -a` keep them)."""
    copied = tmp_path_factory.mktemp("copied") / "clone"
    shutil.copytree(reduced_study, copied, symlinks=True)
    return copied


@pytest.fixture(scope="module")
def moved_study(copied_study, tmp_path_factory) -> Path:
    """The copy, moved to another path (the tests of copying run first: pytest runs them in file order)."""
    moved = tmp_path_factory.mktemp("elsewhere") / "deeper" / "clone"
    moved.parent.mkdir(parents=True)
    shutil.move(copied_study, moved)
    return moved


def test_a_copied_clone_plans_nothing(copied_study):
    assert planned_jobs(copied_study) == (Counter(), set())


def test_a_moved_clone_plans_nothing(moved_study):
    assert planned_jobs(moved_study) == (Counter(), set())


@pytest.fixture
def config_of(moved_study):
    """Edits the moved study's config for one test and puts it back afterwards."""
    path = moved_study / "config.yaml"
    original = path.read_text()

    def edit(change) -> None:
        cfg = yaml.safe_load(original)
        change(cfg)
        path.write_text(yaml.safe_dump(cfg))

    yield edit
    path.write_text(original)


@pytest.mark.parametrize("name,change,expected", CHANGES, ids=[c[0] for c in CHANGES])
def test_a_change_plans_exactly_the_jobs_it_implies(moved_study, config_of, name, change, expected):
    config_of(change)
    rules, trained = planned_jobs(moved_study)
    assert rules == expected, f"{name}: planned {dict(rules)}, expected {dict(expected)}"
    if name == "replicates 1 -> 2":
        assert trained == set(SECOND_REPLICATES)


def test_an_evaluation_change_once_run_plans_nothing(moved_study, tmp_path):
    """The second half of a rerun: once the planned jobs ran, nothing is left to do. (On a copy: the other tests
    keep the finished study.) A dry run of paper's config writing nothing is in tests/test_paper_dag.py."""
    study = tmp_path / "clone"
    shutil.copytree(moved_study, study, symlinks=True)
    cfg = yaml.safe_load((study / "config.yaml").read_text())
    _set("eval.benchmarks.pope.limit", 50)(cfg)
    (study / "config.yaml").write_text(yaml.safe_dump(cfg))
    run = snakemake(study)
    assert run.returncode == 0, run.stderr[-3000:]
    assert planned_jobs(study) == (Counter(), set())
