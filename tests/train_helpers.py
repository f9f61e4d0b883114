"""A tiny stage-1 training set and the `llava-gemma` command lines that train on it (launch and resume tests)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

from safetensors.torch import load_file

# Settings the rules would pass: fp32 on CPU so two runs can be compared closely.
STAGE = dict(learning_rate=1.0e-3, warmup_ratio=0.0, weight_decay=0.0, lr_scheduler="cosine", zero_stage=2,
             epochs=1)


def prepare_captions(backbones: dict[str, Path], root: Path) -> tuple[Path, Path]:
    """The fixture's caption pairs, prepared for stage 1: (prepared folder, image folder)."""
    from llava_gemma.data.prepare import prepare_dataset
    from llava_gemma.model.assemble import prepare_tokenizer

    images = root / "images"
    with zipfile.ZipFile(backbones["captions"] / "images.zip") as zf:
        zf.extractall(images)
    prepared = root / "prepared"
    prepare_dataset(backbones["captions"] / "chat.json", images, prepare_tokenizer(backbones["lm"]), prepared,
                    fmt="plain", max_length=64, image_tokens=16, default_source="cc3m", max_drop_fraction=0.5,
                    workers=1)
    return prepared, images


def train_argv(backbones: dict[str, Path], prepared: Path, images: Path, out: Path, *, per_device: int,
               global_batch: int, max_steps: int | None = None, save_steps: int = 0, seed: int = 3) -> list[str]:
    stage = dict(STAGE, global_batch_size=global_batch, per_device_batch_size=per_device)
    if max_steps:
        stage["max_steps"] = max_steps
    settings = dict(stage=stage, backend="cpu", precision="fp32", seed=seed, save_steps=save_steps)
    return ["train", "--stage", "stage1", "--lm", str(backbones["lm"]), "--tower", str(backbones["clip"]),
            "--data", str(prepared), "--image_root", str(images), "--out", str(out / "out"),
            "--work", str(out / "work"), "--settings", json.dumps(settings)]


def llava_gemma(*argv: str) -> list[str]:
    return [sys.executable, "-m", "llava_gemma", *argv]


def quiet_env(**extra: str) -> dict[str, str]:
    """One thread per process (2 cores shared), no hub, and no launcher variables from outside."""
    launcher_vars = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "LLAVA_GEMMA_LAUNCHER")
    env = {k: v for k, v in os.environ.items() if k not in launcher_vars and not k.startswith("SLURM_")}
    return env | {"OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"} | extra


def run(argv: list[str], timeout: int = 300, **env: str) -> subprocess.CompletedProcess:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=quiet_env(**env))
    assert done.returncode == 0, done.stderr[-4000:]
    return done


def trained(out: Path) -> tuple[dict, dict]:
    """(train_metrics.json, connector weights) of a finished stage-1 run."""
    metrics = json.loads((out / "out" / "train_metrics.json").read_text())
    return metrics, load_file(out / "out" / "connector.safetensors")


def losses(out: Path) -> list[float]:
    lines = (out / "out" / "train_log.jsonl").read_text().splitlines()
    return [entry["loss"] for entry in map(json.loads, lines) if "loss" in entry]


def rank_results(output: str) -> list[dict]:
    """The training result each rank printed (one JSON object per process) in a shared output."""
    decoder, found, i = json.JSONDecoder(), [], 0
    while (i := output.find("{\n", i)) >= 0:
        try:
            obj, end = decoder.raw_decode(output, i)
        except json.JSONDecodeError:
            i += 2
            continue
        if isinstance(obj, dict) and "final_loss" in obj:
            found.append(obj)
        i = end
    return found
