"""Tiny vision towers of the real architectures, pretrained on toy scenes with their families' objectives.

- CLIP: a ``CLIPModel`` trained contrastively on (image, caption) pairs;
- DINOv2: a ``Dinov2Model`` trained on images alone, to give two views of a scene the same
  embedding (SimCLR's InfoNCE on the mean of the patch features, through a head that is dropped).

Both add one thing the real towers get from web-scale data: **hard negatives**. Every scene in a
batch comes with a twin that differs in one object's shape only (colour, size and place kept).
Without twins the toy world's shapes mostly wear their typical colour, so colour and place solve
either objective and a linear read-out of "is there a <shape>?" from the features scored no better
than one from raw pixels (0.85 and 0.86 over the eight shapes, ``tools/probe_tower.py``). With
twins a tower must see outlines. Each tower is saved as an ordinary HF folder with its processor.
"""

from __future__ import annotations

import dataclasses
import io
import math
import random
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image
from transformers import (
    AutoTokenizer,
    BitImageProcessor,
    CLIPConfig,
    CLIPImageProcessor,
    CLIPModel,
    Dinov2Config,
    Dinov2Model,
)

from . import scenes as sc
from .pretrain import _tail_mean

OPENAI_CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
OPENAI_CLIP_STD = [0.26862954, 0.26130258, 0.27577711]
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]
RENDER_SIZE = 96  # the toy world's image size (ToyWorldSpec.image_size): towers see what the data holds
JPEG_QUALITY = 90


def tower_processor(spec: dict):
    """The tower's image processor at the toy size, with its family's normalisation."""
    side = spec["image_size"]
    if spec["architecture"] == "clip":
        return CLIPImageProcessor(size={"shortest_edge": side}, crop_size={"height": side, "width": side},
                                  image_mean=OPENAI_CLIP_MEAN, image_std=OPENAI_CLIP_STD)
    # DINOv2's processor resizes then centre-crops; the toy crop keeps the whole square image, so
    # objects in the outer grid cells are not cut (the real 224/256 crop would cut them here).
    return BitImageProcessor(size={"shortest_edge": side}, crop_size={"height": side, "width": side},
                             do_center_crop=True, image_mean=IMAGENET_MEAN, image_std=IMAGENET_STD)


def shape_twin(scene: sc.Scene, rng: random.Random) -> sc.Scene:
    """The scene with one object's shape changed; colour, size and cell stay (a hard negative)."""
    target = rng.randrange(len(scene.objects))
    objects = list(scene.objects)
    old = objects[target]
    objects[target] = dataclasses.replace(old, shape=rng.choice([s for s in sc.SHAPES if s != old.shape]))
    return dataclasses.replace(scene, objects=objects, seed=rng.getrandbits(32))


def second_view(scene: sc.Scene, rng: random.Random) -> sc.Scene:
    """The same content with fresh pixel noise, in-cell jitter and background (a positive view)."""
    grey = rng.randint(25, 80)
    return dataclasses.replace(scene, seed=rng.getrandbits(32), background=(grey, grey, grey))


def _image(scene: sc.Scene) -> Image.Image:
    buf = io.BytesIO()  # through JPEG, as every image of the toy world's datasets
    sc.render(scene, RENDER_SIZE).save(buf, "JPEG", quality=JPEG_QUALITY)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def _pixels(processor, scenes: list[sc.Scene]) -> torch.Tensor:
    return processor([_image(s) for s in scenes], return_tensors="pt").pixel_values


