"""Benchmark: evaluation with the next batch's images decoded on a worker thread, against decoding inline.

Runs ``eval.answers.answer_shard`` (the evaluation jobs' loop) over the same questions both ways, interleaved
(ABBA over ``--rounds``, so a shared machine slows both alike), each with a fresh pixel cache, and prints
wall and CPU seconds per way, the load average, and whether every answer is identical:

    python tools/bench_prefetch.py --model results/cells/2b_clip_pretrain/model --benchmark pope vqav2
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import torch
from llava_gemma.eval.answers import answer_shard, plan_batches
from llava_gemma.eval.benchmarks import get_benchmark
from llava_gemma.eval.generate import chat_prompt
from transformers import AutoProcessor, LlavaForConditionalGeneration


def run(model, processor, questions, prompts, plan, *, prefetch: bool,
        max_new_tokens: int) -> tuple[dict, float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "answers.jsonl"
        wall, cpu = time.perf_counter(), time.process_time()
        answer_shard(model, processor, questions, prompts, plan, list(range(len(plan))),
                     max_new_tokens=max_new_tokens, blind=False, out_file=out, prefetch=prefetch)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        answers = {r["id"]: r["prediction"] for r in map(json.loads, out.read_text().splitlines())}
    return answers, wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, type=Path)
    parser.add_argument("--benchmark", nargs="+", default=["pope"])
    parser.add_argument("--data-root", type=Path, default=Path("data/raw/benchmarks"))
    parser.add_argument("--limit", type=int, default=None, help="questions per benchmark (default: all)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    model = LlavaForConditionalGeneration.from_pretrained(args.model).eval()
    processor = AutoProcessor.from_pretrained(args.model)
    for name in args.benchmark:
        questions = get_benchmark(name).load(args.data_root / name, limit=args.limit)
        prompts = [chat_prompt(processor, q) for q in questions]
        plan = plan_batches(processor, questions, prompts, args.batch_size)
        times: dict[bool, list[tuple[float, float]]] = {False: [], True: []}
        answers: dict[bool, dict] = {}
        for r in range(args.rounds):
            for prefetch in ((False, True) if r % 2 == 0 else (True, False)):
                answers[prefetch], wall, cpu = run(model, processor, questions, prompts, plan, prefetch=prefetch,
                                                   max_new_tokens=args.max_new_tokens)
                times[prefetch].append((wall, cpu))
        same = answers[False] == answers[True]
        for prefetch, label in ((False, "inline decoding"), (True, "prefetch thread")):
            walls = [w for w, _ in times[prefetch]]
            cpus = [c for _, c in times[prefetch]]
            print(f"{name}: {len(questions)} questions, {len(plan)} batches, {label}: wall "
                  f"{', '.join(f'{w:.2f}' for w in walls)} s (min {min(walls):.2f}), CPU {min(cpus):.2f} s")
        print(f"{name}: answers identical: {same}; load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
