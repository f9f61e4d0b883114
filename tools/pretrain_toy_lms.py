"""Pretrain the toy study's two LMs at length and write them to models/ (what toy.yaml installs).

The toy study starts from LMs that already answer questions from their context, as the real one
starts from Gemma: that skill takes longer to learn than the toy study's whole budget, so it is
learned once here and shipped (a few MB), and the toy config installs the folders as the paper
config downloads Gemma. Reproduce them with:

    python tools/pretrain_toy_lms.py --out models

It generates the toy world's text (seed 0), trains the toy tokenizer on it, pretrains each LM on
next-token prediction plus in-context look-up (toy/pretrain.py, toy/lookup.py), the two LMs side by
side in one process each, and writes each folder with its tokenizer, its accuracies on unseen captions
and a model card. ``--formats`` (issue 27, in progress; docs/toy-study.md) adds the benchmarks' answer
formats (toy/formats.py) to the look-up and the attribute yes/no turns to the toy world's text.
``--from models`` continues the LMs in that folder (with their own tokenizer) on the lettered formats
(``lookup.CONTINUE_MIX``) instead of training new ones:

    python tools/pretrain_toy_lms.py --from models --out /tmp/toy-lms --steps 2500

``--letters --from models`` continues them instead through the lettered-answer curriculum
(``toy/curriculum.py``: look-up examples only, 8,000 steps at 5e-4, one thread per LM, about an hour for
the 7B) into ``<out>/toy-gemma-{2b,7b}-letters``, with its scores in each folder's report and card, so
that the LMs answer lettered questions with a letter, as Gemma-it does (issue 27). The LMs toy.yaml
installs are rebuilt in place by:

    python tools/pretrain_toy_lms.py --letters --from models --out models
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import re
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import yaml
from llava_gemma.toy import curriculum
from llava_gemma.toy.lookup import CONTINUE_MIX, FORMATS_MIX
from llava_gemma.toy.pretrain import pretrain_toy_language_model
from llava_gemma.toy.tokenizer import train_toy_tokenizer
from llava_gemma.toy.world import ToyWorldSpec, generate_toy_world
from transformers import AutoTokenizer

ROOT = Path(__file__).resolve().parents[1]
LETTERS_SUFFIX = "-letters"  # --letters writes <out>/<name>-letters, the folders toy.yaml installs
# Gemma 2B's shape in miniature (multi-query attention: one key/value head) and Gemma 7B's
# (multi-head attention), as the toy study's two LM levels.
SHAPES = {
    "toy-gemma-2b": dict(hidden_size=96, num_layers=3, num_heads=4, num_kv_heads=1, head_dim=24,
                         intermediate_size=256),
    "toy-gemma-7b": dict(hidden_size=160, num_layers=4, num_heads=4, num_kv_heads=4, head_dim=40,
                         intermediate_size=448),
}

CARD = """---
license: apache-2.0
tags: [toy, gemma, llava-gemma-toy-study]
---
# {name}

A tiny `GemmaForCausalLM` ({parameters:,} parameters; {shape}) for the LLaVA-Gemma pipeline's toy
study. It stands in for `google/{real}`: it arrives able to answer a question from an earlier
caption, as the real model answers from its context. Written by `tools/pretrain_toy_lms.py`
(seed {seed}, {steps} steps: next-token prediction on the toy world's text plus in-context look-up
questions with the loss on the answer).

- Balanced existence questions about {n_eval} unseen captions ("Is there a star in the image?",
  every shape "Yes" and "No" equally often): accuracy {lookup_accuracy:.3f} (chance 0.5).
