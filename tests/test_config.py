"""The config schema: both shipped configs pass; user mistakes fail with one sentence naming the key."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from llava_gemma.errors import ConfigError
from llava_gemma.study.config import StudyConfig, validate_config

ROOT = Path(__file__).resolve().parents[1]


def load(name: str) -> dict:
    return yaml.safe_load((ROOT / name).read_text())


@pytest.mark.parametrize("name", ["config.yaml", "toy.yaml"])
def test_shipped_configs_are_valid_and_make_eight_cells(name):
    raw = load(name)
    validate_config(raw)
    cells = StudyConfig(raw).cells
    assert len(cells) == 8
    assert {c.name for c in cells} >= {"2b_clip_pretrain", "7b_dinov2_skip"}


def test_a_third_tower_is_a_config_edit():
    raw = load("config.yaml")
    raw["grid"][1]["levels"]["siglip"] = {"vision_tower": {"hub": "google/siglip-so400m-patch14-384"}}
    validate_config(raw)
    assert len(StudyConfig(raw).cells) == 12


def broken(path: list, value, base: str = "config.yaml") -> dict:
    raw = copy.deepcopy(load(base))
    node = raw
    for key in path[:-1]:
        node = node[key]
    if value is KeyError:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return raw


@pytest.mark.parametrize(("path", "value", "expected"), [
    (["train", "stage1", "learnig_rate"], 0.1, "unknown key 'train.stage1.learnig_rate'"),
    (["train", "stage1", "learning_rate"], "fast", "train.stage1.learning_rate: 'fast' is not of type 'number'"),
    (["grid", 2, "levels", "skip", "pretrain_connector"], "maybe",
     "grid[2].levels.skip.pretrain_connector: 'maybe' is not of type 'boolean'"),
    (["tokenizer_from"], "13b", "tokenizer_from '13b' is not a language model of the grid"),
    (["eval", "benchmarks", "gqa"], KeyError, None),
    (["train", "backend"], "tpu", "train.backend: 'tpu' is not one of"),
    (["train", "stage2", "global_batch_size"], 100, "train.stage2.global_batch_size 100 is not a multiple"),
    (["grid", 0, "levels", "2b", "language_model"], {"hf": "google/gemma-2b-it"}, "grid[0].levels.2b.language_model"),
])
def test_bad_config_names_the_key(path, value, expected):
    raw = broken(path, value)
    if expected is None:
        validate_config(raw)  # dropping a benchmark is allowed
        return
    with pytest.raises(ConfigError) as err:
        validate_config(raw)
    message = str(err.value)
    assert expected in message, message
    assert message.count("\n") == 0


def test_toy_model_settings_are_checked():
    raw = yaml.safe_load((ROOT / "toy.yaml").read_text())  # a tower trained by the workflow, badly specified
    raw["grid"][1]["levels"]["clip"] = {"vision_tower": {"toy": dict(
        architecture="resnet", image_size=48, patch_size=16, hidden_size=96, num_layers=4, num_heads=4, steps=10)}}
    with pytest.raises(ConfigError,
                       match=r"grid\[1\]\.levels\.clip\.vision_tower\.toy\.architecture: 'resnet' is not one of"):
        validate_config(raw)


def test_snakemake_rejects_bad_config_before_any_job(tmp_path):
    raw = broken(["train", "stage1", "learnig_rate"], 0.1)
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(raw))
    result = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--cores", "1", "--configfile", str(bad)],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "unknown key 'train.stage1.learnig_rate'" in result.stderr + result.stdout


@pytest.mark.parametrize(("level", "value", "expected"), [
    # An LM named as a vision tower: caught here, not 55 s later in prepare_dataset with a transformers traceback.
    ([1, "clip", "vision_tower"], {"local": "models/toy-gemma-2b"},
     "grid[1].levels.clip.vision_tower.local: models/toy-gemma-2b is a language model (config.json model_type "
     "'gemma'), not a vision tower (supported: clip, clip_vision_model, dinov2); name a tower checkpoint there"),
    ([0, "2b", "language_model"], {"local": "models/toy-dinov2"},
     "grid[0].levels.2b.language_model.local: models/toy-dinov2 is an image model (config.json model_type "
     "'dinov2'), not a language model"),
    # A missing folder: caught here, not as Snakemake's MissingInputException.
    ([0, "7b", "language_model"], {"local": "models/toy-gemma-13b"},
     "grid[0].levels.7b.language_model.local: folder models/toy-gemma-13b does not exist; fix the path"),
    ([0, "7b", "language_model"], {"local": "docs"},
     "grid[0].levels.7b.language_model.local: docs holds no config.json, so it is not a saved checkpoint"),
])
def test_local_backbones_are_checked_at_validation(level, value, expected):
    i, name, kind = level
    raw = broken(["grid", i, "levels", name, kind], value, base="toy.yaml")
    with pytest.raises(ConfigError) as err:
        validate_config(raw, "toy.yaml")
    assert expected in str(err.value) and "\n" not in str(err.value), str(err.value)


def test_shipped_configs_with_local_backbones_validate():
    for name in ("toy.yaml", "examples/toy-design.yaml"):
        validate_config(load(name), name)
    def merge(base: dict, over: dict) -> dict:  # as Snakemake merges a second configfile, key by key
        for key, value in over.items():
            base[key] = merge(base[key], value) if isinstance(value, dict) and key in base else value
        return base

    validate_config(merge(load("config.yaml"), load("rehearsal.yaml")), "config.yaml rehearsal.yaml")


def test_a_misspelt_required_key_is_named_as_the_typo_with_a_guess():
    raw = copy.deepcopy(load("config.yaml"))
    raw["train"]["stage1"]["learnig_rate"] = raw["train"]["stage1"].pop("learning_rate")  # missing + unknown
    with pytest.raises(ConfigError) as err:
        validate_config(raw)
    assert str(err.value).endswith("unknown key 'train.stage1.learnig_rate' in train.stage1; fix its spelling "
                                   "(did you mean 'learning_rate') or remove it.")
    raw = copy.deepcopy(load("config.yaml"))
    raw["grid"][0]["levels"]["2b"]["languag_model"] = raw["grid"][0]["levels"]["2b"].pop("language_model")
    with pytest.raises(ConfigError, match=r"unknown key 'grid\[0\]\.levels\.2b\.languag_model' in "
                                          r"grid\[0\]\.levels\.2b; did you mean 'language_model' \(a level "
                                          r"overrides only language_model, "):
        validate_config(raw)


def test_a_hub_backbone_of_the_wrong_kind_is_one_sentence_where_it_is_first_read(tmp_path):
    from llava_gemma.model.backbones import VISION_TOWERS
    from llava_gemma.study.backbone_sources import TOWER_MODEL_TYPES, BackboneMismatch, check_role

    assert set(TOWER_MODEL_TYPES) == set(VISION_TOWERS)  # validation's list is the loader's
    folder = tmp_path / "data/models/clip"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text('{"model_type": "gemma"}')
    with pytest.raises(BackboneMismatch, match=r"^the vision_tower of level 'clip': .*clip is a language model "
                                               r"\(config.json model_type 'gemma'\), not a vision tower"):
        check_role(folder, "vision_tower", "the vision_tower of level 'clip'")
    assert check_role(folder, "language_model", "x") == "gemma"


def test_the_before_letters_example_is_toy_yaml_but_for_issue_27s_three_changes():
    """toy.yaml took three changes together (issue 27): the letters LMs, two mix options and 2.5 epochs of
    stage 2. examples/toy-before-letters.yaml is the quick start without them and differs in nothing else,
    so comparing the two measures those changes alone."""
    toy, before = load("toy.yaml"), load("examples/toy-before-letters.yaml")
    validate_config(before, "examples/toy-before-letters.yaml")
    levels = toy["grid"][0]["levels"]
    assert {k: v["language_model"]["local"] for k, v in levels.items()} == {
        "2b": "models/toy-gemma-2b-letters", "7b": "models/toy-gemma-7b-letters"}
    assert {k: v["language_model"]["local"] for k, v in before["grid"][0]["levels"].items()} == {
        "2b": "models/toy-gemma-2b", "7b": "models/toy-gemma-7b"}
    assert all((ROOT / v["language_model"]["local"] / "model.safetensors").is_file() for v in levels.values())
    assert toy["toy_world"] == before["toy_world"] | {"attribute_questions": True, "choice_questions": True}
    assert toy["train"]["stage2"] == before["train"]["stage2"] | {"epochs": 2.5}
    toy["grid"][0], toy["toy_world"], toy["train"]["stage2"] = (
        before["grid"][0], before["toy_world"], before["train"]["stage2"])
    assert toy == before
