"""How well a tower's features tell which shapes a toy scene holds: a linear read-out per shape.

Renders fresh toy scenes, takes the features LLaVA feeds the connector (``vision_feature_layer=-2``,
CLS dropped), fits one logistic read-out per shape ("is there a <shape>?") on 2,000 scenes and
reports balanced accuracy on 1,000 held-out scenes, for the mean over patches, all patch features
side by side, and the raw pixels (what a linear read-out gets without a tower).
``tools/probe_tower.py`` prints it; ``tools/pretrain_toy_towers.py`` writes it into the towers' cards.
"""

from __future__ import annotations

import io
import random

import torch
from PIL import Image
from transformers import AutoConfig, AutoImageProcessor, CLIPVisionModel, Dinov2Model

from . import scenes as sc
from .world import ToyWorldSpec, _jpeg

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


def balanced_accuracy(x: torch.Tensor, y: torch.Tensor, n_train: int = N_TRAIN, steps: int = 500) -> list[float]:
    """One logistic read-out per column of ``y``, fitted on the first ``n_train`` rows, scored on the rest."""
    mean, std = x[:n_train].mean(0), x[:n_train].std(0) + 1e-6
    x = (x - mean) / std
    w = torch.zeros(x.shape[1], y.shape[1], requires_grad=True)
    b = torch.zeros(y.shape[1], requires_grad=True)
    optim = torch.optim.Adam([w, b], lr=1e-2)
    for _ in range(steps):
        logits = x[:n_train] @ w + b
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, y[:n_train]) + 1e-3 * w.pow(2).sum()
        optim.zero_grad()
        loss.backward()
        optim.step()
    with torch.no_grad():
        said, truth = (x[n_train:] @ w + b) > 0, y[n_train:].bool()
    return [(((said[:, k] & truth[:, k]).sum() / truth[:, k].sum()
              + (~said[:, k] & ~truth[:, k]).sum() / (~truth[:, k]).sum()) / 2).item() for k in range(y.shape[1])]


def presence_readout(tower_dir: str, seed: int = 7, per_shape: bool = False, n_train: int = N_TRAIN,
                     n_test: int = N_TEST) -> dict:
    """Mean balanced accuracy over the shapes for the three inputs ("mean", "all", "pixels");
    with ``per_shape`` also each input's list of per-shape accuracies (key + "_shapes")."""
    torch.manual_seed(seed)
    rng, spec = random.Random(seed), ToyWorldSpec(seed=0)
    scenes = [sc.random_scene(rng) for _ in range(n_train + n_test)]
    images = [Image.open(io.BytesIO(_jpeg(s, spec))).convert("RGB") for s in scenes]
    present = torch.tensor([[shape in s.shapes for shape in sc.SHAPES] for s in scenes], dtype=torch.float)
    pixels, feats = tower_features(tower_dir, images)
    out = {}
    for key, x in (("mean", feats.mean(1)), ("all", feats.flatten(1)), ("pixels", pixels.flatten(1))):
        acc = balanced_accuracy(x, present, n_train)
        out[key] = sum(acc) / len(acc)
        if per_shape:
            out[key + "_shapes"] = acc
    return out


def attribute_readout(tower_dir: str, seed: int = 7, n_scenes: int = 3000, n_train_scenes: int = 2000) -> dict:
    """Accuracy of a linear read-out of each object's colour, shape and size from the one patch of its cell.

    A toy tower's 16 px patches are the scenes' grid cells, so an image token carries its cell's object
    whole; whether the attribute is *in* that token is what this asks (the LM must still learn to read
    it). Softmax read-outs fitted on the objects of the first ``n_train_scenes`` scenes, scored on the
    rest; "colour_atypical" is the colour accuracy on objects not wearing their shape's typical colour.
    """
    torch.manual_seed(seed)
    rng, spec = random.Random(seed), ToyWorldSpec(seed=0)
    scenes = [sc.random_scene(rng) for _ in range(n_scenes)]
    images = [Image.open(io.BytesIO(_jpeg(s, spec))).convert("RGB") for s in scenes]
    _, feats = tower_features(tower_dir, images)
    colours = list(sc.COLORS)
    objects = [(i, o) for i, s in enumerate(scenes) for o in s.objects]
    x = torch.stack([feats[i, o.cell] for i, o in objects])
    train = torch.tensor([i < n_train_scenes for i, _ in objects])
    atypical = torch.tensor([o.color != sc.TYPICAL_COLOR[o.shape] for _, o in objects])
    x = (x - x[train].mean(0)) / (x[train].std(0) + 1e-6)
    out = {}
    for name, labels, k in (("colour", [colours.index(o.color) for _, o in objects], len(colours)),
                            ("shape", [sc.SHAPES.index(o.shape) for _, o in objects], len(sc.SHAPES)),
                            ("size", [sc.SIZES.index(o.size) for _, o in objects], len(sc.SIZES))):
        y = torch.tensor(labels)
        read = torch.nn.Linear(x.shape[1], k)
        optim = torch.optim.Adam(read.parameters(), lr=1e-2)
        for _ in range(500):
            loss = torch.nn.functional.cross_entropy(read(x[train]), y[train]) + 1e-4 * read.weight.pow(2).sum()
            optim.zero_grad()
            loss.backward()
            optim.step()
        with torch.no_grad():
            right = (read(x[~train]).argmax(1) == y[~train]).float()
        out[name] = right.mean().item()
        if name == "colour":
            out["colour_atypical"] = right[atypical[~train]].mean().item()
    return out
