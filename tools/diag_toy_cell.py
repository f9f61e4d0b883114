"""Diagnostic: a trained cell's benchmark answers broken down by kind of question, seeing and blind.

Runs the benchmarks' own loaders, prompts and scorers (``eval.run.run_benchmark``) on one cell's
model folder, with the image and with a blank one, and prints per kind of question (the prompt's
leading words, after any "Context:" line) the share scored right and the commonest answers, e.g.:

    python tools/diag_toy_cell.py results/cells/2b_clip_skip/model --data data/raw \
        --benchmarks scienceqa_img mmvp --work /tmp/diag-cell

It tells apart a cell that does not see an attribute from one that sees it but cannot answer in the
benchmark's format (issue 27): compare a lettered benchmark's kinds with the same kinds in GQA/VQAv2.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter, defaultdict
from pathlib import Path

from llava_gemma.eval.run import load_cell, run_benchmark

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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", type=Path, help="a cell's model folder")
    ap.add_argument("--data", type=Path, default=Path("data/raw/benchmarks"), help="the benchmarks' root")
    ap.add_argument("--benchmarks", nargs="+", default=["scienceqa_img", "mmvp"])
    ap.add_argument("--work", type=Path, default=Path("/tmp/diag-cell"))
    ap.add_argument("--words", type=int, default=3, help="leading words that name a kind of question")
    ap.add_argument("--no-blind", action="store_true", help="skip the blank-image run")
    args = ap.parse_args()
    model, processor = load_cell(args.model, "cpu")
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


if __name__ == "__main__":
    main()