- The tokenizer is the toy world's (SentencePiece BPE, {vocab} pieces, Gemma's special tokens).
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "models")
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--formats", action="store_true",
                    help="add the benchmarks' answer formats to the look-up (toy/formats.py; issue 27, in progress)")
    ap.add_argument("--from", dest="start", type=Path,
                    help="continue the LMs in this folder (e.g. models) on the lettered formats, with their tokenizer")
    ap.add_argument("--letters", action="store_true",
                    help="with --from: continue through the lettered-answer curriculum (toy/curriculum.py)")
    ap.add_argument("--only", nargs="*", default=list(SHAPES), choices=list(SHAPES))
    ap.add_argument("--retokenize", nargs=2, metavar=("LM_FOLDER", "TOKENIZER_FOLDER"),
                    help="only move LM_FOLDER's embeddings to TOKENIZER_FOLDER's tokenizer (see retokenize)")
    args = ap.parse_args()
    if args.retokenize:
        print(json.dumps(retokenize(Path(args.retokenize[0]), Path(args.retokenize[1]))))
        return
    if args.letters:
        if not args.start:
            ap.error("--letters continues existing LMs: give --from FOLDER (e.g. --from models)")
        with ProcessPoolExecutor(len(args.only), mp_context=mp.get_context("spawn")) as pool:
            # models/toy-gemma-2b -> <out>/toy-gemma-2b-letters: with --out models, the folders toy.yaml installs.
            jobs = {name: pool.submit(letters_one, args.start / name, args.out / f"{name}{LETTERS_SUFFIX}", args.seed)
                    for name in args.only}
            for name, job in jobs.items():
                print(name, json.dumps(job.result()), flush=True)
        return
    toy = yaml.safe_load((ROOT / "toy.yaml").read_text())["toy_world"]
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp)
        spec = {k: v for k, v in toy.items() if k != "vocab_size"}
        if args.formats:
            spec["attribute_questions"] = True
        generate_toy_world(raw, ToyWorldSpec(**spec))
        corpus = raw / "toy_text" / "corpus.txt"
        if args.start:  # the LMs' own tokenizer (2B and 7B share one), so their embeddings stay valid
            tokenizer = AutoTokenizer.from_pretrained(args.start / args.only[0])
            tokenizer.save_pretrained(raw / "tokenizer")
        else:
            tokenizer = train_toy_tokenizer(corpus.read_text().splitlines(), raw / "tokenizer",
                                            vocab_size=toy.get("vocab_size", 1000))
        # One process per LM, one thread each: on 2 cores the two train side by side.
        with ProcessPoolExecutor(len(args.only), mp_context=mp.get_context("spawn")) as pool:
            jobs = {name: pool.submit(_pretrain_one, name, corpus, raw / "tokenizer", args.out, args.steps, args.seed,
                                      args.formats, args.start)
                    for name in args.only}
            for name, job in jobs.items():
                report = job.result()
                write_card(args.out / name, name, report, vocab=len(tokenizer))
                print(name, json.dumps(report), flush=True)


