"""Benchmark: batched generation (ours) against one question at a time (lmms-eval's llava_hf way).

Loads a cell's checkpoint with plain transformers and answers the same benchmark questions both
ways with the same greedy settings and the benchmark's ``max_new_tokens``. The baseline is
lmms-eval's ``llava_hf`` loop at batch size 1: per question, the processor on (prompt, image),
then ``generate``. Ours is ``eval.generate.generate_answers``. The two run interleaved (ABBA
order over ``--rounds``) so a machine shared with other jobs slows both alike; the script prints
questions/s for each, the speed-up, the load average and how many answers agree, and how long
the batches ran (decode steps per pass: a batch stops when all its rows have ended, so its longest
answer sets its steps) and how many answers the cap cut, since a cap only costs time when answers
run into it. CPU seconds are printed beside wall seconds: on a shared machine they move less.
Usage (after the toy study has trained a cell):

    python tools/bench_generate.py --model results/cells/2b_clip_pretrain/model --benchmark pope gqa mme

``--max-new-tokens N`` replaces every benchmark's own cap (e.g. the old 4/6/16 caps, to compare
with the reference scripts' 128/1024); ``--batched-only`` skips the one-at-a-time baseline, which
takes long when a model runs to a 1024-token cap.
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


def timed(fn: Callable[[], list[str]]) -> tuple[list[str], float, float]:
    """Result, wall seconds and CPU seconds of this process (all its threads): on a shared machine the
    CPU seconds barely move with the load, the wall seconds do."""
    start, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return result, time.perf_counter() - start, time.process_time() - cpu


class StepCounter:
    """Wraps ``model.generate`` to count, per pass, the decode steps of every batch (its longest row sets
    them) and the rows that reached the cap without an end-of-turn/EOS token."""

    def __init__(self, model) -> None:
        self.model, self.generate = model, model.generate
        self.eos = set(model.generation_config.eos_token_id or [])
        self.steps = self.capped = 0

    def __call__(self, **kwargs):
        out = self.generate(**kwargs)
        new = out[:, kwargs["input_ids"].shape[1]:]
        self.steps += new.shape[1]
        self.capped += sum(new.shape[1] == kwargs["max_new_tokens"] and not set(row) & self.eos
                           for row in new.tolist())
        return out

    def __enter__(self) -> StepCounter:
        self.model.generate = self
        return self

    def __exit__(self, *exc) -> None:
        del self.model.generate  # the instance attribute goes; the class's method shows again


def compare(model, processor, questions: Sequence[Question], max_new_tokens: int, batch_size: int,
            rounds: int, baseline: bool = True) -> dict[str, float]:
    runs = {
        "one": lambda: one_at_a_time(model, processor, questions, max_new_tokens),
        "batched": lambda: generate_answers(model, processor, questions, batch_size=batch_size,
                                            max_new_tokens=max_new_tokens),
    }
    names = ("one", "batched") if baseline else ("batched",)
    runs["batched"]()  # warm-up: first-call allocations and lazy inits
    seconds = dict.fromkeys(names, 0.0)
    cpu_seconds = 0.0
    answers: dict[str, list[str]] = {}
    for r in range(rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            answers[name], t, cpu = timed(runs[name])
            seconds[name] += t
            cpu_seconds += cpu if name == "batched" else 0.0
    n = len(questions) * rounds
    with StepCounter(model) as counter:
        runs["batched"]()
    out = {"questions": len(questions), "batched_qps": n / seconds["batched"],
           "batched_seconds": seconds["batched"] / rounds, "batched_cpu_seconds": cpu_seconds / rounds,
           "decode_steps": counter.steps, "capped": counter.capped}
    if baseline:
        same = sum(a == b for a, b in zip(answers["one"], answers["batched"], strict=True))
        out.update(one_qps=n / seconds["one"], speedup=seconds["one"] / seconds["batched"], same=same)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, type=Path)
    parser.add_argument("--benchmark", nargs="+", default=["pope"])
    parser.add_argument("--data-root", type=Path, default=Path("data/raw/benchmarks"),
                        help="folder holding one folder per benchmark")
    parser.add_argument("--limit", type=int, default=100, help="questions per split (POPE) or in all")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2, help="interleaved repetitions of both ways")
    parser.add_argument("--max-new-tokens", type=int, default=None,
                        help="cap for every benchmark instead of its own (the reference scripts' caps by default)")
    parser.add_argument("--batched-only", action="store_true", help="time only the batched way (no baseline)")
    args = parser.parse_args()

    model = LlavaForConditionalGeneration.from_pretrained(args.model).eval()
    processor = AutoProcessor.from_pretrained(args.model)
    print(f"model {args.model}, torch threads {torch.get_num_threads()}, batch size {args.batch_size}, "
          f"{args.rounds} interleaved rounds")
    for name in args.benchmark:
        bench = get_benchmark(name)
        questions = bench.load(args.data_root / name, limit=args.limit, seed=0)
        cap = args.max_new_tokens or bench.max_new_tokens
        load_before = os.getloadavg()[0]
        r = compare(model, processor, questions, cap, args.batch_size, args.rounds, baseline=not args.batched_only)
        baseline = ("" if args.batched_only else
                    f"one at a time {r['one_qps']:7.1f} q/s, speed-up {r['speedup']:4.1f}x, "
                    f"same answers {r['same']}/{r['questions']}, ")
        print(f"{name:>13}: {r['questions']} questions, max_new_tokens {cap}: batched {r['batched_qps']:7.1f} q/s "
              f"({r['batched_seconds']:.2f} s, {r['batched_cpu_seconds']:.2f} s of CPU per pass), {baseline}"
              f"{r['decode_steps']} decode steps per pass, {r['capped']} answers cut at the cap, "
              f"load average {load_before:.1f}->{os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
