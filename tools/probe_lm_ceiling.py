"""Diagnostic: how a toy LM answers MMVP's and ScienceQA-IMG's questions with perfect eyes (issue 27).

A cell can score no better on a lettered benchmark than its LM answers the same question when the
scene's caption stands where the image will: the caption says every colour, size, place and word,
so this is the cell's ceiling with a perfect tower and connector. Questions come from the toy
benchmarks' own makers (``draw_mmvp_pair``, ``draw_scienceqa_item``) about fresh scenes from
``--seed``, never from the benchmark files; prompts are the benchmarks' own (MMVP's lettered
options, ScienceQA's ``make_prompt``) in the chat format, and the answer is the LM's most likely
first token, read by each benchmark's own letter rule (letters are one token each). It also asks
two-option colour questions whose wrong option is, or is not, another object's colour in the same
caption: an LM that answers with the option its context mentions is right only when it is not.

    python tools/probe_lm_ceiling.py --lm 2b=models/toy-gemma-2b-letters 7b=models/toy-gemma-7b-letters
"""

from __future__ import annotations

import argparse
import json
import random
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

from llava_gemma.eval.benchmarks import mmvp, scienceqa_img
from llava_gemma.toy import lookup
from llava_gemma.toy import scenes as sc
from llava_gemma.toy.benchmarks_extra import draw_mmvp_pair, draw_scienceqa_item
from transformers import AutoTokenizer, GemmaForCausalLM

OPTIONS = "ABCDE"


def mmvp_kind(question: str) -> str:
    """The attribute an MMVP question's pair differs in (the wordings of ``_mmvp_pair``)."""
    for words, kind in (("color", "colour"), ("large or small", "size"), ("left or", "position"),
                        ("object a", "shape"), ("word", "word")):
        if words in question:
            return kind
    return "other"


def mmvp_questions(rng: random.Random, pairs: int) -> list[dict]:
    """Both questions of ``pairs`` fresh MMVP pairs, options in a random order as the benchmark's."""
    out = []
    for k in range(pairs):
        first, second, question, values = draw_mmvp_pair(rng)
        options = values[::-1] if rng.random() < 0.5 else values
        for scene, value in ((first, values[0]), (second, values[1])):
            out.append({"scene": scene, "prompt": mmvp.make_prompt(question, options),
                        "target": OPTIONS[options.index(value)], "pair": k, "kind": mmvp_kind(question)})
    return out


def scienceqa_questions(rng: random.Random, n: int) -> list[dict]:
    out = []
    for _ in range(n):
        scene, question, hint, choices = draw_scienceqa_item(rng)
        gold = choices[0]
        rng.shuffle(choices)
        prompt = scienceqa_img.make_prompt({"question": question, "hint": hint, "choices": choices})
        out.append({"scene": scene, "prompt": prompt, "target": OPTIONS[choices.index(gold)],
                    "kind": " ".join(question.split()[:3]), "chance": 1 / len(choices)})
    return out


def colour_questions(rng: random.Random, n: int, present: bool) -> list[dict]:
    """"What color is the <shape>?" with two options, the wrong one another object's colour in the same
    caption (``present``) or a colour the caption never says: an LM that picks the option its context
    mentions, instead of the one its question asks for, is right only in the second."""
    out = []
    while len(out) < n:
        scene = sc.random_scene(rng, n_objects=rng.randint(2, 3), distinct_shapes=True)
        colours = [o.color for o in scene.objects]
        if len(set(colours)) < len(colours):
            continue
        obj = rng.choice(scene.objects)
        wrong = rng.choice([c for c in colours if c != obj.color] if present else
                           [c for c in sc.COLORS if c not in colours])
        options = [obj.color.capitalize(), wrong.capitalize()]
        rng.shuffle(options)
        out.append({"scene": scene, "prompt": mmvp.make_prompt(f"What color is the {obj.shape}?", options),
                    "target": OPTIONS[options.index(obj.color.capitalize())]})
    return out


