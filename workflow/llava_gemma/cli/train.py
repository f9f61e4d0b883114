"""Commands the training rules run: one stage of one cell, and the launcher that starts its ranks."""

from __future__ import annotations

import argparse
from functools import partial
from pathlib import Path

from llava_gemma.cli.options import Commands, settings


def cmd_train(a) -> dict:
    from llava_gemma.study.config import StageConfig
    from llava_gemma.train.run import run_stage

    s = settings(a.settings)
    recipe = {k: s[k] for k in ("connector", "stage2_trains", "instruct_sources") if k in s}
    return run_stage(a.stage, StageConfig(**s["stage"]), **recipe, lm_path=Path(a.lm), tower_path=Path(a.tower),
                     data_dir=Path(a.data), image_root=Path(a.image_root), out_dir=Path(a.out),
                     work_dir=Path(a.work), backend=s["backend"], precision=s["precision"], seed=s["seed"],
                     save_steps=s["save_steps"], connector_from=Path(a.connector) if a.connector else None,
                     length_buckets=s.get("length_buckets"), gradient_checkpointing=s.get("gradient_checkpointing"),
                     peak_tflops=s.get("peak_tflops"), pad_to=s.get("pad_to"))


def cmd_launch(a, root: argparse.ArgumentParser) -> dict:
    from llava_gemma.train.launch import launch

    def run_in_process(argv: list[str]) -> dict:
        inner = root.parse_args(argv)
        return inner.fn(inner)

    return launch(a.argv, tasks=a.tasks, nodes=a.nodes, backend=a.backend, cpus_per_task=a.cpus_per_task,
                  launcher=a.launcher, slurm_task=a.slurm_task, run_in_process=run_in_process)


def register(r: Commands) -> None:
    r.rule("train", cmd_train, "train stage 1 (connector) or stage 2 (connector + LM) of one cell",
           "stage", "lm", "tower", "data", "image_root", "out", "work", "connector")
    launch = r.internal_command(
        "launch", partial(cmd_launch, root=r.root),
        "start one process per device (torchrun, deepspeed or srun), then the command after `--` in each")
    launch.add_argument("--tasks", type=int, default=1, help="ranks in all, one per device (the rule's tasks)")
    launch.add_argument("--nodes", type=int, default=1, help="nodes the ranks spread over (the rule's nodes)")
    launch.add_argument("--backend", default="auto", help="train.backend; hpu launches through DeepSpeed")
    launch.add_argument("--cpus_per_task", type=int, default=None, help="CPU threads per rank")
    launch.add_argument("--launcher", default="auto", help="auto | single | torchrun | deepspeed | srun")
    launch.add_argument("--slurm_task", action="store_true",
                        help="internal: this process is one srun task; map SLURM's variables to torch's")
    launch.add_argument("argv", nargs=argparse.REMAINDER, help="-- <llava-gemma command> [arguments]")
