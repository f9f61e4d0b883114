"""Measure one toy cell seeing and blind under seeds: the workflow-test guard's cell, or one changed by options.

The guard (tests/test_workflow.py: test_a_toy_cell_sees_its_images) asserts margins: toy POPE and a
lettered benchmark above their chance rates and their blind controls. This runs the guard's own config
(``seeing_cell_config``) once per seed, each in its own folder (1-3 minutes on 2 cores), and prints the
figures a margin is chosen from:

    python tools/bench_toy_guard.py --seeds 0 1 2 --work /tmp/toy-guard

The guard's cell lives in toy.yaml's toy world (the quick start's 2,000 conversations); ``--scale study``
says the same (it was the larger of two worlds before issue 27) and ``--scale small`` is the guard's
world before it (1,000 conversations). The other options change one thing each (issue 27's
experiments), e.g. ``--config examples/toy-before-letters.yaml --scale small`` repeats the guard of before
issue 27, and

    python tools/bench_toy_guard.py --scale study --lm 2b=/path/to/lm --choice-questions --epochs 3 \
        --benchmarks pope mme mmvp scienceqa_img gqa --work /tmp/cell-letters
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
from test_workflow import GUARD_STAGE2_EPOCHS, seeing_cell_config, snakemake  # noqa: E402

METRICS = {"pope": "split_mean/accuracy", "mmvp": "pair_accuracy", "mme": "perception",
           "scienceqa_img": "accuracy", "gqa": "accuracy"}
BLIND = ("pope", "mme", "mmvp", "scienceqa_img")  # the others are reported seeing only


def cell_config(seed: int, args: argparse.Namespace) -> tuple[dict, str]:
    """The config of one seed's run and the cell's results folder."""
    # Without --config the cell is the guard's own (toy.yaml at the guard's epochs); with it, the study's.
    base = args.config or ROOT / "toy.yaml"
    levels_of = {f["factor"]: f["levels"] for f in yaml.safe_load(base.read_text())["grid"]}
    config = seeing_cell_config(seed, tuple(args.benchmarks), small=args.scale == "small", base=base,
                                stage2_epochs=None if args.config else GUARD_STAGE2_EPOCHS)
    config["eval"]["blind_control"] = [b for b in args.benchmarks if b in BLIND]
    for key in ("attribute_questions", "choice_questions"):
        if getattr(args, key) is not None:
            config["toy_world"][key] = getattr(args, key)
    if args.free_colours is not None:
        config["toy_world"]["free_colours"] = args.free_colours
    if args.epochs:  # an integer stays one in the config
        config["train"]["stage2"]["epochs"] = int(args.epochs) if args.epochs.is_integer() else args.epochs
    if args.lm_rate:
        config["train"]["stage2"]["learning_rate"] = args.lm_rate
    if args.stage1_epochs:
        config["train"]["stage1"]["epochs"] = args.stage1_epochs
    if args.stage1_rate:
        config["train"]["stage1"]["learning_rate"] = args.stage1_rate
    if args.lm:
        name, _, folder = args.lm.partition("=")
        config["grid"][0]["levels"] = {name: {"language_model": {"local": str(Path(folder).resolve())}}}
    elif args.lm_level != "2b":
        config["grid"][0]["levels"] = {args.lm_level: levels_of["language_model"][args.lm_level]}
    if args.tower != "clip":
        config["grid"][1]["levels"] = {args.tower: levels_of["vision_tower"][args.tower]}
    if args.connector == "pretrain":
        config["grid"][2]["levels"] = {"pretrain": {"pretrain_connector": True}}
    levels = [next(iter(f["levels"])) for f in config["grid"]]
    return config, "results/cells/" + "_".join(levels)


def run(seed: int, args: argparse.Namespace) -> dict[str, float]:
    folder = args.work / f"seed{seed}"
    folder.mkdir(parents=True, exist_ok=True)
    config, cell = cell_config(seed, args)
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    start = time.time()
    blind = config["eval"]["blind_control"]
    targets = [f"{cell}/eval/{b}/metrics.json" for b in args.benchmarks] + \
        [f"{cell}/eval_blind/{b}/metrics.json" for b in blind]
    done = snakemake(folder, *targets)
    if done.returncode:
        raise SystemExit(done.stderr[-3000:])
    out: dict[str, float] = {"seed": seed, "minutes": round((time.time() - start) / 60, 1)}
    for bench in args.benchmarks:
        for kind, label in (("eval", "seeing"), ("eval_blind", "blind")):
            path = folder / cell / kind / bench / "metrics.json"
            if path.is_file():
                out[f"{bench}_{label}"] = round(json.loads(path.read_text())[METRICS[bench]], 3)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--work", type=Path, default=Path("/tmp/toy-guard"))
    ap.add_argument("--benchmarks", nargs="+", default=["pope", "scienceqa_img"], choices=list(METRICS))
    ap.add_argument("--config", type=Path,
                    help="the toy study the cell is taken from, at its own epochs (default: the guard's cell of "
                         "toy.yaml; e.g. examples/toy-before-letters.yaml)")
    ap.add_argument("--scale", choices=["guard", "study", "small"], default="guard",
                    help="toy.yaml's toy world (guard and study alike) or the guard's before issue 27 (small)")
    ap.add_argument("--attribute-questions", action=argparse.BooleanOptionalAction, default=None,
                    help="the mix's attribute yes/no turns on or off (default: as in toy.yaml)")
    ap.add_argument("--choice-questions", action=argparse.BooleanOptionalAction, default=None,
                    help="a lettered turn per VQA-style image on or off (default: as in toy.yaml)")
    ap.add_argument("--free-colours", type=float,
                    help="share of training objects recoloured uniformly (toy_world.free_colours; default 0)")
    ap.add_argument("--epochs", type=float,
                    help="stage 2's epochs, a fraction allowed (default: the guard's 3, or the --config study's)")
    ap.add_argument("--stage1-epochs", type=int,
                    help="stage 1's epochs (default: as in toy.yaml; with --connector pretrain)")
    ap.add_argument("--stage1-rate", type=float, help="stage 1's learning rate (default: as in toy.yaml)")
    ap.add_argument("--lm-rate", type=float, help="stage 2's LM learning rate (default: as in toy.yaml)")
    ap.add_argument("--lm-level", choices=["2b", "7b"], default="2b", help="the shipped LM of this level")
    ap.add_argument("--lm", help="LEVEL=FOLDER: another LM folder for the cell (e.g. 2b=/tmp/lm)")
    ap.add_argument("--tower", choices=["clip", "dinov2"], default="clip", help="the study's tower of this level")
    ap.add_argument("--connector", choices=["skip", "pretrain"], default="skip")
    args = ap.parse_args()
    for seed in args.seeds:
        print(json.dumps(run(seed, args)), flush=True)


if __name__ == "__main__":
    main()
