"""Coverage of the factor-effect intervals on simulated studies with known effects.

For each scenario (the 2^(4-1) half fraction D = ABC, or the full 2^3 grid, with replicates, a
between-run SD and question difficulty; see llava_gemma/analysis/simulated.py) it simulates
``--sims`` studies, fits the effect model clustered two ways (question and run) and by question
only, and prints how often the 95% intervals contain the planted effects, and their mean width.
Usage:

    OMP_NUM_THREADS=1 python tools/effects_coverage.py --sims 400 --seed 0
"""

from __future__ import annotations

import argparse
import time

from llava_gemma.analysis.simulated import Scenario, coverage
from llava_gemma.design import select_cells

FACTORS = {"language_model": ["2b", "7b"], "vision_tower": ["clip", "dinov2"], "connector": ["pretrain", "skip"],
           "connector_arch": ["linear", "mlp2x_gelu"]}
EFFECTS = {"language_model": 0.10, "vision_tower": -0.08, "connector": 0.05, "connector_arch": 0.0}


def scenarios() -> dict[str, Scenario]:
    half = select_cells(FACTORS, {"fractional": {"generators": ["D = ABC"]}})
    grid = select_cells({f: FACTORS[f] for f in list(FACTORS)[:3]}, "full")
    three = {f: EFFECTS[f] for f in list(FACTORS)[:3]}
    return {
        "half fraction, 2 replicates, run SD 0.04": Scenario(half, EFFECTS),
        "half fraction, 2 replicates, no run effect": Scenario(half, EFFECTS, run_sd=0.0),
        "half fraction, 3 replicates, run SD 0.07": Scenario(half, EFFECTS, replicates=3, run_sd=0.07,
                                                             question_spread=0.15),
        "full 2^3, 1 run per cell, run SD 0.04": Scenario(grid, three, replicates=1),
        "full 2^3, 1 run per cell, no run effect": Scenario(grid, three, replicates=1, run_sd=0.0),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sims", type=int, default=400)
    parser.add_argument("--seed", type=int, default=0)
    a = parser.parse_args()
    print(f"{'scenario':<46} {'clustered by':<18} {'coverage':>8} {'intervals':>9} {'mean width':>10} {'s':>5}")
    for name, s in scenarios().items():
        for clusters in (("question", "run"), ("question",)):
            start = time.perf_counter()
            c = coverage(s, a.sims, a.seed, clusters)
            print(f"{name:<46} {' and '.join(clusters):<18} {c['coverage']:>8.3f} {c['intervals']:>9d} "
                  f"{c['mean_width']:>10.4f} {time.perf_counter() - start:>5.1f}")


if __name__ == "__main__":
    main()