def pretrain_toy_vision_tower(tokenizer_dir: Path, out_dir: Path, spec: dict, seed: int = 0) -> dict:
    """Train one toy tower on ``spec['n_scenes']`` fresh scenes (and their twins); save it to ``out_dir``.

    ``tokenizer_dir`` is the toy tokenizer CLIP's text tower reads captions with (DINOv2 ignores it).
    """
    torch.manual_seed(seed)
    rng = random.Random(seed)
    scenes = [sc.random_scene(rng) for _ in range(spec.get("n_scenes", 4000))]
    twins = [[shape_twin(s, rng) for s in scenes] for _ in range(spec.get("twins", 1))]  # twins[k][i]: scene i's k-th
    processor = tower_processor(spec)
    vision = dict(image_size=spec["image_size"], patch_size=spec["patch_size"], hidden_size=spec["hidden_size"],
                  num_hidden_layers=spec["num_layers"], num_attention_heads=spec["num_heads"])
    if spec["architecture"] == "clip":
        model, module, step_loss = _clip(scenes, twins, processor, tokenizer_dir, vision)
    else:
        model, module, step_loss = _dinov2(scenes, twins, processor, vision, rng, spec.get("temperature", 0.1))
    gen = torch.Generator().manual_seed(seed)
    losses = _optimise(module, step_loss, len(scenes), spec["steps"], spec.get("batch_size", 64),
                       spec.get("learning_rate", 1e-3), gen)
    model.save_pretrained(out_dir, safe_serialization=True)
    processor.save_pretrained(out_dir)
    return {"parameters": model.num_parameters(), "first_loss": losses[0], "final_loss": _tail_mean(losses),
            "scenes": len(scenes)}


def _clip(scenes, twins, processor, tokenizer_dir: Path, vision: dict):
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)

    def text(batch: list[sc.Scene]):
        captions = [sc.caption(s) + tokenizer.eos_token for s in batch]
        return tokenizer(captions, padding="max_length", truncation=True, max_length=48, add_special_tokens=False,
                         return_tensors="pt")

    config = CLIPConfig(
        text_config=dict(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=256, num_hidden_layers=2,
                         num_attention_heads=2, max_position_embeddings=48, pad_token_id=tokenizer.pad_token_id,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id),
        vision_config=dict(intermediate_size=4 * vision["hidden_size"], **vision),
        projection_dim=64,
    )
    model = CLIPModel(config)
    pixels = [_pixels(processor, group) for group in (scenes, *twins)]
    captions = [text(group) for group in (scenes, *twins)]

    def step_loss(idx: torch.Tensor) -> torch.Tensor:
        # A batch of scenes and their twins: each image must pick its caption over its twins'.
        return model(input_ids=torch.cat([c.input_ids[idx] for c in captions]),
                     attention_mask=torch.cat([c.attention_mask[idx] for c in captions]),
                     pixel_values=torch.cat([p[idx] for p in pixels]), return_loss=True).loss

    return model, model, step_loss


def _dinov2(scenes, twins, processor, vision: dict, rng: random.Random, temperature: float):
    model = Dinov2Model(Dinov2Config(mlp_ratio=4, **vision))
    head = torch.nn.Linear(vision["hidden_size"], 64)
    pixels = _pixels(processor, scenes)
    views = _pixels(processor, [second_view(s, rng) for s in scenes])
    twin_pixels = [_pixels(processor, group) for group in twins]

    def embed(p: torch.Tensor) -> torch.Tensor:
        return F.normalize(head(model(pixel_values=p).last_hidden_state[:, 1:].mean(1)), dim=-1)

    def step_loss(idx: torch.Tensor) -> torch.Tensor:
        # Each scene must pick its second view among every view and every twin of the batch.
        anchors, candidates = embed(pixels[idx]), embed(torch.cat([views[idx], *(t[idx] for t in twin_pixels)]))
        return F.cross_entropy(anchors @ candidates.T / temperature, torch.arange(len(idx)))

    return model, torch.nn.ModuleList([model, head]), step_loss


def _optimise(module: torch.nn.Module, step_loss, n: int, steps: int, batch: int, lr: float,
              gen: torch.Generator) -> list[float]:
    optim = torch.optim.AdamW(module.parameters(), lr=lr, weight_decay=0.05)
    warmup = max(1, steps // 10)
    sched = torch.optim.lr_scheduler.LambdaLR(
        optim, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / steps))))
    losses = []
    module.train()
    for _ in range(steps):
        loss = step_loss(torch.randint(n, (batch,), generator=gen))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(module.parameters(), 1.0)
        optim.step()
        sched.step()
        optim.zero_grad()
        losses.append(loss.item())
    return losses

