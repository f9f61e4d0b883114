"""The one-node loopback SLURM cluster of .ci/slurm-local.sh, seen from the tests.

The script does the work (install, start, stop by PID); this module calls it and reads the
scheduler's own records: ``squeue`` for jobs still in memory (the cluster keeps finished jobs
for MinJobAge = 10 minutes) and the job-completion log, one line per finished job, for longer.
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / ".ci" / "slurm-local.sh"
STATE_DIR = Path(os.environ.get("SLURM_LOCAL_DIR", "/tmp/slurm-local"))


@dataclass(frozen=True)
class ScriptResult:
    ok: bool
    unsupported: bool  # exit 3: this machine cannot run the cluster (not root, no apt-get, ...)
    message: str


def cluster_script(command: str, timeout: float = 300) -> ScriptResult:
    run = subprocess.run(["bash", str(SCRIPT), command], capture_output=True, text=True, timeout=timeout,
                         env={**os.environ, "SLURM_LOCAL_DIR": str(STATE_DIR)})
    message = (run.stderr.strip() or run.stdout.strip()).splitlines()
    return ScriptResult(run.returncode == 0, run.returncode == 3, message[-1] if message else f"exit {run.returncode}")


@dataclass(frozen=True)
class FinishedJob:
    job_id: int
    name: str
    state: str  # COMPLETED, FAILED, CANCELLED, TIMEOUT, ...
    exit_code: str


def finished_jobs() -> dict[int, FinishedJob]:
    """Every job the cluster has finished since it first started, from its job-completion log."""
    path = STATE_DIR / "jobcomp.log"
    if not path.exists():
        return {}
    jobs = {}
    for line in path.read_text().splitlines():
        fields = dict(re.findall(r"(\w+)=(\S*)", line))
        if "JobId" in fields:
            job = FinishedJob(int(fields["JobId"]), fields.get("Name", ""), fields.get("JobState", ""),
                              fields.get("ExitCode", ""))
            jobs[job.job_id] = job
    return jobs


def job_comments(job_ids: list[int]) -> dict[int, str]:
    """SLURM's comment of each job (Snakemake's SLURM executor writes rule and wildcards there)."""
    if not job_ids:
        return {}
    out = subprocess.run(["squeue", "-h", "-t", "all", "-j", ",".join(map(str, job_ids)), "-o", "%i|%k"],
                         capture_output=True, text=True, timeout=30, check=True).stdout
    return {int(i): comment for i, comment in (line.split("|", 1) for line in out.splitlines() if "|" in line)}


def cancel_jobs(job_ids: list[int]) -> None:
    if job_ids:
        subprocess.run(["scancel", *map(str, job_ids)], capture_output=True, timeout=30)


def daemon_logs(tail: int = 15) -> str:
    """The last lines of slurmctld's and slurmd's logs, for a failure message."""
    parts = []
    for name in ("slurmctld.log", "slurmd.log"):
        path = STATE_DIR / name
        if path.exists():
            parts.append(f"--- {path} ---\n" + "\n".join(path.read_text().splitlines()[-tail:]))
    return "\n".join(parts)
