"""Diagnostic: how fast does an assembled toy LLaVA learn to answer "Is there a <shape> in the image?"

Toy POPE can only be beaten by looking up the asked shape among the image tokens. This script
trains one assembled model (toy LM + toy tower + fresh connector, all of it but the tower trainable,
as in stage 2) on balanced existence probes alone (toy/scenes.py: ExistenceProbes, so the shape's
name never predicts the answer) and prints held-out accuracy with real and with blank images every
50 steps. The answer token's loss is the only loss: this is the easiest setting a cell could get.

- ``--only circle`` asks about one shape only: the image alone decides, no look-up is needed.
- ``--oracle`` replaces the tower's features by a learned embedding of each grid cell's true
  shape (perfect object features): what is left to learn is the LM's look-up.

Usage (the models of a finished toy run):

    python tools/probe_lookup.py --lm data/models/2b --tower data/models/clip [--oracle] [--only circle]
        [--lr 1e-4 --connector-lr 1e-3]
"""

from __future__ import annotations

import argparse
import io
import random
import time

import torch
from llava_gemma.model.assemble import assemble_llava
from llava_gemma.toy import scenes as sc
from llava_gemma.toy.world import SHORT_ANSWER, ToyWorldSpec, _jpeg
from PIL import Image

Item = tuple[Image.Image, str, bool, sc.Scene]  # image, question, answer is yes, scene


def probe_items(n_scenes: int, seed: int, only: str | None) -> list[Item]:
    rng, probes, spec, items = random.Random(seed), sc.ExistenceProbes(), ToyWorldSpec(seed=0), list[Item]()
    for _ in range(n_scenes):
        scene = sc.random_scene(rng)
        image = Image.open(io.BytesIO(_jpeg(scene, spec))).convert("RGB")
        for qa in probes(scene, rng, k=1):
            if only is None or f" {only} " in qa.question:
                items.append((image, qa.question, qa.answer == "Yes", scene))
    return items


class Probe:
    def __init__(self, args: argparse.Namespace) -> None:
        self.model, self.processor = assemble_llava(args.lm, args.tower)
        self.processor.tokenizer.padding_side = "left"
        tok = self.processor.tokenizer
        self.yes, self.no = (tok.encode(w, add_special_tokens=False)[0] for w in ("Yes", "No"))
        hidden = self.model.config.text_config.hidden_size
        # Index 0 = empty cell; the tower's 16 image tokens take the 9 grid cells' labels, then zeros.
        self.oracle = torch.nn.Embedding(len(sc.SHAPES) + 1, hidden) if args.oracle else None

    def logits(self, items: list[Item], blind: bool = False) -> torch.Tensor:
        texts = [self.processor.apply_chat_template(
            [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": q + SHORT_ANSWER}]}],
            add_generation_prompt=True) for _, q, _, _ in items]
        images = [Image.new("RGB", im.size, (128, 128, 128)) if blind else im for im, _, _, _ in items]
        inputs = self.processor(images=images, text=texts, return_tensors="pt", padding=True)
        if self.oracle is None:
            return self.model(**inputs).logits[:, -1]
        ids = inputs["input_ids"]
        embeds = self.model.get_input_embeddings()(ids).clone()
        for row, (_, _, _, scene) in enumerate(items):
            labels = [0] * 16
            if not blind:
                for o in scene.objects:
                    labels[o.cell] = 1 + sc.SHAPES.index(o.shape)
            slots = (ids[row] == self.model.config.image_token_index).nonzero().flatten()
            embeds[row, slots] = self.oracle(torch.tensor(labels[: len(slots)]))
        hidden = self.model.model.language_model(inputs_embeds=embeds, attention_mask=inputs["attention_mask"])
        return hidden.last_hidden_state[:, -1] @ self.model.lm_head.weight.T

    def targets(self, items: list[Item]) -> torch.Tensor:
        return torch.tensor([self.yes if y else self.no for _, _, y, _ in items])

    @torch.no_grad()
    def accuracy(self, items: list[Item], blind: bool) -> tuple[float, float]:
        self.model.eval()
        logits = self.logits(items, blind)
        self.model.train()
        says_yes = logits[:, self.yes] > logits[:, self.no]
        truth = torch.tensor([y for _, _, y, _ in items])
        return (says_yes == truth).float().mean().item(), says_yes.float().mean().item()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lm", required=True)
    ap.add_argument("--tower", required=True)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1e-3, help="the LM's learning rate")
    ap.add_argument("--connector-lr", type=float, default=None,
                    help="the connector's (and oracle embedding's) learning rate (default: --lr)")
    ap.add_argument("--only", help="ask about this shape only")
    ap.add_argument("--oracle", action="store_true", help="perfect object features instead of the tower's")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    probe = Probe(args)
    train = probe_items(2500, 1, args.only)
    held_out = probe_items(150 if args.only is None else 1200, 2, args.only)
    model = probe.model
    model.requires_grad_(False)
    model.model.multi_modal_projector.requires_grad_(True)
    model.model.language_model.requires_grad_(True)
    adapter = [*model.model.multi_modal_projector.parameters(),
               *(probe.oracle.parameters() if probe.oracle is not None else ())]
    lm = list(model.model.language_model.parameters())
    params = lm + adapter
    optim = torch.optim.AdamW([{"params": lm, "lr": args.lr},
                               {"params": adapter, "lr": args.connector_lr or args.lr}], weight_decay=0.0)
    warmup = torch.optim.lr_scheduler.LambdaLR(optim, lambda s: min(1.0, (s + 1) / 10))
    rng, start = random.Random(args.seed), time.time()
    print(f"{len(train)} training probes, {len(held_out)} held out; chance is 0.500")
    for step in range(1, args.steps + 1):
        batch = rng.sample(train, args.batch_size)
        loss = torch.nn.functional.cross_entropy(probe.logits(batch), probe.targets(batch))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optim.step()
        warmup.step()
        optim.zero_grad()
        if step % 50 == 0:
            (seeing, yes), (blind, _) = probe.accuracy(held_out, False), probe.accuracy(held_out, True)
            print(f"step {step:4d}  loss {loss.item():.3f}  accuracy {seeing:.3f} (says yes {yes:.2f})"
                  f"  blank images {blind:.3f}  {time.time() - start:.0f} s", flush=True)


if __name__ == "__main__":
    main()
