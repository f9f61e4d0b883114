"""Tiny backbones of the real architectures, briefly pretrained on the toy world.

They stand for the study's checkpoints, so the toy study's numbers mean something:
- language models: ``GemmaForCausalLM`` trained as a causal LM on the toy text corpus;
- CLIP: a ``CLIPModel`` trained contrastively on the toy image-caption pairs;
- DINOv2: a ``Dinov2Model`` trained with an image-only objective, masked-patch prediction
  (iBOT's masked-image-modelling half, predicting normalised pixels instead of a teacher).
Each is saved as an ordinary HF folder, like the hub checkpoint it replaces.
"""

from __future__ import annotations

import io
import json
import math
import random
import zipfile
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
    GemmaConfig,
    GemmaForCausalLM,
)

OPENAI_CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
OPENAI_CLIP_STD = [0.26862954, 0.26130258, 0.27577711]
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


def pretrain_toy_language_model(corpus: Path, tokenizer_dir: Path, out_dir: Path, spec: dict, seed: int = 0) -> dict:
    """A toy Gemma trained on two objectives at once, each averaged over its own batch.

    - next-token prediction on the toy corpus (packed blocks of 64 tokens), so the LM can write
      captions and answers;
    - in-context look-up (``toy/lookup.py``): questions answered only by an earlier caption, with
      the loss on the answer alone. Kept in its own batch so the answer is not one token among
      hundreds (that dilution alone held the look-up at chance in the measurements).
    ``lookup_batch_size: 0`` turns the second objective off (a plain LM, as before).
    """
    from llava_gemma.model.chat import END_OF_TURN

    from .lookup import answer_loss, draw_examples, encode_examples, existence_accuracy

    torch.manual_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    config = GemmaConfig(
        vocab_size=len(tokenizer), hidden_size=spec["hidden_size"], intermediate_size=spec["intermediate_size"],
        num_hidden_layers=spec["num_layers"], num_attention_heads=spec["num_heads"],
        num_key_value_heads=spec.get("num_kv_heads", 1),  # 1 = multi-query attention, as Gemma 2B
        head_dim=spec["head_dim"], max_position_embeddings=1024, pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, tie_word_embeddings=True,
    )
    model = GemmaForCausalLM(config)
    lines = [line.strip() for line in corpus.read_text().splitlines() if line.strip()]
    ids = tokenizer(lines, add_special_tokens=False).input_ids
    stream = []
    for row in ids:  # pack documents: <bos> text <eos> ...
        stream += [tokenizer.bos_token_id, *row, tokenizer.eos_token_id]
    block = 64
    data = torch.tensor(stream[: len(stream) // block * block]).view(-1, block)
    steps, lr = spec["steps"], spec.get("learning_rate", 1e-3)
    lm_batch, lookup_batch = spec.get("lm_batch_size", 16), spec.get("lookup_batch_size", 32)
    # No weight decay and a cosine schedule from a modest peak: the earlier recipe (3e-3, one-cycle)
    # left attention saturated (entropy about 1 nat), and a saturated head has no gradient to learn with.
    optim = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    warmup = max(1, min(20, steps // 10))
    sched = torch.optim.lr_scheduler.LambdaLR(
        optim, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / steps))))
    gen = torch.Generator().manual_seed(seed)
    rng = random.Random(seed)
    lm_losses, lookup_losses = [], []
    model.train()
    for _ in range(steps):
        batch = data[torch.randint(len(data), (lm_batch,), generator=gen)]
        loss = model(input_ids=batch, labels=batch).loss
        lm_losses.append(loss.item())
        if lookup_batch:
            batch = encode_examples(tokenizer, draw_examples(rng, lookup_batch), END_OF_TURN)
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            lookup_loss = answer_loss(logits, batch["labels"])
            lookup_losses.append(lookup_loss.item())
            loss = loss + lookup_loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optim.step()
        sched.step()
        optim.zero_grad()
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    report = {"parameters": model.num_parameters(), "first_loss": lm_losses[0], "final_loss": _tail_mean(lm_losses)}
    if lookup_losses:
        report |= {"final_lookup_loss": _tail_mean(lookup_losses),
                   "lookup_accuracy": existence_accuracy(model, tokenizer)}  # unseen captions, balanced
    return report


def _caption_pairs(chat_json: Path, images_zip: Path) -> tuple[list[tuple[Image.Image, str]], int]:
    """(image, caption) of every usable record, and how many were skipped: the toy world holds a few
    spoiled records on purpose (toy/spoiled.py), which a tower trains without, as `prepare` drops them."""
    pairs, skipped = [], 0
    with zipfile.ZipFile(images_zip) as archive:
        names = set(archive.namelist())
        for r in json.loads(chat_json.read_text()):
            turns = r.get("conversations") or []
            if r.get("image") not in names or len(turns) < 2 or not isinstance(turns[1].get("value"), str):
                skipped += 1
                continue
            try:
                image = Image.open(io.BytesIO(archive.read(r["image"])))
                image.load()
            except (OSError, SyntaxError, ValueError):  # truncated or undecodable bytes
                skipped += 1
                continue
            pairs.append((image.convert("RGB"), turns[1]["value"]))
    return pairs, skipped


def _tower_processor(spec: dict):
    side = spec["image_size"]
    if spec["architecture"] == "clip":
        return CLIPImageProcessor(size={"shortest_edge": side}, crop_size={"height": side, "width": side},
                                  image_mean=OPENAI_CLIP_MEAN, image_std=OPENAI_CLIP_STD)
    # DINOv2 resizes to 256/224 of the crop, then centre-crops, with ImageNet statistics.
    return BitImageProcessor(size={"shortest_edge": round(side * 256 / 224)}, crop_size={"height": side, "width": side},
                             do_center_crop=True, image_mean=IMAGENET_MEAN, image_std=IMAGENET_STD)


def pretrain_toy_vision_tower(chat_json: Path, images_zip: Path, tokenizer_dir: Path, out_dir: Path,
                              spec: dict, seed: int = 0) -> dict:
    torch.manual_seed(seed)
    random.seed(seed)
    pairs, skipped = _caption_pairs(chat_json, images_zip)
    processor = _tower_processor(spec)
    pixels = processor([img for img, _ in pairs], return_tensors="pt").pixel_values
    vision = dict(image_size=spec["image_size"], patch_size=spec["patch_size"], hidden_size=spec["hidden_size"],
                  num_hidden_layers=spec["num_layers"], num_attention_heads=spec["num_heads"])
    if spec["architecture"] == "clip":
        losses, model = _train_clip(pixels, [c for _, c in pairs], tokenizer_dir, vision, spec["steps"], seed)
    else:
        losses, model = _train_dinov2(pixels, vision, spec["steps"], seed)
    model.save_pretrained(out_dir, safe_serialization=True)
    processor.save_pretrained(out_dir)
    return {"parameters": model.num_parameters(), "first_loss": losses[0], "final_loss": _tail_mean(losses),
            "pairs": len(pairs), "skipped_records": skipped}


def _train_clip(pixels, captions, tokenizer_dir, vision: dict, steps: int, seed: int):
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    text = tokenizer([c + tokenizer.eos_token for c in captions], padding="max_length", truncation=True,
                     max_length=48, add_special_tokens=False, return_tensors="pt")
    config = CLIPConfig(
        text_config=dict(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=256, num_hidden_layers=2,
                         num_attention_heads=2, max_position_embeddings=48, pad_token_id=tokenizer.pad_token_id,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id),
        vision_config=dict(intermediate_size=4 * vision["hidden_size"], **vision),
        projection_dim=64,
    )
    model = CLIPModel(config)
    gen = torch.Generator().manual_seed(seed)

    def step_loss(idx):
        return model(input_ids=text.input_ids[idx], attention_mask=text.attention_mask[idx],
                     pixel_values=pixels[idx], return_loss=True).loss

    return _optimise(model, step_loss, len(pixels), steps, gen), model


def _train_dinov2(pixels, vision: dict, steps: int, seed: int):
    config = Dinov2Config(mlp_ratio=4, **vision)
    model = Dinov2Model(config)
    patch = vision["patch_size"]
    head = torch.nn.Linear(vision["hidden_size"], 3 * patch * patch)
    # Targets: each patch's pixels, normalised per patch (as MAE does) so the model learns shape, not brightness.
    targets = F.unfold(pixels, kernel_size=patch, stride=patch).transpose(1, 2)
    targets = (targets - targets.mean(-1, keepdim=True)) / (targets.std(-1, keepdim=True) + 1e-6)
    n_patches = targets.shape[1]
    gen = torch.Generator().manual_seed(seed)

    def step_loss(idx):
        mask = torch.rand(len(idx), n_patches, generator=gen) < 0.4
        hidden = model(pixel_values=pixels[idx], bool_masked_pos=mask).last_hidden_state[:, 1:]
        return F.mse_loss(head(hidden)[mask], targets[idx][mask])

    wrapper = torch.nn.ModuleList([model, head])  # optimise the head with the tower
    return _optimise(wrapper, step_loss, len(pixels), steps, gen), model


def _optimise(module: torch.nn.Module, step_loss, n: int, steps: int, gen: torch.Generator) -> list[float]:
    optim = torch.optim.AdamW(module.parameters(), lr=1e-3, weight_decay=0.05)
    sched = torch.optim.lr_scheduler.OneCycleLR(optim, max_lr=1e-3, total_steps=steps, pct_start=0.1)
    losses = []
    module.train()
    for _ in range(steps):
        loss = step_loss(torch.randint(n, (64,), generator=gen))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(module.parameters(), 1.0)
        optim.step()
        sched.step()
        optim.zero_grad()
        losses.append(loss.item())
    return losses


def _tail_mean(losses: list[float], k: int = 20) -> float:
    tail = losses[-k:]
    return sum(tail) / len(tail)
