"""Coverage of the factor-effect intervals on simulated studies with known effects.

For each scenario (the half fraction D = ABC and the full 2^3 grid with replicates and run effects,
plus the harder ones tests/test_effects_simulated.py checks: image clusters with an effect that
varies by image, an LM x tower interaction, unbalanced runs; see llava_gemma/analysis/simulated.py)
it simulates ``--sims`` studies, fits them with the report's interval code (clustered by image and
run, Bell-McCaffrey df of the run clusters) and, for comparison, clustered by question and run and
by image only, and prints how often the 95% intervals contain the planted effects, their mean
width, and the variance ratio (mean squared standard error / mean squared error; 1 is calibrated).
Usage:

    OMP_NUM_THREADS=1 python tools/effects_coverage.py --sims 400 --seed 0
"""

from __future__ import annotations

import argparse
import time

from llava_gemma.analysis.statistics.simulated import Scenario, coverage, report_fit
from llava_gemma.study.design import select_cells

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
        "half fraction, 3 replicates, run SD 0.06": Scenario(half, EFFECTS, replicates=3, run_sd=0.06,
                                                             question_spread=0.1),
        "full 2^3, 1 run per cell, run SD 0.04": Scenario(grid, three, replicates=1),
        "full 2^3, 1 run per cell, no run effect": Scenario(grid, three, replicates=1, run_sd=0.0),
        "full 2^3, 2 runs, 20 q/image, tower varies by image": Scenario(
            grid, three, n_questions=200, questions_per_image=20, effect_sd_by_image={"vision_tower": 0.1},
            run_sd=0.01, question_spread=0.1),
        "full 2^3, 1 run per cell, LM x tower 0.06": Scenario(
            grid, three, replicates=1, n_questions=100, run_sd=0.05, question_spread=0.15,
            interactions={("language_model", "vision_tower"): 0.06}),
        "full 2^3, runs 1-2 per cell (unbalanced)": Scenario(grid, three, replicates=(1, 2, 1, 1, 2, 1, 1, 2),
                                                            run_sd=0.05, question_spread=0.1),
    }


FITS = {"image and run": report_fit(), "question and run": report_fit(by_image=False),
        "image only": report_fit(two_way=False)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sims", type=int, default=400)
    parser.add_argument("--seed", type=int, default=0)
    a = parser.parse_args()
    print(f"{'scenario':<54} {'clustered by':<17} {'coverage':>8} {'intervals':>9} {'mean width':>10} "
          f"{'var ratio':>9} {'s':>5}")
    for name, s in scenarios().items():
        for label, fit in FITS.items():
            start = time.perf_counter()
            c = coverage(s, a.sims, a.seed, fit=fit)
            print(f"{name:<54} {label:<17} {c['coverage']:>8.3f} {c['intervals']:>9d} {c['mean_width']:>10.4f} "
                  f"{c['variance_ratio']:>9.2f} {time.perf_counter() - start:>5.1f}")


if __name__ == "__main__":
    main()
