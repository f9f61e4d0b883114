"""The whole paper study against the loopback mirror: ``snakemake --configfile config.yaml rehearsal.yaml``.

``run_rehearsal`` serves a built mirror on 127.0.0.1, does the one manual step a user does (OCR-VQA's
dataset.json into data/raw/), runs every job of the study in ``workdir`` with the mirror's settings in
the environment, then plans the study again (a dry run, which must find nothing to do), and returns
the wall time, the jobs finished per rule and what the second run would do.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from llava_gemma.rehearsal.server import MirrorServer

FINISHED = re.compile(r"Finished jobid: \d+ \(Rule: (\w+)\)")
PLANNED = re.compile(r"^(\w+)\s+(\d+)$")


def snakemake_command(repo: Path, workdir: Path, cores: int, *extra: str) -> list[str]:
    return [sys.executable, "-m", "snakemake", "-s", str(repo / "Snakefile"), "--directory", str(workdir),
            "--configfile", str(repo / "config.yaml"), str(repo / "rehearsal.yaml"), "--cores", str(cores), *extra]


def run_rehearsal(repo: Path, mirror: Path, workdir: Path, *, cores: int = 2) -> dict:
    """Run the study in ``workdir`` against ``mirror`` (built by ``rehearse build``); see the module docstring."""
    repo, mirror, workdir = Path(repo).resolve(), Path(mirror).resolve(), Path(workdir).resolve()
    raw = workdir / "data" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    if (mirror / "manual").is_dir():  # what a user places by hand (OCR-VQA's dataset.json lives on Google Drive)
        shutil.copytree(mirror / "manual", raw, dirs_exist_ok=True)
    server = MirrorServer(mirror).start()
    env = {**os.environ, **server.environment(), "OMP_NUM_THREADS": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1",
           "HF_HOME": str(workdir / ".hf_home"), "TOKENIZERS_PARALLELISM": "false"}
    try:
        start = time.monotonic()
        log = workdir / "rehearsal.log"
        with log.open("w") as out:
            done = subprocess.run(snakemake_command(repo, workdir, cores), stdout=out, stderr=subprocess.STDOUT,
                                  env=env, cwd=workdir)
        wall = time.monotonic() - start
        again = subprocess.run(snakemake_command(repo, workdir, 1, "-n"), capture_output=True, text=True, env=env,
                               cwd=workdir)
    finally:
        server.stop()
    text = log.read_text()
    return {"returncode": done.returncode, "wall_seconds": round(wall, 1), "job_cpu_seconds": job_cpu_seconds(workdir),
            "jobs_by_rule": dict(sorted(Counter(r for r in FINISHED.findall(text) if r != "all").items())),
            "planned_by_rule": planned_jobs(text), "second_run": planned_jobs(again.stdout),
            "second_run_returncode": again.returncode, "log": str(log), "requests": len(server.requests)}


def job_cpu_seconds(workdir: Path) -> float:
    """CPU seconds of all jobs (the ``cpu_time`` column of every rule's benchmark file): the run's cost on an idle
    machine, which its wall time on a shared one overstates."""
    total = 0.0
    for tsv in (Path(workdir) / "benchmarks").rglob("*.tsv"):
        header, *rows = tsv.read_text().splitlines()
        column = header.split("\t").index("cpu_time")
        total += sum(float(row.split("\t")[column]) for row in rows if row.strip())
    return round(total, 1)


def planned_jobs(text: str) -> dict[str, int]:
    """The first "Job stats" table of a Snakemake log: rule -> jobs (``all`` and ``total`` left out)."""
    if "Job stats:" not in text:
        return {}
    jobs = {}
    for line in text.split("Job stats:", 1)[1].splitlines()[3:]:
        m = PLANNED.match(line.strip())
        if not m:
            break
        if m.group(1) not in ("all", "total"):
            jobs[m.group(1)] = int(m.group(2))
    return jobs
