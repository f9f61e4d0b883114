"""Benchmark: batched generation (ours) against one question at a time (lmms-eval's llava_hf way).

Loads a cell's checkpoint with plain transformers and answers the same benchmark questions both
ways with the same greedy settings and the benchmark's ``max_new_tokens``. The baseline is
lmms-eval's ``llava_hf`` loop at batch size 1: per question, the processor on (prompt, image),
then ``generate``. Ours is ``eval.generate.generate_answers``. The two run interleaved (ABBA
order over ``--rounds``) so a machine shared with other jobs slows both alike; the script prints
questions/s for each, the speed-up, the load average and how many answers agree. Usage (after
the toy study has trained a cell):

    python tools/bench_generate.py --model results/cells/2b_clip_pretrain/model --benchmark pope gqa mme
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from llava_gemma.eval.benchmarks import get_benchmark
from llava_gemma.eval.benchmarks.base import Question
from llava_gemma.eval.generate import chat_prompt, generate_answers, question_image
from transformers import AutoProcessor, LlavaForConditionalGeneration


@torch.inference_mode()
def one_at_a_time(model, processor, questions: Sequence[Question], max_new_tokens: int) -> list[str]:
    """lmms-eval's llava_hf loop at batch size 1 (same prompt, image padding and greedy settings)."""
    answers = []
    for q in questions:
        image = [question_image(q, processor.image_processor, blind=False)] if q.image_path else None
        inputs = processor(text=[chat_prompt(processor, q)], images=image, return_tensors="pt")
        out = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
        answers.append(processor.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True).strip())
    return answers


def timed(fn: Callable[[], list[str]]) -> tuple[list[str], float]:
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def compare(model, processor, questions: Sequence[Question], max_new_tokens: int, batch_size: int,
            rounds: int) -> dict[str, float]:
    runs = {
        "one": lambda: one_at_a_time(model, processor, questions, max_new_tokens),
        "batched": lambda: generate_answers(model, processor, questions, batch_size=batch_size,
                                            max_new_tokens=max_new_tokens),
    }
    runs["batched"]()  # warm-up: first-call allocations and lazy inits
    seconds = {"one": 0.0, "batched": 0.0}
    answers: dict[str, list[str]] = {}
    for r in range(rounds):
        for name in ("one", "batched") if r % 2 == 0 else ("batched", "one"):
            answers[name], t = timed(runs[name])
            seconds[name] += t
    n = len(questions) * rounds
    same = sum(a == b for a, b in zip(answers["one"], answers["batched"], strict=True))
    return {"questions": len(questions), "one_qps": n / seconds["one"], "batched_qps": n / seconds["batched"],
            "speedup": seconds["one"] / seconds["batched"], "same": same}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, type=Path)
    parser.add_argument("--benchmark", nargs="+", default=["pope"])
    parser.add_argument("--data-root", type=Path, default=Path("data/raw/benchmarks"),
                        help="folder holding one folder per benchmark")
    parser.add_argument("--limit", type=int, default=100, help="questions per split (POPE) or in all")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2, help="interleaved repetitions of both ways")
    args = parser.parse_args()

    model = LlavaForConditionalGeneration.from_pretrained(args.model).eval()
    processor = AutoProcessor.from_pretrained(args.model)
    print(f"model {args.model}, torch threads {torch.get_num_threads()}, batch size {args.batch_size}, "
          f"{args.rounds} interleaved rounds")
    for name in args.benchmark:
        bench = get_benchmark(name)
        questions = bench.load(args.data_root / name, limit=args.limit, seed=0)
        load_before = os.getloadavg()[0]
        r = compare(model, processor, questions, bench.max_new_tokens, args.batch_size, args.rounds)
        print(f"{name:>13}: {r['questions']} questions, max_new_tokens {bench.max_new_tokens}: one at a time "
              f"{r['one_qps']:7.1f} q/s, batched {r['batched_qps']:7.1f} q/s, speed-up {r['speedup']:4.1f}x, "
              f"same answers {r['same']}/{r['questions']}, load average {load_before:.1f}->{os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
