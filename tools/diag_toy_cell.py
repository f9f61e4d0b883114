"""Diagnostic: a trained cell's benchmark answers broken down by kind of question, seeing and blind.

Runs the benchmarks' own loaders, prompts and scorers (``eval.run.run_benchmark``) on one cell's
model folder, with the image and with a blank one, and prints per kind of question (the prompt's
leading words, after any "Context:" line) the share scored right and the commonest answers, e.g.:

    python tools/diag_toy_cell.py results/cells/2b_clip_skip/model --data data/raw/benchmarks \
        --benchmarks scienceqa_img mmvp --work /tmp/diag-cell

It tells apart a cell that does not see an attribute from one that sees it but cannot answer in the
benchmark's format (issue 27): compare a lettered benchmark's kinds with the same kinds in GQA/VQAv2.
``--held-out N`` first asks N fresh toy scenes (never a benchmark's) each kind of the mix's own
lettered and yes/no questions (toy/formats.py): a validation set to choose settings on, so that the
benchmarks stay the test.
"""

from __future__ import annotations

import argparse
import json
import random
import re
from collections import Counter, defaultdict
from pathlib import Path

from llava_gemma.eval.run import load_cell, run_benchmark
from llava_gemma.toy import formats
from llava_gemma.toy import scenes as sc

# The per-question score each benchmark writes into samples.jsonl.
SCORE_KEYS = ("correct", "score", "accuracy")


def question_kind(prompt: str, words: int = 3) -> str:
    """The prompt's first ``words`` words, skipping a ScienceQA "Context: ..." line."""
    lines = [line for line in prompt.splitlines() if line.strip()]
    if len(lines) > 1 and lines[0].startswith("Context:"):
        lines = lines[1:]
    return " ".join(lines[0].split()[:words]) if lines else ""


def sample_score(record: dict) -> float:
    for key in SCORE_KEYS:
        if key in record and record[key] is not None:
            return float(record[key])
    raise KeyError(f"no per-question score ({', '.join(SCORE_KEYS)}) in a sample of {sorted(record)}")


def by_kind(records: list[dict], words: int = 3) -> dict[str, tuple[int, float, list[tuple[str, int]]]]:
    """kind -> (questions, share right, the three commonest answers)."""
    groups: dict[str, list[dict]] = defaultdict(list)
    for r in records:
        groups[question_kind(r["prompt"], words)].append(r)
    return {kind: (len(rs), sum(sample_score(r) for r in rs) / len(rs),
                   Counter(r["prediction"][:24] for r in rs).most_common(3))
            for kind, rs in sorted(groups.items(), key=lambda kv: -len(kv[1]))}


def _majority(target: str | list[str]) -> str:
    """The answer most annotators gave (VQAv2 lists ten; GQA and the others give one)."""
    answers = target if isinstance(target, list) else [target]
    return Counter(str(a).strip().lower() for a in answers).most_common(1)[0][0]


def colour_prior(records: list[dict]) -> tuple[int, int, int, int]:
    """Of "What color is the <shape>?" questions: how many, how many answered with the shape's typical
    colour (toy/scenes.py TYPICAL_COLOR, worn 80% of the time), how many whose majority answer is another
    colour, and how many of those were scored right (score 1: VQAv2's min(#matches / 3, 1))."""
    asked = [(r, m[1]) for r in records if (m := re.match(r"What colou?r is the (\w+)\?", r["prompt"]))]
    typical = sum(r["prediction"].strip().lower() == sc.TYPICAL_COLOR[shape] for r, shape in asked)
    atypical = [r for r, shape in asked if _majority(r["target"]) != sc.TYPICAL_COLOR[shape]]
    return len(asked), typical, len(atypical), sum(sample_score(r) >= 1.0 for r in atypical)


def held_out_questions(n: int, kind: str, seed: int = 12345) -> list[tuple[object, str, str]]:
    """``n`` fresh scenes, each with one question of ``kind`` (choice, pick or verify) and its answer."""
    rng = random.Random(f"{seed}-{kind}")
    out = []
    for _ in range(n):
        scene = sc.random_scene(rng)
        question, answer = formats.format_example(kind, scene, rng)
        out.append((scene, question, answer))
    return out


def held_out_accuracy(model, processor, n: int, kinds=("choice", "pick", "verify"), size: int = 96
                      ) -> dict[str, tuple[float, list[tuple[str, int]]]]:
    """kind -> (share whose first answer word is right, the commonest first words), greedy, batches of 50."""
    import torch

    processor.tokenizer.padding_side = "left"
    result = {}
    for kind in kinds:
        items, first_words = held_out_questions(n, kind), []
        for start in range(0, n, 50):
            part = items[start:start + 50]
            prompts = [processor.apply_chat_template(
                [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": q}]}],
                add_generation_prompt=True, tokenize=False) for _, q, _ in part]
            images = [sc.render(scene, size).convert("RGB") for scene, _, _ in part]
            inputs = processor(text=prompts, images=images, return_tensors="pt", padding=True)
            with torch.inference_mode():
                out = model.generate(**inputs, max_new_tokens=3, do_sample=False)
            for text in processor.batch_decode(out[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True):
                first_words.append((text.split() or [""])[0].rstrip("."))
        right = sum(word == answer for word, (_, _, answer) in zip(first_words, items))
        result[kind] = (right / n, Counter(first_words).most_common(4))
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", type=Path, help="a cell's model folder")
    ap.add_argument("--data", type=Path, default=Path("data/raw/benchmarks"), help="the benchmarks' root")
    ap.add_argument("--benchmarks", nargs="*", default=["scienceqa_img", "mmvp"])
    ap.add_argument("--work", type=Path, default=Path("/tmp/diag-cell"))
    ap.add_argument("--words", type=int, default=3, help="leading words that name a kind of question")
    ap.add_argument("--no-blind", action="store_true", help="skip the blank-image run")
    ap.add_argument("--held-out", type=int, default=0, metavar="N",
                    help="first score N fresh scenes per kind of the mix's lettered and yes/no questions")
    args = ap.parse_args()
    model, processor = load_cell(args.model, "cpu")
    if args.held_out:
        for kind, (right, words) in held_out_accuracy(model, processor, args.held_out).items():
            print(f"held-out {kind:7s} n={args.held_out} right={right:.2f}  {words}")
    for bench in args.benchmarks:
        for blind in (False,) if args.no_blind else (False, True):
            out = args.work / ("blind" if blind else "seeing") / bench
            metrics = run_benchmark(model, processor, bench, args.data / bench, out, batch_size=64, blind=blind)
            records = [json.loads(line) for line in (out / "samples.jsonl").open()]
            headline = {k: round(v, 3) for k, v in metrics.items()
                        if isinstance(v, float) and k not in ("wall_seconds", "questions_per_second")}
            print(f"\n{bench} ({'blind' if blind else 'seeing'}): {json.dumps(headline)}")
            for kind, (n, right, answers) in by_kind(records, args.words).items():
                print(f"  {kind[:34]:34s} n={n:3d} right={right:.2f}  {answers}")
            if bench in ("vqav2", "gqa"):
                asked, typical, atypical, right = colour_prior(records)
                print(f"  colour questions {asked}: answered with the shape's typical colour {typical}; "
                      f"{atypical} whose object wears another colour, right {right}")


if __name__ == "__main__":
    main()
