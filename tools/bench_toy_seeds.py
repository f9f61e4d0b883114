"""Run the whole toy study under several seeds and print every cell's seven benchmarks and blind controls.

How robust is "the toy cells see, and answer every benchmark's format"? Each seed changes the toy
world (scenes, records, benchmark questions) and the training seed (connector init, data order);
the shipped toy LMs and towers stay, as Gemma and CLIP stay in the real study. Each run is a full
`snakemake --cores N --configfile <seeded copy of toy.yaml>` in its own folder (about 12 minutes on
2 cores), so three seeds take over half an hour:

    python tools/bench_toy_seeds.py --seeds 0 1 2 --work /tmp/toy-seeds

``--config examples/toy-before-letters.yaml`` seeds another toy study instead of toy.yaml. A finished run
stands in for a seed with ``--done SEED=FOLDER`` (e.g. ``--done 0=.`` for the quick
start's own run of toy.yaml, whose toy world and training seed are seed 0's). It prints, per seed,
each cell's seven Table 1 columns with the blind controls of POPE, MME perception and MMVP, the
chance rates of MMVP (pairs) and ScienceQA-IMG, and the extremes the goals of issue 27 are read from.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
SHOWN = ["gqa", "mme_perception", "mme_cognition", "mm_vet", "pope_acc", "vqav2", "mmvp", "scienceqa_img"]
BLIND = ["pope_acc", "mme_perception", "mmvp"]  # toy.yaml's eval.blind_control
MMVP_PAIR_CHANCE = 0.25  # two options per question, both questions of a pair right


def run_seed(seed: int, work: Path, cores: int, base: Path = ROOT / "toy.yaml") -> tuple[Path, float]:
    folder = work / f"seed{seed}"
    folder.mkdir(parents=True, exist_ok=True)
    config = yaml.safe_load(base.read_text())
    config["toy_world"]["seed"] = seed
    config["train"]["seed"] = 42 + seed
    (folder / "toy.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    start = time.time()
    with open(folder / "snakemake.log", "w") as log:
        subprocess.run([sys.executable, "-m", "snakemake", "--cores", str(cores), "-s", str(ROOT / "Snakefile"),
                        "--directory", str(folder), "--configfile", str(folder / "toy.yaml")],
                       check=True, stdout=subprocess.DEVNULL, stderr=log)
    return folder, (time.time() - start) / 60


def scienceqa_chance(folder: Path) -> float:
    """Mean of 1/(number of choices) over the toy ScienceQA-IMG test questions: a uniform guess's accuracy."""
    problems = json.loads((folder / "data/raw/benchmarks/scienceqa_img/problems.json").read_text())
    rates = [1 / len(p["choices"]) for p in problems.values() if p["split"] == "test" and p.get("image")]
    return sum(rates) / len(rates)


def seed_table(seed: int, folder: Path) -> pd.DataFrame:
    table = pd.read_csv(folder / "results/report/table1.csv").set_index("cell")[SHOWN]
    control = pd.read_csv(folder / "results/report/blind_control.csv")  # cell, benchmark, metric, seeing, blind, gap
    for metric in BLIND:
        table[f"{metric}_blind"] = control[control.metric == metric].set_index("cell")["blind"]
    table["seed"], table["sqa_chance"] = seed, scienceqa_chance(folder)
    return table


def summary(tables: pd.DataFrame) -> dict[str, float]:
    """The figures issue 27's goals are read from, over every cell and seed."""
    return {
        "lowest_pope": tables.pope_acc.min(),
        "highest_blind_pope": tables.pope_acc_blind.max(),
        "highest_blind_mmvp": tables.mmvp_blind.max(),
        "lowest_mmvp_minus_chance": (tables.mmvp - MMVP_PAIR_CHANCE).min(),
        "lowest_sqa_minus_chance": (tables.scienceqa_img - tables.sqa_chance).min(),
        **{f"lowest_{m}_gap": (tables[m] - tables[f"{m}_blind"]).min() for m in BLIND},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2])
    ap.add_argument("--done", nargs="*", default=[], metavar="SEED=FOLDER", help="finished runs to read, not rerun")
    ap.add_argument("--work", type=Path, default=Path("/tmp/toy-seeds"))
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--config", type=Path, default=ROOT / "toy.yaml",
                    help="the study to seed (default toy.yaml; e.g. examples/toy-before-letters.yaml)")
    args = ap.parse_args()
    folders = {int(s): Path(f) for s, f in (d.split("=", 1) for d in args.done)}
    for seed in (s for s in args.seeds if s not in folders):  # a finished run stands in for its seed
        folder, minutes = run_seed(seed, args.work, args.cores, args.config.resolve())
        folders[seed] = folder
        print(f"seed {seed}: {minutes:.1f} min", flush=True)
    tables = pd.concat([seed_table(seed, folders[seed]) for seed in sorted(folders)]).reset_index()
    for seed, table in tables.groupby("seed"):
        print(f"\nseed {seed} (ScienceQA-IMG chance {table.sqa_chance.iloc[0]:.3f}, MMVP pair chance "
              f"{MMVP_PAIR_CHANCE}); blind controls in the _blind columns:")
        print(table.drop(columns=["seed", "sqa_chance"]).to_markdown(index=False, floatfmt=".3f"))
    per_seed = pd.DataFrame({seed: summary(table) for seed, table in tables.groupby("seed")})
    print("\nissue 27's goals by seed:\n" + per_seed.to_markdown(floatfmt=".3f"))
    print("\n" + json.dumps({k: round(float(v), 3) for k, v in summary(tables).items()}, indent=1))


if __name__ == "__main__":
    main()
