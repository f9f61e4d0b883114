"""``plan`` and ``estimate``: what a study will cost before anything is spent (user-facing)."""

from __future__ import annotations

import argparse
from pathlib import Path

from llava_gemma.cli.options import Commands, add_configfile


def cmd_estimate(a) -> dict | None:
    from llava_gemma.analysis.planning.estimate import run_estimate

    estimate = run_estimate(a.configfile, devices=a.devices, peak_tflops=a.peak_tflops, mfu=a.mfu,
                            prepared=[Path(x) for x in a.prepared], backend=a.backend,
                            device_memory_gb=a.device_memory_gb)
    if a.json:
        return estimate
    print(estimate["markdown"])
    return None  # the Markdown table is the output


def cmd_plan(a) -> None:
    from llava_gemma.analysis.planning.plan import run_plan

    print(run_plan(a.configfile, devices=a.devices, peak_tflops=a.peak_tflops, mfu=a.mfu,
                   prepared=[Path(x) for x in a.prepared], seed_sd=a.seed_sd, questions=a.questions,
                   pilot=Path(a.pilot) if a.pilot else None, target=a.target_effect, backend=a.backend,
                   device_memory_gb=a.device_memory_gb))
    return None  # the Markdown table is the output


def _hardware_options(p: argparse.ArgumentParser, *, backend_default: str | None, backend_help: str) -> None:
    """The options plan and estimate share, spelled and explained once."""
    p.add_argument("--devices", type=int, default=None, help="devices (default: the config's train.devices)")
    p.add_argument("--peak-tflops", type=float, default=None,
                   help="bf16 dense peak per device (default: train.peak_tflops, a known device's, else Gaudi 2's 432)")
    p.add_argument("--mfu", type=float, default=0.4, help="model FLOPs utilisation to predict hours at")
    p.add_argument("--prepared", nargs="*", default=[],
                   help="data/prepared/{pretrain,instruct}/data.parquet: real token counts replace the estimates")
    p.add_argument("--backend", default=backend_default, choices=("cpu", "cuda", "hpu"), help=backend_help)
    p.add_argument("--device-memory-gb", type=float, default=None,
                   help="memory per device, GB (default: train.device_memory_gb, else H100 80, Gaudi 2 96)")


def register(r: Commands) -> None:
    plan = r.user("plan", cmd_plan, "every cell and replicate of a study with its predicted training cost "
                                    "(FLOPs and device hours; CPU minutes for a toy study), and the total")
    add_configfile(plan, many=True, help="study config(s), merged in order as snakemake --configfile does")
    _hardware_options(plan, backend_default=None,
                      backend_help="whose memory to predict (default: train.backend; auto counts as hpu)")
    plan.add_argument("--seed-sd", type=float, default=None,
                      help="SD of a run's score over seeds (0-1 scale): adds the power table "
                           "(analysis/planning/power.py)")
    plan.add_argument("--questions", type=int, default=1000, help="questions per benchmark, with --seed-sd")
    plan.add_argument("--pilot", default=None, help="a pilot study's effects.csv: its standard errors give the power")
    plan.add_argument("--target-effect", type=float, default=None,
                      help="an effect (0-1 scale) to find with 80%% power: prints the replicates it needs")
    estimate = r.user("estimate", cmd_estimate, "training FLOPs and hours of every real cell, and the MFU the "
                                                "paper's wall times imply (Markdown table)")
    add_configfile(estimate, help="the study config")
    _hardware_options(estimate, backend_default="hpu",
                      backend_help="whose ZeRO stages, gradient checkpointing and device the memory table uses "
                                   "(default hpu, as the study ran)")
    estimate.add_argument("--json", action="store_true", help="print every number as JSON instead of the table")
