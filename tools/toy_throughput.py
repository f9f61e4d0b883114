"""The toy study's measured training throughput, from the train_metrics.json its stages wrote.

``llava-gemma plan`` turns a toy study's model FLOPs into CPU minutes at a measured rate
(``TOY_CPU_TFLOPS`` in analysis/planning/plan.py) and counts a toy stage-2 workload as
``toy_world.n_instruct`` conversations x the records each becomes (``TOY_RECORDS_PER_CONVERSATION``).
This script prints both figures from a finished toy run, so they can be measured again:

    python tools/toy_throughput.py results        # the results folder of a toy study run
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, help="a toy study's results folder")
    args = parser.parse_args()
    files = sorted(args.results.glob("stage1/*/train_metrics.json")) + sorted(
        args.results.glob("cells/*/model/train_metrics.json"))
    if not files:
        raise SystemExit(f"no train_metrics.json under {args.results}/stage1 or {args.results}/cells; "
                         "run the toy study first.")
    flops = seconds = 0.0
    print("| stage run | samples | model FLOPs | wall s | TFLOP/s |")
    print("|---|---:|---:|---:|---:|")
    for f in files:
        m = json.loads(f.read_text())
        name = f.parent.name if m["stage"] == "stage1" else f.parents[1].name
        flops, seconds = flops + m["flops_total"], seconds + m["wall_seconds"]
        print(f"| {m['stage']} {name} | {m['samples']} | {m['flops_total']:.3g} | {m['wall_seconds']:.1f} | "
              f"{m['achieved_tflops']:.4f} |")
    print(f"\nall {len(files)} stages: {flops:.4g} model FLOPs in {seconds:.1f} s of training = "
          f"{flops / seconds / 1e12:.4f} TFLOP/s")
    stage2 = [json.loads(f.read_text()) for f in files if "cells" in f.parts]
    toy = args.results.parent / "data" / "raw" / "toy_world.json"  # what the toy-world rule wrote
    if stage2 and toy.is_file():
        counts = json.loads(toy.read_text())
        conversations = counts["instruct_images"] + counts["instruct_text_only"]
        print(f"stage 2: {stage2[0]['samples']} records from {conversations} conversations = "
              f"{stage2[0]['samples'] / conversations:.3f} records per conversation")


if __name__ == "__main__":
    main()
