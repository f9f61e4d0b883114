"""The lettered-answer curriculum: toy LMs that pick an option's letter from a caption (issue 27).

Real Gemma-it arrives at LLaVA answering "A. ... B. ... Answer with the option's letter" with a
letter; the toy LMs of ``tools/pretrain_toy_lms.py`` learned only look-ups and answer such questions
with a word. Training on lettered questions alone leaves them at chance for thousands of steps (the
letter stands before its option, so three steps must all work before any is rewarded;
docs/toy-study.md). What moves them is to start from "which of these shapes is in the image?"
(``pick``, the existence look-up with letters) and shift toward full lettered questions (``choice``),
with attribute yes/no (``verify``) alongside and captions to repeat (``describe``) so the look-up stays.
Measured on the shipped LMs (first-token accuracy on 200 unseen captions, a uniform guess 0.394):
docs/toy-study.md, "Third attempt".

Only look-up examples, no corpus objective: the LMs already learned the toy world's text.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence

import torch

from llava_gemma.model.chat import END_OF_TURN

from . import lookup

Phase = tuple[int, dict[str, float]]  # steps, shares of toy/lookup.py kinds (existence takes the rest)

LETTERS: tuple[Phase, ...] = (
    (2500, {"pick": 0.2, "choice": 0.5, "verify": 0.1, "describe": 0.05}),
    (2500, {"pick": 0.1, "choice": 0.7, "verify": 0.1}),
    (3000, {"pick": 0.05, "choice": 0.7, "verify": 0.1, "describe": 0.05}),
)
# The peak learning rate for both LMs. At 1e-3 the 7B lost its existence look-up (0.99 -> 0.46 in 1,500
# steps, with lettered choice and pick at chance) and the 2B ended lower (lettered choice 0.51 against 0.66
# at 5,000 steps, existence 0.96 against 0.995); docs/toy-study.md has the curves.
LETTERS_RATE = 5e-4
# What a curriculum's end is scored on (lookup.first_token_accuracy, held-out captions).
SCORED_KINDS = ("choice", "pick", "verify", "existence")


def parse_phase(text: str) -> Phase:
    """"STEPS:KIND=SHARE,..." -> (steps, shares); e.g. "2500:pick=0.2,choice=0.5"."""
    steps, _, mix = text.partition(":")
    shares = {k: float(v) for k, v in (part.split("=") for part in mix.split(",") if part)}
    return int(steps), shares


def train_on_lookups(model, tokenizer, phases: Sequence[Phase], *, lr: float = 1e-3, batch: int = 32,
                     seed: int = 0, every: int = 0, on_eval: Callable[[int, list[float]], None] | None = None,
                     ) -> list[float]:
    """Train ``model`` in place through ``phases`` and return the per-step losses.

    AdamW at ``lr``, 20 warm-up steps (fewer for short runs) and one cosine to 0 over all phases,
    gradients clipped at 1. Examples come from ``random.Random(seed)`` only, so evaluating between
    steps (``on_eval(step, losses)`` every ``every`` steps and at step 0) leaves the weights unchanged.
    """
    total = max(1, sum(steps for steps, _ in phases))
    optim = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    warmup = max(1, min(20, total // 10))
    sched = torch.optim.lr_scheduler.LambdaLR(
        optim, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / total))))
    rng, step, losses = random.Random(seed), 0, []
    model.train()
    if on_eval and every:
        on_eval(step, losses)
    for steps, mix in phases:
        for _ in range(steps):
            encoded = lookup.encode_examples(tokenizer, lookup.draw_examples(rng, batch, mix), END_OF_TURN)
            logits = model(**lookup.model_inputs(model, tokenizer, encoded)).logits
            loss = lookup.answer_loss(logits, encoded["labels"])
            losses.append(loss.item())
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optim.step()
            sched.step()
            optim.zero_grad()
            step += 1
            if on_eval and every and step % every == 0:
                on_eval(step, losses)
    if on_eval and every and step % every:
        on_eval(step, losses)
    return losses


def scores(model, tokenizer, n: int = 300, kinds: Sequence[str] = SCORED_KINDS) -> dict[str, float]:
    """First-answer-token accuracy on held-out captions per kind (letters, Yes and No are one token)."""
    return {kind: round(lookup.first_token_accuracy(model, tokenizer, kind, n=n), 3) for kind in kinds}