def first_tokens(model, tokenizer, items: list[dict], with_caption: bool = True) -> list[str]:
    """The most likely first answer token of each item's chat prompt (with or without its caption), decoded."""
    examples = [lookup.chat_example(it["scene"], it["prompt"], "") for it in items]
    if not with_caption:
        examples = [replace(ex, prompt=ex.prompt.replace(ex.caption + "\n", "", 1)) for ex in examples]
    return [tokenizer.decode([t]).strip() for t in lookup.next_token_argmax(model, tokenizer, examples)]


def score_mmvp(items: list[dict], answers: list[str]) -> dict:
    right = [mmvp.parse_letter(a) == it["target"] for it, a in zip(items, answers)]
    pairs: dict[int, list[bool]] = defaultdict(list)
    kinds: dict[str, list[bool]] = defaultdict(list)
    for it, r in zip(items, right):
        pairs[it["pair"]].append(r)
        kinds[it["kind"]].append(r)
    return {"question_accuracy": round(sum(right) / len(right), 3),
            "pair_accuracy": round(sum(all(p) for p in pairs.values()) / len(pairs), 3),
            "pair_accuracy_by_kind": {k: [len(v) // 2, round(sum(all(v[i:i + 2]) for i in range(0, len(v), 2))
                                                            / (len(v) // 2), 3)] for k, v in sorted(kinds.items())}}


def score_scienceqa(items: list[dict], answers: list[str]) -> dict:
    right = [scienceqa_img.parse_letter(a) == it["target"] for it, a in zip(items, answers)]
    kinds: dict[str, list[bool]] = defaultdict(list)
    for it, r in zip(items, right):
        kinds[it["kind"]].append(r)
    return {"accuracy": round(sum(right) / len(right), 3),
            "chance": round(sum(it["chance"] for it in items) / len(items), 3),
            "by_kind": {k: [len(v), round(sum(v) / len(v), 3)] for k, v in sorted(kinds.items())}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lm", nargs="+", required=True, metavar="NAME=FOLDER")
    ap.add_argument("--pairs", type=int, default=300, help="MMVP pairs (two questions each)")
    ap.add_argument("--scienceqa", type=int, default=600, help="ScienceQA-IMG questions")
    ap.add_argument("--seed", type=int, default=2027)
    args = ap.parse_args()
    for spec in args.lm:
        name, _, folder = spec.partition("=")
        tokenizer = AutoTokenizer.from_pretrained(Path(folder))
        model = GemmaForCausalLM.from_pretrained(Path(folder)).eval()
        rng = random.Random(args.seed)
        mmvp_items, sqa_items = mmvp_questions(rng, args.pairs), scienceqa_questions(rng, args.scienceqa)
        report = {"lm": name, "folder": folder}
        for present in (True, False):
            items = colour_questions(rng, args.scienceqa, present)
            hits = [a == it["target"] for it, a in zip(items, first_tokens(model, tokenizer, items))]
            where = "in" if present else "not in"
            report[f"colour, wrong option {where} the caption"] = round(sum(hits) / len(hits), 3)
        for label, caption in (("caption", True), ("no caption", False)):
            report[label] = {"mmvp": score_mmvp(mmvp_items, first_tokens(model, tokenizer, mmvp_items, caption)),
                             "scienceqa_img": score_scienceqa(sqa_items, first_tokens(model, tokenizer, sqa_items,
                                                                                       caption))}
        print(json.dumps(report), flush=True)
        print(f"{name}: two-option colour questions right {report['colour, wrong option in the caption']:.3f} "
              f"when the wrong option is another object's colour, "
              f"{report['colour, wrong option not in the caption']:.3f} when the caption never says it", flush=True)
        for label in ("caption", "no caption"):
            m, q = report[label]["mmvp"], report[label]["scienceqa_img"]
            kinds = ", ".join(f"{k} {v[1]:.2f}" for k, v in m["pair_accuracy_by_kind"].items())
            print(f"{name} ({label}): MMVP pairs {m['pair_accuracy']:.3f} (questions {m['question_accuracy']:.3f};"
                  f" by kind: {kinds}); ScienceQA-IMG {q['accuracy']:.3f} (chance {q['chance']:.3f})", flush=True)


if __name__ == "__main__":
    main()
