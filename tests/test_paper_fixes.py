"""Fixes the paper rehearsal called for: .bin-only checkpoints, study stamps, GQA's shared images."""

from __future__ import annotations

import json

import pytest
import torch
from llava_gemma.data.weights import CheckpointError, convert_bin_checkpoint
from llava_gemma.eval.benchmarks import get_benchmark
from llava_gemma.study.stamp import StudyMismatch, check_study_folders, stamp_study_folders
from safetensors.torch import load_file


def test_a_bin_checkpoint_becomes_safetensors_with_shared_tensors_untied(tmp_path):
    weight = torch.randn(4, 3)
    torch.save({"a.weight": weight, "b.weight": weight, "c": torch.arange(6).view(2, 3).t()},
               tmp_path / "pytorch_model.bin")
    assert convert_bin_checkpoint(tmp_path) == [tmp_path / "model.safetensors"]
    state = load_file(tmp_path / "model.safetensors")
    assert torch.equal(state["a.weight"], weight) and torch.equal(state["b.weight"], weight)
    assert torch.equal(state["c"], torch.arange(6).view(2, 3).t())
    assert not (tmp_path / "pytorch_model.bin").exists()


def test_a_sharded_bin_checkpoint_keeps_its_index(tmp_path):
    torch.save({"x": torch.ones(2)}, tmp_path / "pytorch_model-00001-of-00002.bin")
    torch.save({"y": torch.zeros(3)}, tmp_path / "pytorch_model-00002-of-00002.bin")
    (tmp_path / "pytorch_model.bin.index.json").write_text(json.dumps({"metadata": {"total_size": 20}, "weight_map": {
        "x": "pytorch_model-00001-of-00002.bin", "y": "pytorch_model-00002-of-00002.bin"}}))
    convert_bin_checkpoint(tmp_path)
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    assert index["weight_map"] == {"x": "model-00001-of-00002.safetensors", "y": "model-00002-of-00002.safetensors"}
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors", "model.safetensors.index.json"]


def test_a_pickle_with_code_is_refused_in_one_sentence(tmp_path):
    torch.save({"w": torch.ones(1), "fn": _Custom()}, tmp_path / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="cannot be read as plain tensors"):
        convert_bin_checkpoint(tmp_path)


class _Custom:  # any non-tensor global: weights_only=True refuses to unpickle it
    pass


def test_a_study_refuses_another_studys_folders(tmp_path):
    check_study_folders(tmp_path, "llava-gemma-paper")  # checking alone writes nothing
    assert not (tmp_path / "data").exists()
    stamp_study_folders(tmp_path, "llava-gemma-toy")
    assert (tmp_path / "data" / "STUDY").read_text() == "llava-gemma-toy\n"
    stamp_study_folders(tmp_path, "llava-gemma-toy")  # the same study again: fine
    for refuse in (check_study_folders, stamp_study_folders):
        with pytest.raises(StudyMismatch, match=r"'llava-gemma-toy'.*not of 'llava-gemma-paper'"):
            refuse(tmp_path, "llava-gemma-paper")


def test_gqa_reads_the_images_unpacked_for_the_mix(tmp_path):
    from PIL import Image

    raw = tmp_path / "raw"
    gqa = raw / "benchmarks" / "gqa"
    gqa.mkdir(parents=True)
    (gqa / "testdev_balanced_questions.json").write_text(json.dumps({"q1": {
        "imageId": "n161313", "question": "Is it red?", "answer": "yes", "isBalanced": True,
        "types": {"structural": "verify", "semantic": "attr", "detailed": "colorVerify"}}}))
    images = raw / "llava_instruct" / "images" / "gqa" / "images"  # config.yaml: gqa_images.zip into .../gqa
    images.mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(images / "n161313.jpg")
    [question] = get_benchmark("gqa").load(gqa)
    assert question.image_path.resolve() == (images / "n161313.jpg").resolve()


def test_the_paper_workflow_refuses_a_toy_clones_folders(tmp_path):
    import subprocess
    import sys

    from tests.conftest import ROOT

    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "STUDY").write_text("llava-gemma-toy\n")
    done = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--cores", "1", "-s", str(ROOT / "Snakefile"),
                           "--directory", str(tmp_path), "--configfile", str(ROOT / "config.yaml")],
                          capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode != 0
    assert "holds files of study 'llava-gemma-toy'" in done.stdout + done.stderr
