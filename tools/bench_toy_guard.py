"""Measure the workflow-test guard's cell (tests/test_workflow.py: test_a_toy_cell_sees_its_images) under seeds.

The guard asserts margins: toy POPE above its chance rate and its blind control; issue 27 adds a
lettered benchmark (toy MMVP) once the shipped LMs answer letters. This runs the guard's own config
(``seeing_cell_config``, with MMVP added) once per seed, each in its own folder (about 1-3 minutes
on 2 cores), and prints the figures a margin is chosen from:

    python tools/bench_toy_guard.py --seeds 0 1 2 --work /tmp/toy-guard
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from test_workflow import seeing_cell_config, snakemake  # noqa: E402

CELL = "results/cells/2b_clip_skip"
METRICS = {"pope": "split_mean/accuracy", "mmvp": "pair_accuracy", "mme": "perception"}


def run(seed: int, work: Path, benchmarks: list[str], attribute_questions: bool) -> dict[str, float]:
    folder = work / f"seed{seed}"
    folder.mkdir(parents=True, exist_ok=True)
    config = seeing_cell_config(seed, tuple(benchmarks))
    config["toy_world"]["attribute_questions"] = attribute_questions
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    start = time.time()
    targets = [f"{CELL}/{kind}/{bench}/metrics.json" for bench in benchmarks for kind in ("eval", "eval_blind")]
    done = snakemake(folder, *targets)
    if done.returncode:
        raise SystemExit(done.stderr[-3000:])
    out: dict[str, float] = {"seed": seed, "minutes": round((time.time() - start) / 60, 1)}
    for bench in benchmarks:
        key = METRICS[bench]
        for kind, label in (("eval", "seeing"), ("eval_blind", "blind")):
            out[f"{bench}_{label}"] = json.loads((folder / CELL / kind / bench / "metrics.json").read_text())[key]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--work", type=Path, default=Path("/tmp/toy-guard"))
    ap.add_argument("--benchmarks", nargs="+", default=["pope", "mmvp"], choices=list(METRICS))
    ap.add_argument("--attribute-questions", action="store_true", help="the mix's attribute yes/no turns on")
    args = ap.parse_args()
    for seed in args.seeds:
        print(json.dumps(run(seed, args.work, args.benchmarks, args.attribute_questions)), flush=True)


if __name__ == "__main__":
    main()
