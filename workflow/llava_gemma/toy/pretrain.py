"""The toy language models: tiny ``GemmaForCausalLM`` of Gemma 2B's and 7B's shapes, pretrained on the toy world.

They stand for Gemma, so the toy study's numbers mean something: a causal LM on the toy text
corpus that also answers questions from an earlier caption (``toy/lookup.py``), as the real LM
answers from its context. Each is saved as an ordinary HF folder, like the hub checkpoint it
replaces. The toy towers are in ``toy/towers.py``.
"""

from __future__ import annotations

import math
import random
from pathlib import Path

import torch
from transformers import AutoTokenizer, GemmaConfig, GemmaForCausalLM


def pretrain_toy_language_model(corpus: Path, tokenizer_dir: Path, out_dir: Path, spec: dict, seed: int = 0) -> dict:
    """A toy Gemma trained on two objectives at once, each averaged over its own batch.

    - next-token prediction on the toy corpus (packed blocks of 64 tokens), so the LM can write
      captions and answers;
    - in-context look-up (``toy/lookup.py``): questions answered only by an earlier caption, with
      the loss on the answer alone. Kept in its own batch so the answer is not one token among
      hundreds (that dilution alone held the look-up at chance in the measurements).
    ``lookup_batch_size: 0`` turns the second objective off (a plain LM, as before); ``init`` names an
    LM folder to continue from instead of a fresh model (its shape keys are then ignored).
    """
    from llava_gemma.model.chat import END_OF_TURN

    from .formats import KINDS
    from .lookup import answer_loss, draw_examples, encode_examples, existence_accuracy, format_accuracy, model_inputs

    torch.manual_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    config = GemmaConfig(
        vocab_size=len(tokenizer), hidden_size=spec["hidden_size"], intermediate_size=spec["intermediate_size"],
        num_hidden_layers=spec["num_layers"], num_attention_heads=spec["num_heads"],
        num_key_value_heads=spec.get("num_kv_heads", 1),  # 1 = multi-query attention, as Gemma 2B
        head_dim=spec["head_dim"], max_position_embeddings=1024, pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, tie_word_embeddings=True,
    )
    # ``init``: continue from an LM folder of the same tokenizer (the formats stage starts from the look-up LMs).
    model = GemmaForCausalLM.from_pretrained(spec["init"]) if spec.get("init") else GemmaForCausalLM(config)
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
            batch = encode_examples(tokenizer, draw_examples(rng, lookup_batch, spec.get("lookup_mix")), END_OF_TURN)
            logits = model(**model_inputs(model, tokenizer, batch)).logits
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
        # The benchmarks' formats on unseen captions (greedy, exact answer): toy/formats.py. Off unless
        # asked (``format_eval``: questions per format), as a few hundred generations cost a test minutes.
        if n_eval := spec.get("format_eval", 0):
            report |= {f"{kind}_accuracy": format_accuracy(model, tokenizer, kind, n=n_eval) for kind in KINDS}
    return report


def _tail_mean(losses: list[float], k: int = 20) -> float:
    tail = losses[-k:]
    return sum(tail) / len(tail)
