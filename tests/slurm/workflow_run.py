"""One Snakemake run of the workflow, and the jobs it started as Snakemake printed them.

Snakemake prints a block per job (``rule <name>:`` or ``localrule <name>:`` with ``jobid:`` and
``wildcards:``); the SLURM executor adds ``Job <jobid> has been submitted with SLURM jobid <id>``,
and ``Error in rule <name>:`` blocks name the logs of a failed job.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from .cluster import cancel_jobs, daemon_logs

ROOT = Path(__file__).resolve().parents[2]
SNAKEFILE = ROOT / "Snakefile"
SLURM_PROFILE = ROOT / "profiles" / "slurm-ci"

_JOB_HEADER = re.compile(r"^(local)?rule (\w+):$")
_SUBMITTED = re.compile(r"^Job (\d+) has been submitted with SLURM jobid (\d+) \(log: (\S+)\)")
_ERROR_HEADER = re.compile(r"^Error in rule (\w+):$")
_RULE = "=" * 40  # Snakemake frames a shown log with 80 "="; its banner underline is shorter


@dataclass
class Job:
    rule: str
    local: bool
    wildcards: dict[str, str]
    slurm_id: int | None = None
    slurm_log: str | None = None


@dataclass
class Failure:
    rule: str
    logs: list[str] = field(default_factory=list)  # as Snakemake printed them
    slurm_id: int | None = None


@dataclass
class WorkflowRun:
    returncode: int
    output: str  # stdout + stderr
    jobs: dict[int, Job]  # by Snakemake's jobid
    failures: list[Failure]

    def tail(self, n: int = 60) -> str:
        return "\n".join(self.output.splitlines()[-n:])

    def slurm_ids(self) -> list[int]:
        return [j.slurm_id for j in self.jobs.values() if j.slurm_id is not None]

    def jobs_of_rule(self, rule: str) -> list[Job]:
        return [j for j in self.jobs.values() if j.rule == rule]


def _wildcards(text: str) -> dict[str, str]:
    return dict(part.split("=", 1) for part in re.split(r",\s*", text.strip()) if "=" in part)


def parse_run(output: str, returncode: int = 0) -> WorkflowRun:
    jobs: dict[int, Job] = {}
    failures: list[Failure] = []
    job: Job | None = None  # the job whose block is being read
    failure: Failure | None = None  # the failure whose block is being read
    # A failed job's log that Snakemake shows (show-failed-logs) runs from "Logfile <path>:" over a
    # long ==== rule to the next one; the job's own Snakemake messages in it are not this run's.
    shown_log = ""  # "" outside, "header" after "Logfile <path>:", "inside" between the rules
    for line in output.splitlines():
        if shown_log == "inside":
            shown_log = "" if line.startswith(_RULE) else "inside"
            continue
        if shown_log == "header" and line.startswith(_RULE):
            shown_log = "inside"
            continue
        shown_log = "header" if line.startswith("Logfile ") and line.endswith(":") else ""
        if shown_log:
            continue
        if m := _JOB_HEADER.match(line):
            job, failure = Job(rule=m[2], local=bool(m[1]), wildcards={}), None
        elif m := _ERROR_HEADER.match(line):
            job, failure = None, Failure(m[1])
            failures.append(failure)
        elif m := _SUBMITTED.match(line):
            if (submitted := jobs.get(int(m[1]))) is not None:
                submitted.slurm_id, submitted.slurm_log = int(m[2]), m[3]
        elif m := re.match(r"^\s+(jobid|wildcards|log|external_jobid): (.*)$", line):
            key, value = m[1], m[2]
            if job is not None and key == "jobid":
                jobs[int(value)] = job
            elif job is not None and key == "wildcards":
                job.wildcards = _wildcards(value)
            elif failure is not None and key == "log":
                failure.logs = [p.strip() for p in value.split("(check log")[0].split(",") if p.strip()]
            elif failure is not None and key == "external_jobid":
                failure.slurm_id = int(value)
    return WorkflowRun(returncode, output, jobs, failures)


def run_workflow(workdir: Path, *args: str, profile: Path | None = SLURM_PROFILE, timeout: float = 1200,
                 cores: int = 2) -> WorkflowRun:
    """Snakemake on ``workdir``'s config.yaml; with the SLURM test profile unless ``profile`` is None.

    A run that outlives ``timeout`` is stopped and its SLURM jobs cancelled, so a hung status check
    fails the test instead of hanging CI.
    """
    cmd = [sys.executable, "-m", "snakemake", "-s", str(SNAKEFILE), "--directory", str(workdir),
           "--configfile", str(workdir / "config.yaml")]
    cmd += ["--profile", str(profile)] if profile is not None else ["--cores", str(cores)]
    # Jobs run `llava-gemma` from this interpreter's environment, whatever PATH the caller had.
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    try:
        done = subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired as err:
        output = (err.stdout or b"").decode() + (err.stderr or b"").decode() if isinstance(err.stdout, bytes) \
            else (err.stdout or "") + (err.stderr or "")
        run = parse_run(output, returncode=-1)
        cancel_jobs(run.slurm_ids())
        raise AssertionError(f"Snakemake did not finish within {timeout:.0f} s:\n{run.tail()}\n{daemon_logs()}") \
            from None
    return parse_run(done.stdout + done.stderr, done.returncode)
