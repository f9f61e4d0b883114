"""Learning curves of a toy LM on the look-up formats: why do lettered answers stay at chance (issue 27)?

Trains one toy LM (a shape of tools/pretrain_toy_lms.py, from scratch or from a folder) on look-up
examples alone (toy/lookup.py, no corpus objective), in phases of a curriculum, and prints every
``--eval-every`` steps the first answer token's accuracy on held-out captions for lettered choice,
attribute yes/no and the existence look-up. One thread, so it shares a 2-core machine:

    OMP_NUM_THREADS=1 python tools/diag_toy_letters.py --init scratch --phases 600:choice=1
    python tools/diag_toy_letters.py --init models/toy-gemma-2b --phases 300:pick=1 300:choice2=0.5,choice=0.5

A phase is STEPS:KIND=SHARE,...; kinds are toy/lookup.py's (existence, attribute, describe) and
toy/formats.py's (choice, verify, word, and the drills pick, choice2); existence takes what is left.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from llava_gemma.toy import formats, lookup
from llava_gemma.toy.curriculum import parse_phase, train_on_lookups

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
from pretrain_toy_lms import SHAPES  # noqa: E402


def _stem(question: str) -> str:
    """The question's first three words (after a Context line), e.g. "What color is"."""
    lines = question.split("\n")
    return " ".join(lines[1 if lines[0].startswith("Context:") else 0].split()[:3])


def build(init: str, shape: str, layers: int | None, tokenizer):
    from transformers import GemmaConfig, GemmaForCausalLM

    if init != "scratch":
        return GemmaForCausalLM.from_pretrained(init)
    spec = SHAPES[shape] | ({"num_layers": layers} if layers else {})
    config = GemmaConfig(
        vocab_size=len(tokenizer), hidden_size=spec["hidden_size"], intermediate_size=spec["intermediate_size"],
        num_hidden_layers=spec["num_layers"], num_attention_heads=spec["num_heads"],
        num_key_value_heads=spec["num_kv_heads"], head_dim=spec["head_dim"], max_position_embeddings=1024,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, tie_word_embeddings=True)
    return GemmaForCausalLM(config)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--init", default="scratch", help="'scratch' or an LM folder to continue from")
    ap.add_argument("--shape", default="toy-gemma-2b", choices=list(SHAPES))
    ap.add_argument("--layers", type=int, help="override the shape's layer count (scratch only)")
    ap.add_argument("--tokenizer", default=str(ROOT / "models" / "toy-gemma-2b"))
    ap.add_argument("--phases", nargs="+", default=["600:choice=1"])
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--eval-every", type=int, default=200)
    ap.add_argument("--eval-n", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--eval-kinds", nargs="+", default=["choice", "pick", "letter", "verify", "existence"])
    ap.add_argument("--breakdown", nargs="*", default=[], help="at the end, accuracy per question stem of these kinds")
    ap.add_argument("--lower-options", action="store_true", help="options as written, never capitalised")
    ap.add_argument("--save", type=Path, help="write the trained LM here")
    args = ap.parse_args()
    from transformers import AutoTokenizer

    torch.set_num_threads(1)
    if args.lower_options:
        formats._case = lambda word, upper: word
    torch.manual_seed(args.seed)
    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    model = build(args.init, args.shape, args.layers, tokenizer)
    phases = [parse_phase(p) for p in args.phases]
    start = time.time()

    def report(step: int, losses: list[float]) -> None:
        row = {"step": step, "minutes": round((time.time() - start) / 60, 1),
               "loss": round(sum(losses[-50:]) / max(1, len(losses[-50:])), 3)}
        for kind in args.eval_kinds:
            row[kind] = lookup.first_token_accuracy(model, tokenizer, kind, n=args.eval_n)
        print(json.dumps(row), flush=True)

    train_on_lookups(model, tokenizer, phases, lr=args.lr, batch=args.batch, seed=args.seed, every=args.eval_every,
                     on_eval=report)
    if args.breakdown:
        for kind in args.breakdown:
            by: dict[str, list[bool]] = {}
            for question, hit in lookup.first_token_hits(model, tokenizer, kind, args.eval_n):
                by.setdefault(_stem(question), []).append(hit)
            print(json.dumps({kind: {k: [len(v), round(sum(v) / len(v), 2)] for k, v in sorted(by.items())}}))
    if args.save:
        model.save_pretrained(args.save, safe_serialization=True)
        tokenizer.save_pretrained(args.save)


if __name__ == "__main__":
    main()
