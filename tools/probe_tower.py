"""Diagnostic: can a linear read-out find which shapes a toy scene holds in a tower's features?

Renders fresh toy scenes, takes the features LLaVA feeds the connector (``vision_feature_layer=-2``,
CLS dropped), and fits one logistic read-out per shape ("is there a <shape>?") on 2,000 scenes.
It prints balanced accuracy on 1,000 held-out scenes for three inputs: the mean over patches, all
patch features side by side, and the raw pixels (what a linear read-out gets without a tower).
Usage (a tower of a finished toy run):

    python tools/probe_tower.py --tower data/models/clip
"""

from __future__ import annotations

import argparse
import io
import random

import torch
from llava_gemma.toy import scenes as sc
from llava_gemma.toy.world import ToyWorldSpec, _jpeg
from PIL import Image
from transformers import AutoConfig, AutoImageProcessor, CLIPVisionModel, Dinov2Model

N_TRAIN, N_TEST = 2000, 1000


def tower_features(tower_dir: str, images: list[Image.Image]) -> tuple[torch.Tensor, torch.Tensor]:
    """(pixels, patch features of layer -2 without CLS) for ``images``."""
    family = AutoConfig.from_pretrained(tower_dir).model_type
    model = (CLIPVisionModel if family == "clip" else Dinov2Model).from_pretrained(tower_dir).eval()
    pixels = AutoImageProcessor.from_pretrained(tower_dir)(images, return_tensors="pt").pixel_values
    with torch.no_grad():
        feats = [model(pixel_values=chunk, output_hidden_states=True).hidden_states[-2][:, 1:]
                 for chunk in pixels.split(256)]
    return pixels, torch.cat(feats)


def balanced_accuracy(x: torch.Tensor, y: torch.Tensor, steps: int = 500) -> list[float]:
    """One logistic read-out per column of ``y``, fitted on the first N_TRAIN rows."""
    mean, std = x[:N_TRAIN].mean(0), x[:N_TRAIN].std(0) + 1e-6
    x = (x - mean) / std
    w = torch.zeros(x.shape[1], y.shape[1], requires_grad=True)
    b = torch.zeros(y.shape[1], requires_grad=True)
    optim = torch.optim.Adam([w, b], lr=1e-2)
    for _ in range(steps):
        logits = x[:N_TRAIN] @ w + b
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, y[:N_TRAIN]) + 1e-3 * w.pow(2).sum()
        optim.zero_grad()
        loss.backward()
        optim.step()
    with torch.no_grad():
        said, truth = (x[N_TRAIN:] @ w + b) > 0, y[N_TRAIN:].bool()
    return [(((said[:, k] & truth[:, k]).sum() / truth[:, k].sum()
              + (~said[:, k] & ~truth[:, k]).sum() / (~truth[:, k]).sum()) / 2).item() for k in range(y.shape[1])]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tower", required=True)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    rng, spec = random.Random(args.seed), ToyWorldSpec(seed=0)
    scenes = [sc.random_scene(rng) for _ in range(N_TRAIN + N_TEST)]
    images = [Image.open(io.BytesIO(_jpeg(s, spec))).convert("RGB") for s in scenes]
    present = torch.tensor([[shape in s.shapes for shape in sc.SHAPES] for s in scenes], dtype=torch.float)
    pixels, feats = tower_features(args.tower, images)
    print(f"{args.tower}: {feats.shape[1]} patch features of {feats.shape[2]} per image")
    for name, x in (("mean of patches", feats.mean(1)), ("all patches", feats.flatten(1)),
                    ("raw pixels", pixels.flatten(1))):
        acc = balanced_accuracy(x, present)
        shapes = " ".join(f"{s} {a:.2f}" for s, a in zip(sc.SHAPES, acc))
        print(f"{name:16s} mean {sum(acc) / len(acc):.3f}  ({shapes})")


if __name__ == "__main__":
    main()