def _pretrain_one(name: str, corpus: Path, tokenizer: Path, out: Path, steps: int, seed: int, formats: bool,
                  start_from: Path | None = None) -> dict:
    import torch

    torch.set_num_threads(1)
    start = time.time()
    spec = {**SHAPES[name], "steps": steps, "format_eval": 300} | ({"lookup_mix": FORMATS_MIX} if formats else {})
    if start_from:
        spec |= {"init": str(start_from / name), "lookup_mix": CONTINUE_MIX}
    report = pretrain_toy_language_model(corpus, tokenizer, out / name, spec, seed=seed)
    report |= {"steps": steps, "seed": seed, "wall_seconds": round(time.time() - start, 1)}
    if start_from:
        report["continued_from"] = str(start_from / name)
    (out / name / "pretrain_report.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


LETTERS_CARD = """
## Lettered answers (issue 27)

Then continued from `{start}` by `tools/pretrain_toy_lms.py --letters` through the lettered-answer curriculum
(`toy/curriculum.py`, seed {seed}: {steps:,} steps at a peak learning rate of {lr:g}, look-up
questions only, from "which of these shapes is in the image?" toward full lettered questions, with
attribute yes/no alongside), so that it answers "A. ... B. ... Answer with the option's letter" with
a letter, as Gemma-it does. First answer token right on {n} unseen captions: lettered choice
{choice:.2f} (a uniform guess over the 2-4 options 0.39), which listed shape is shown {pick:.2f}
(0.5), attribute yes/no {verify:.2f} (0.5), existence {existence:.2f} (0.5).
"""


def letters_one(start: Path, out: Path, seed: int, phases=curriculum.LETTERS, n_eval: int = 300,
                lr: float = curriculum.LETTERS_RATE) -> dict:
    """Continue the LM in ``start`` through ``phases`` (one thread) and write it, its report and card to ``out``."""
    import torch
    from transformers import AutoTokenizer, GemmaForCausalLM

    torch.set_num_threads(1)
    torch.manual_seed(seed)
    begin = time.time()
    tokenizer = AutoTokenizer.from_pretrained(start)
    model = GemmaForCausalLM.from_pretrained(start)
    report = json.loads((start / "pretrain_report.json").read_text())
    # The start's card without its letters section, under the new folder's name.
    card = re.sub(r"^# .+$", f"# {out.name}", (start / "README.md").read_text().split("\n## Lettered answers")[0],
                  count=1, flags=re.M)
    before = curriculum.scores(model, tokenizer, n_eval)
    losses = curriculum.train_on_lookups(model, tokenizer, phases, lr=lr, seed=seed)
    letters = {"seed": seed, "lr": lr, "steps": sum(steps for steps, _ in phases), "phases": [list(p) for p in phases],
               "n": n_eval, "before": before, **curriculum.scores(model, tokenizer, n_eval),
               "final_loss": round(sum(losses[-50:]) / max(1, len(losses[-50:])), 4),
               "wall_seconds": round(time.time() - begin, 1)}
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    (out / "pretrain_report.json").write_text(json.dumps(report | {"letters": letters}, indent=2) + "\n")
    start_name = f"models/{start.name}" if start.parent.name == "models" else str(start)
    (out / "README.md").write_text(card.rstrip("\n") + "\n" + LETTERS_CARD.format(start=start_name, **letters))
    return letters


def retokenize(folder: Path, tokenizer_folder: Path) -> dict:
    """Give the LM in ``folder`` the tokenizer of ``tokenizer_folder`` (2B and 7B share one, as Gemma's do).

    Each embedding row moves to the piece's id in the new vocabulary; a piece the old vocabulary lacks
    gets the mean of the rows its text splits into. Used once, when the 7B LM had been trained in a
    separate run whose toy world (and so tokenizer) differed in 10 of 1,000 pieces.
    """
    import torch
    from llava_gemma.toy.lookup import existence_accuracy
    from transformers import AutoTokenizer, GemmaForCausalLM

    old, new = AutoTokenizer.from_pretrained(folder), AutoTokenizer.from_pretrained(tokenizer_folder)
    model = GemmaForCausalLM.from_pretrained(folder)
    rows = model.get_input_embeddings().weight.data
    old_vocab, remapped = old.get_vocab(), torch.empty(len(new), rows.shape[1])
    split = 0
    for piece, index in new.get_vocab().items():
        if piece in old_vocab:
            remapped[index] = rows[old_vocab[piece]]
        else:
            split += 1
            ids = old.encode(new.convert_tokens_to_string([piece]), add_special_tokens=False) or [old.unk_token_id]
            remapped[index] = rows[ids].mean(0)
    model.get_input_embeddings().weight.data = remapped
    model.tie_weights()
    model.save_pretrained(folder, safe_serialization=True)
    new.save_pretrained(folder)
    return {"pieces_split": split, "lookup_accuracy": existence_accuracy(model, new)}


def write_card(folder: Path, name: str, report: dict, vocab: int) -> None:
    shape = ", ".join(f"{k} {v}" for k, v in SHAPES[name].items())
    (folder / "README.md").write_text(CARD.format(name=name, real=name.replace("toy-", "") + "-it", shape=shape,
                                                  n_eval=400, vocab=vocab, **report))


if __name__ == "__main__":
    main()
