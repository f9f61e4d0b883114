"""The paper study's DAG (config.yaml), from one offline dry run: every Table 1 benchmark is evaluated on every
cell, and every raw file an evaluation waits for is produced by a download or extract job of the same DAG."""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
TABLE1 = {"gqa", "mme", "mmvet", "pope", "vqav2", "mmvp", "scienceqa_img"}
EVALUATED = TABLE1 | {"vqav2_testdev"}  # the paper's VQAv2 split: answers for EvalAI
RAW_PRODUCERS = {"download_file", "download_folder", "extract_archive"}


def parse_jobs(text: str) -> list[dict]:
    """The jobs of a dry run's listing: rule name, inputs, outputs and wildcards."""
    jobs, job = [], None
    for line in text.splitlines():
        if m := re.match(r"^(?:local)?rule (\w+):$", line):
            job = {"rule": m.group(1), "input": [], "output": [], "wildcards": {}}
            jobs.append(job)
        elif job is not None and (m := re.match(r"^\s+(input|output|wildcards): (.*)$", line)):
            if m.group(1) == "wildcards":
                job["wildcards"] = dict(kv.split("=", 1) for kv in m.group(2).split(", "))
            else:
                job[m.group(1)] = m.group(2).split(", ")
    return jobs


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory) -> tuple[Path, str]:
    # One dry run of the paper config in an empty folder (~20 s on 2 cores); no network is touched.
    workdir = tmp_path_factory.mktemp("paper")
    done = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--cores", "1", "-s", str(ROOT / "Snakefile"),
                           "--directory", str(workdir), "--configfile", str(ROOT / "config.yaml")],
                          capture_output=True, text=True, cwd=workdir)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return workdir, done.stdout


@pytest.fixture(scope="module")
def dag(dry_run) -> list[dict]:
    return parse_jobs(dry_run[1])


def test_a_dry_run_writes_nothing(dry_run):
    """No study stamps (data/STUDY, results/STUDY) or anything else but Snakemake's own .snakemake/: the toy
    study can still run in a folder where the paper study was only dry-run (issue 26)."""
    workdir = dry_run[0]
    assert sorted(p.name for p in workdir.iterdir() if p.name != ".snakemake") == []


@pytest.fixture(scope="module")
def config() -> dict:
    return yaml.safe_load((ROOT / "config.yaml").read_text())


def test_config_evaluates_table1_with_the_blind_control(config):
    assert set(config["eval"]["benchmarks"]) == EVALUATED
    assert config["eval"]["blind_control"] == ["pope", "mme", "mmvp"]


def test_every_cell_is_evaluated_on_every_benchmark(dag, config):
    cells = {job["wildcards"]["cell"] for job in dag if job["rule"] == "train_cell"}
    assert len(cells) == 8
    evaluations = Counter((job["wildcards"]["evaluation"], job["wildcards"]["benchmark"])
                          for job in dag if job["rule"] == "evaluate_benchmark")
    blind = config["eval"]["blind_control"]
    expected = {("eval", b): 8 for b in EVALUATED} | {("eval_blind", b): 8 for b in blind}
    assert evaluations == expected  # 8 x 8 evaluations (Table 1's 7 and test-dev) + 8 x 3 blind ones


def test_every_benchmark_input_comes_from_a_download_or_extract(dag):
    produced = {path for job in dag if job["rule"] in RAW_PRODUCERS for path in job["output"]}
    for job in (j for j in dag if j["rule"] == "evaluate_benchmark"):
        raw = [path for path in job["input"] if path.startswith("data/raw/")]
        benchmark = job["wildcards"]["benchmark"]
        assert raw, f"{benchmark} waits for no raw data"
        assert set(raw) <= produced, f"{benchmark}: no job produces {sorted(set(raw) - produced)}"


def test_vqav2_waits_for_the_coco_images_it_shares_with_pope(dag):
    coco = "data/raw/archives/coco_val2014.zip.extracted.json"
    vqav2 = [job for job in dag if job["rule"] == "evaluate_benchmark" and job["wildcards"]["benchmark"] == "vqav2"]
    assert vqav2 and all(coco in job["input"] for job in vqav2)
    # the val2017 split lists COCO train2017 (unpacked for the mix) to leave out the images the mix trains on
    train2017 = "data/raw/archives/coco_train2017.zip.extracted.json"
    assert all(train2017 in job["input"] for job in vqav2)


def test_readme_states_the_job_count_and_every_cell_gets_a_model_card(dag):
    stated = re.search(r"lists the jobs without touching the network: (\d+) jobs", (ROOT / "README.md").read_text())
    assert stated and int(stated.group(1)) == len(dag)
    cards = {job["wildcards"]["cell"] for job in dag if job["rule"] == "write_model_card"}
    assert cards == {job["wildcards"]["cell"] for job in dag if job["rule"] == "train_cell"}


def test_gqa_waits_for_the_gqa_images_unpacked_for_the_mix(dag):
    # GQA's images.zip holds the test-dev images too; config.yaml unpacks it once, under llava_instruct.
    images = "data/raw/archives/gqa_images.zip.extracted.json"
    gqa = [job for job in dag if job["rule"] == "evaluate_benchmark" and job["wildcards"]["benchmark"] == "gqa"]
    assert gqa and all(images in job["input"] for job in gqa)
