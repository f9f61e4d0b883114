"""Shared fixtures: tiny backbones built locally (no hub), through the toy world's own code."""

from __future__ import annotations

import io
import json
import random
import zipfile
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]
COLOURS = {"red": (220, 30, 30), "blue": (30, 60, 220), "green": (30, 180, 60)}
TINY_LM = dict(hidden_size=32, num_layers=1, num_heads=2, head_dim=16, intermediate_size=64, steps=2)
TINY_TOWERS = {
    "clip": dict(architecture="clip", image_size=32, patch_size=8, hidden_size=32, num_layers=2, num_heads=2, steps=2),
    "dinov2": dict(architecture="dinov2", image_size=24, patch_size=8, hidden_size=32, num_layers=2, num_heads=2,
                   steps=2),
}


def draw_scene(colour: str, size: int = 48) -> Image.Image:
    img = Image.new("RGB", (size, size), (40, 40, 40))
    ImageDraw.Draw(img).ellipse((8, 8, size - 8, size - 8), fill=COLOURS[colour])
    return img


def write_caption_set(root: Path, n: int = 24) -> tuple[Path, Path]:
    """A few image-caption pairs in LLaVA-CC3M-Pretrain-595K's format (chat.json + images.zip)."""
    rng = random.Random(0)
    records = []
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for i in range(n):
            colour = rng.choice(list(COLOURS))
            name = f"GCC_train_{i:09d}.jpg"
            img_bytes = io.BytesIO()
            draw_scene(colour).save(img_bytes, format="JPEG")
            zf.writestr(name, img_bytes.getvalue())
            records.append({"id": name[:-4], "image": name, "conversations": [
                {"from": "human", "value": "Give a brief description of the image.\n<image>"},
                {"from": "gpt", "value": f"a {colour} circle."}]})
    root.mkdir(parents=True, exist_ok=True)
    (root / "chat.json").write_text(json.dumps(records))
    (root / "images.zip").write_bytes(buf.getvalue())
    return root / "chat.json", root / "images.zip"


@pytest.fixture(scope="session")
def tiny_backbones(tmp_path_factory) -> dict[str, Path]:
    """A toy tokenizer, a tiny Gemma LM and tiny CLIP and DINOv2 towers, saved as HF folders."""
    from llava_gemma.toy.pretrain import pretrain_toy_language_model
    from llava_gemma.toy.tokenizer import train_toy_tokenizer
    from llava_gemma.toy.towers import pretrain_toy_vision_tower

    root = tmp_path_factory.mktemp("backbones")
    write_caption_set(root / "captions")
    lines = [f"a {c} circle." for c in COLOURS] * 5 + ["Is there a circle in the image? Yes No",
                                                       "Answer the question using a single word or phrase."]
    (root / "corpus.txt").write_text("\n".join(lines) + "\n")
    train_toy_tokenizer(lines, root / "tokenizer", vocab_size=300)
    paths = {"tokenizer": root / "tokenizer", "captions": root / "captions", "lm": root / "lm"}
    pretrain_toy_language_model(root / "corpus.txt", root / "tokenizer", root / "lm", TINY_LM)
    for name, spec in TINY_TOWERS.items():
        pretrain_toy_vision_tower(root / "tokenizer", root / name, {**spec, "n_scenes": 16, "batch_size": 8})
        paths[name] = root / name
    return paths


# What Snakemake reads from a clone: the Snakefile, the rules, schemas and captions, the conda environment
# files the rules name, and the shipped toy backbones (`local:` sources).
WORKFLOW_PARTS = ("Snakefile", "workflow", "envs", "models")


def copy_workflow(workdir: Path) -> Path:
    """``workdir`` made into a clone of the workflow (without the Python caches); returns it."""
    import shutil

    for part in WORKFLOW_PARTS:
        source = ROOT / part
        if source.is_dir():
            shutil.copytree(source, workdir / part, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy2(source, workdir / part)
    return workdir


@pytest.fixture(scope="session")
def reduced_study(tmp_path_factory) -> Path:
    """The reduced toy study run once to Table 1 with `--cores 2`; the workflow and SLURM tests read it
    (and must not change it)."""
    import yaml

    from tests.test_workflow import reduced_toy_config, snakemake

    # A clone's layout (the workflow and the shipped models beside data/ and results/), as a user runs the quick
    # start, so tests/test_reruns.py can copy and move the whole of it.
    workdir = copy_workflow(tmp_path_factory.mktemp("reduced_study"))
    (workdir / "config.yaml").write_text(yaml.safe_dump(reduced_toy_config()))
    run = snakemake(workdir)
    assert run.returncode == 0, run.stderr[-4000:]
    return workdir


@pytest.fixture(scope="session")
def rehearsal_mirror(tmp_path_factory) -> Path:
    """Stand-ins of every source config.yaml names (llava-gemma rehearse build), built once per session."""
    from llava_gemma.rehearsal.build import build_mirror

    root = tmp_path_factory.mktemp("mirror")
    build_mirror(root, ROOT / "config.yaml")
    return root
