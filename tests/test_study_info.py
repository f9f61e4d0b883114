"""The report's Study item: config files, commit (and whether the checkout differed), versions, date."""

from __future__ import annotations

import csv
import json
import subprocess
from importlib import metadata

from llava_gemma.cli import main

SETTINGS = json.dumps({"study": "llava-gemma-toy", "configfiles": ["toy.yaml"], "cells": ["2b_clip_skip"],
                       "benchmarks": ["pope"]})


def read(path) -> dict[str, str]:
    with path.open() as f:
        return {row["item"]: row["value"] for row in csv.DictReader(f)}


def test_study_metadata_names_commit_versions_and_date(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    (repo / "Snakefile").write_text("rule all:\n")
    subprocess.run([*git, "add", "Snakefile"], check=True)
    subprocess.run([*git, "commit", "-qm", "x"], check=True)
    head = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()

    out = tmp_path / "study.csv"
    assert main(["describe-study", "--repo", str(repo), "--out", str(out), "--settings", SETTINGS]) == 0
    rows = read(tmp_path / "study.csv")
    assert rows["study"] == "llava-gemma-toy" and rows["config files"] == "toy.yaml"
    assert rows["pipeline commit"] == head
    assert rows["torch"] == metadata.version("torch") and rows["transformers"] == metadata.version("transformers")
    assert rows["report made (UTC)"][:2] == "20"

    (repo / "Snakefile").write_text("rule all:\n    input: []\n")
    main(["describe-study", "--repo", str(repo), "--out", str(tmp_path / "study.csv"), "--settings", SETTINGS])
    assert read(tmp_path / "study.csv")["pipeline commit"] == head + " + uncommitted changes"

    main(["describe-study", "--repo", str(tmp_path / "elsewhere"), "--out", str(tmp_path / "s.csv"),
          "--settings", SETTINGS])
    assert read(tmp_path / "s.csv")["pipeline commit"].startswith("unknown")
