"""What the HTML report says about the run itself: study, config files, code commit, library versions, date.

Gathered when the report's tables are made (the ``describe_study`` job), in that job's environment, so
the versions are those of the software that ran; the commit is the pipeline checkout's.
"""

from __future__ import annotations

import csv
import json
import platform
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

# The libraries whose versions decide the numbers (training, generation, scoring, the workflow).
PACKAGES = ("llava-gemma", "torch", "transformers", "accelerate", "deepspeed", "snakemake", "huggingface_hub",
            "datasets", "pyarrow", "numpy", "pandas", "statsmodels", "matplotlib")


def git_commit(repo: Path) -> str:
    """The checkout's commit, with "+ uncommitted changes" when the tree differs; "unknown" outside git."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=30,
                              check=True).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return "unknown (not a git checkout)"
    return commit + (" + uncommitted changes" if dirty else "")


def version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def study_metadata(settings: dict[str, Any], repo: Path) -> list[tuple[str, str]]:
    rows = [("study", settings["study"]),
            ("config files", ", ".join(settings["configfiles"])),
            ("cells", ", ".join(settings["cells"])),
            ("benchmarks", ", ".join(settings["benchmarks"])),
            ("pipeline commit", git_commit(repo)),
            ("report made (UTC)", time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())),
            ("python", sys.version.split()[0]),
            ("platform", platform.platform())]
    return rows + source_rows(settings.get("sources")) + [(name, version(name)) for name in PACKAGES]


def source_rows(sources_json: str | None) -> list[tuple[str, str]]:
    """One row per hub source: the commit the run read it at (the preflight's data/raw/sources.json)."""
    if not sources_json or not Path(sources_json).is_file():
        return []
    rows = []
    for entry in json.loads(Path(sources_json).read_text()).values():
        pinned = "pinned" if entry["revision"] == entry["commit"] else "unpinned: the default branch then"
        rows.append((f"source {entry['repo_type']} {entry['hub']}", f"{entry['commit']} ({pinned})"))
    return sorted(rows)


def write_study_metadata(settings: dict[str, Any], repo: Path, out: Path) -> dict[str, str]:
    rows = study_metadata(settings, repo)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["item", "value"])
        writer.writerows(rows)
    return dict(rows)
