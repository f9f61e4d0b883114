"""The paper study rehearsed: config.yaml (plus rehearsal.yaml's CPU settings) runs every job against tiny
stand-ins of its real sources served on loopback, through the real download clients (see
docs/rehearsal.md). One run for the module; the tests read what it left."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import yaml

from tests.conftest import ROOT

pytestmark = pytest.mark.rehearsal


@pytest.fixture(scope="module")
def rehearsal(rehearsal_mirror, tmp_path_factory) -> dict:
    from llava_gemma.rehearsal.build import EXPECTED
    from llava_gemma.rehearsal.run import run_rehearsal

    mirror = rehearsal_mirror
    workdir = tmp_path_factory.mktemp("paper")
    result = run_rehearsal(ROOT, mirror, workdir, cores=2)
    # The figures docs/rehearsal.md quotes: printed with -s, and kept beside the run.
    print(json.dumps({k: v for k, v in result.items() if k != "log"}, indent=1))
    return {**result, "workdir": workdir, "expected": json.loads((mirror / EXPECTED).read_text())}


@pytest.fixture(scope="module")
def config() -> dict:
    return yaml.safe_load((ROOT / "config.yaml").read_text())


def test_every_job_of_the_paper_study_succeeded(rehearsal):
    log_tail = "\n".join(open(rehearsal["log"]).read().splitlines()[-60:])
    assert rehearsal["returncode"] == 0, log_tail
    assert rehearsal["planned_by_rule"] and rehearsal["jobs_by_rule"] == rehearsal["planned_by_rule"], log_tail
    jobs = rehearsal["jobs_by_rule"]
    assert jobs["train_connector"] == 4 and jobs["train_cell"] == 8 and jobs["download_model"] == 4
    assert jobs["evaluate_benchmark"] == 8 * 8 + 8 * 3 and jobs["compute_relevancy"] == 8  # Table 1's 7 + test-dev
    assert jobs["check_sources"] == 1 and "await_manual_download" not in jobs  # OCR-VQA from its hub mirror


def test_sources_were_read_at_recorded_commits_gemma_gated_and_vqav2_has_both_splits(rehearsal):
    work = rehearsal["workdir"]
    sources = json.loads((work / "data" / "raw" / "sources.json").read_text())
    gated = sorted(v["hub"] for v in sources.values() if v["gated"])
    assert gated == ["google/gemma-2b-it", "google/gemma-7b-it"]  # passed with the rehearsal's token
    assert all(len(v["commit"]) == 40 for v in sources.values())
    study = pd.read_csv(work / "results" / "report" / "study.csv").set_index("item")["value"]
    assert study["source model google/gemma-2b-it"].startswith(
        next(v["commit"] for v in sources.values() if v["hub"] == "google/gemma-2b-it"))
    cell = work / "results" / "cells" / "2b_clip_pretrain" / "eval"
    assert json.loads((cell / "vqav2" / "metrics.json").read_text())["split"] == "val2017"
    upload = json.loads((cell / "vqav2_testdev" / "submission.json").read_text())
    assert len(upload) == 2 * rehearsal["expected"]["vqav2_testdev"]  # test-dev answered, the rest of test2015 ""
    assert json.loads((work / "data" / "raw" / "llava_instruct" / "ocr_vqa_images.json").read_text())["failed"] == 0


def test_every_benchmark_loader_read_every_question_the_stand_ins_hold(rehearsal, config):
    cells = sorted(p.name for p in (rehearsal["workdir"] / "results" / "cells").iterdir())
    assert len(cells) == 8
    evaluations = (("eval", config["eval"]["benchmarks"]), ("eval_blind", config["eval"]["blind_control"]))
    for cell in cells:
        for evaluation, names in evaluations:
            for name in names:
                samples = rehearsal["workdir"] / "results" / "cells" / cell / evaluation / name / "samples.jsonl"
                assert len(samples.read_text().splitlines()) == rehearsal["expected"][name], (cell, evaluation, name)


def test_table1_has_every_cell_and_every_paper_column(rehearsal):
    from llava_gemma.analysis.tables.table1 import COLUMNS

    table = pd.read_csv(rehearsal["workdir"] / "results" / "report" / "table1.csv")
    assert len(table) == 8
    assert set(COLUMNS) <= set(table.columns) and table[list(COLUMNS)].notna().all().all()


def test_clip_arrived_as_safetensors_and_the_filter_report_names_drops(rehearsal):
    clip = rehearsal["workdir"] / "data" / "models" / "clip"
    assert (clip / "model.safetensors").is_file() and not list(clip.glob("*.bin"))
    report = json.loads((rehearsal["workdir"] / "data" / "prepared" / "instruct" / "filter_report.json").read_text())
    assert "dropped_examples" in report and report["total"] > 0


def test_a_second_run_plans_nothing(rehearsal):
    assert rehearsal["second_run_returncode"] == 0 and rehearsal["second_run"] == {}
