"""Pretrain the toy study's two vision towers at length and write them to models/ (what toy.yaml installs).

The real study downloads CLIP and DINOv2, towers that already tell objects apart; the toy study's
towers should arrive the same way. Learning to see shapes, not just colours, takes longer than
the toy study's budget, so it is learned once here and shipped (about 2 MB each). Reproduce with:

    OMP_NUM_THREADS=1 python tools/pretrain_toy_towers.py --out models

Each tower trains with its family's objective plus shape-swapped twins as hard negatives
(toy/towers.py) on fresh scenes of the toy world's generator, and its folder gets a model card with
the linear read-out of "is there a <shape>?" from its features (tools/probe_tower.py's measure).
CLIP's text tower reads captions with the shipped 2B LM's tokenizer (models/toy-gemma-2b).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from llava_gemma.toy.readout import presence_readout
from llava_gemma.toy.towers import pretrain_toy_vision_tower

ROOT = Path(__file__).resolve().parents[1]
# 48 px in 16 px patches: one patch per cell of the toy world's 3x3 grid, so 9 image tokens.
COMMON = dict(image_size=48, patch_size=16, hidden_size=96, num_layers=4, num_heads=4, n_scenes=8000,
              batch_size=64, learning_rate=1e-3)
# Steps and twins per tower: the shipped DINOv2 read shapes at 0.906 with one twin over 2,000 steps and
# at 0.921 with three twins over 1,000 (an image-only objective gets less from each negative than CLIP
# does from a caption that names every shape).
TOWERS = {
    "toy-clip": dict(architecture="clip", steps=2000, twins=1, **COMMON),
    "toy-dinov2": dict(architecture="dinov2", steps=1000, twins=3, **COMMON),
}
REAL = {"toy-clip": "openai/clip-vit-large-patch14-336", "toy-dinov2": "facebook/dinov2-large"}

CARD = """---
license: apache-2.0
tags: [toy, {family}, llava-gemma-toy-study]
---
# {name}

A tiny `{cls}` ({parameters:,} parameters{whole}; {image_size} px images in {patch_size} px patches,
so {tokens} patch tokens; hidden {hidden_size}, {num_layers} layers) for the LLaVA-Gemma pipeline's
toy study. It stands in for `{real}`. Written by `tools/pretrain_toy_towers.py` (seed {seed}, {steps}
steps of batch {batch_size} on {n_scenes} fresh toy scenes): {objective}, with {twins} shape-swapped
twin(s) of every scene as hard negatives.

Linear read-out of "is there a <shape>?" from the features LLaVA feeds the connector (layer -2,
CLS dropped), balanced accuracy over the eight shapes on held-out scenes: {readout:.3f} (mean of the
patch features), {readout_all:.3f} (all patch features); raw pixels give {readout_pixels:.3f}.
"""
OBJECTIVES = {
    "clip": "contrastive (image, caption) pairs",
    "dinov2": "images only, InfoNCE between two renderings of a scene (fresh noise, jitter, background)",
}


def write_card(folder: Path, name: str) -> None:
    """The folder's README.md, from the pretraining.json the run wrote beside the weights."""
    run = json.loads((folder / "pretraining.json").read_text())
    spec, readout = run["spec"], run["linear_readout"]
    family = spec["architecture"]
    (folder / "README.md").write_text(CARD.format(
        name=name, family=family, cls="CLIPModel" if family == "clip" else "Dinov2Model",
        whole=", with its text tower; LLaVA uses the vision tower" if family == "clip" else "",
        real=REAL[name], tokens=(spec["image_size"] // spec["patch_size"]) ** 2, objective=OBJECTIVES[family],
        readout=readout["mean"], readout_all=readout["all"], readout_pixels=readout["pixels"],
        parameters=run["parameters"], seed=run["seed"], **spec))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "models")
    ap.add_argument("--steps", type=int, default=None, help="override every tower's steps")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", nargs="*", default=list(TOWERS), choices=list(TOWERS))
    ap.add_argument("--card-only", action="store_true", help="only rewrite the model cards of existing folders")
    args = ap.parse_args()
    tokenizer = ROOT / "models" / "toy-gemma-2b"
    for name in args.only:
        if not args.card_only:
            spec = {**TOWERS[name], **({"steps": args.steps} if args.steps else {})}
            start = time.time()
            report = pretrain_toy_vision_tower(tokenizer, args.out / name, spec, seed=args.seed)
            report["wall_seconds"] = round(time.time() - start, 1)
            report["linear_readout"] = {k: round(v, 4) for k, v in presence_readout(str(args.out / name)).items()}
            (args.out / name / "pretraining.json").write_text(
                json.dumps({"spec": spec, "seed": args.seed, **report}, indent=1) + "\n")
            print(name, json.dumps(report))
        write_card(args.out / name, name)


if __name__ == "__main__":
    main()
