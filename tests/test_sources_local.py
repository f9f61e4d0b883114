"""On a cluster profile, every job that needs the network or HF_TOKEN runs on the submitting host."""

from __future__ import annotations

import yaml

from tests.conftest import ROOT
from tools.local_jobs import local_rules

NETWORK = {"check_sources", "download_file", "download_folder", "download_model", "fetch_ocr_vqa_images"}


def test_downloads_and_the_preflight_are_local_rules_and_training_is_submitted():
    local, submitted = local_rules([ROOT / "config.yaml"])  # parses the workflow offline (~5 s)
    assert NETWORK <= local
    assert {"train_cell", "train_connector", "evaluate_benchmark", "prepare_dataset", "extract_archive"} <= submitted


def test_every_hub_source_of_config_yaml_is_checked_by_the_preflight():
    from llava_gemma.data.sources import UNPINNED, hub_sources
    from llava_gemma.study.config import StudyConfig

    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    sources = hub_sources(config, StudyConfig(config).models)
    in_config = {s["hub"] for s in config["downloads"].values() if "hub" in s}
    in_config |= {src["hub"] for src in StudyConfig(config).models.values() if "hub" in src}
    assert {s["hub"] for s in sources} == in_config
    assert all(s["revision"] == UNPINNED or len(s["revision"]) == 40 for s in sources)
