"""Diagnostic: can a toy LM learn in-context look-up in plain text, given enough look-up documents?

Writes ``--documents`` look-up documents, a toy caption followed by balanced existence questions
about it with their answers ("A large red circle on the left. Is there a heart in the image? No.
Is there a circle in the image? Yes."), optionally after the toy study's own corpus
(``--with-corpus``). It pretrains a toy LM on them exactly as the toy study does
(toy/pretrain.py), then asks it about 400 new captions and prints the share answered right (chance
is 0.5) and, for comparison, on the first question of 300 training documents (recall). Usage (the
tokenizer and corpus of a finished toy run):

    OMP_NUM_THREADS=1 python tools/probe_text_lookup.py --raw data/raw --documents 40000 --steps 1500 \\
        --out /tmp/lookup_lm [--with-corpus] [--lm 7b]
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import torch
import yaml
from llava_gemma.toy import scenes as sc
from llava_gemma.toy.pretrain import pretrain_toy_language_model
from transformers import AutoModelForCausalLM, AutoTokenizer


def lookup_document(scene: sc.Scene, rng: random.Random, probes: sc.ExistenceProbes) -> str:
    qas = probes(scene, rng, k=2)
    rng.shuffle(qas)
    return " ".join([sc.caption(scene).capitalize(), *(f"{qa.question} {qa.answer}." for qa in qas)])


def answers_right(model, tokenizer, prompts: list[tuple[str, str]]) -> float:
    """Share of (text, "Yes"/"No") prompts whose next token prefers the right answer."""
    yes, no = (tokenizer(f" {w}", add_special_tokens=False).input_ids[-1] for w in ("Yes", "No"))
    right = 0
    for text, answer in prompts:
        ids = torch.tensor([[tokenizer.bos_token_id, *tokenizer(text, add_special_tokens=False).input_ids]])
        with torch.no_grad():
            logits = model(ids).logits[0, -1]
        right += ("Yes" if logits[yes] > logits[no] else "No") == answer
    return right / len(prompts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--raw", default="data/raw", help="a toy run's data/raw (tokenizer and corpus)")
    ap.add_argument("--documents", type=int, default=4000)
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--with-corpus", action="store_true", help="add the toy study's own corpus")
    ap.add_argument("--lm", default="2b", help="toy LM shape from toy.yaml")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    raw, out = Path(args.raw), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rng, probes = random.Random(12), sc.ExistenceProbes()
    documents = [lookup_document(sc.random_scene(rng), rng, probes) for _ in range(args.documents)]
    lines = (raw / "toy_text" / "corpus.txt").read_text().splitlines() if args.with_corpus else []
    corpus = out / "corpus.txt"
    corpus.write_text("\n".join(lines + documents) + "\n")
    spec = dict(yaml.safe_load(Path("toy.yaml").read_text())["grid"]["language_model"][args.lm]["toy"])
    spec["steps"] = args.steps
    fit = pretrain_toy_language_model(corpus, raw / "toy_text" / "tokenizer", out / "model", spec)

    model = AutoModelForCausalLM.from_pretrained(out / "model").eval()
    tokenizer = AutoTokenizer.from_pretrained(out / "model")
    test_rng, test_probes = random.Random(7), sc.ExistenceProbes()
    fresh = []
    for _ in range(200):
        scene = sc.random_scene(test_rng)
        fresh += [(f"{sc.caption(scene).capitalize()} {qa.question}", qa.answer)
                  for qa in test_probes(scene, test_rng, k=1)]
    # A training document's first question: later ones can be answered by counting the answers
    # before them (each document has as many "yes" as "no"), which is neither look-up nor recall.
    seen = [(d[: d.find("?") + 1], d[d.find("?") + 2:].split(".")[0]) for d in documents[:300]]
    print(json.dumps({
        "documents": args.documents, "with_corpus": args.with_corpus, "lm": args.lm, "steps": args.steps,
        "final_loss": round(fit["final_loss"], 3),
        "new_captions_accuracy": round(answers_right(model, tokenizer, fresh), 3), "new_questions": len(fresh),
        "training_documents_accuracy": round(answers_right(model, tokenizer, seen), 3),
    }))


if __name__ == "__main__":
    main()
