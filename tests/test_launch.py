"""Launching one process per device: the command each profile produces, and a real two-rank run."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml
from llava_gemma.cli import build_parser
from llava_gemma.train.launch import (
    LaunchError,
    LaunchRequest,
    build_plan,
    choose_launcher,
    first_host,
    slurm_task_env,
)

from tests import train_helpers as th

ROOT = Path(__file__).resolve().parents[1]
TRAIN = ("train", "--stage", "stage2", "--out", "results/cells/7b_clip_pretrain/model")
PY = "/venv/bin/python"
IN_ALLOCATION = {"SLURM_JOB_ID": "4242"}  # what Snakemake's SLURM jobstep leaves of the job's variables


def profile_resources(profile: str, rule: str) -> dict:
    config = yaml.safe_load((ROOT / "profiles" / profile / "config.yaml").read_text())
    return config.get("default-resources", {}) | config["set-resources"][rule]


def launch_args(resources: dict, backend: str) -> list[str]:
    """The launch part of the training rules' shell command (workflow/rules/train.smk), filled in."""
    return ["launch", "--backend", backend, "--tasks", str(resources["tasks"]), "--nodes", str(resources["nodes"]),
            "--cpus_per_task", str(resources["cpus_per_task"]), "--", *TRAIN]


def plan_for(args: list[str], environ: dict, port: int = 29400):
    """Parse the rule's launch command with the real CLI parser and build its plan."""
    a = build_parser().parse_args(args)
    request = LaunchRequest(tuple(a.argv[1:]), tasks=a.tasks, nodes=a.nodes, backend=a.backend,
                            cpus_per_task=a.cpus_per_task, launcher=a.launcher)
    return build_plan(request, environ, python=PY, master_port=port)


def srun_task(tail: tuple[str, ...]) -> list[str]:
    return [PY, "-m", "llava_gemma", "launch", "--slurm_task", "--", *tail]


@pytest.mark.parametrize("profile, backend", [("slurm-gpu", "cuda"), ("slurm-gaudi", "hpu")])
@pytest.mark.parametrize("rule", ["train_connector", "train_cell"])
def test_slurm_profiles_launch_one_srun_task_per_device(profile, backend, rule):
    resources = profile_resources(profile, rule)
    assert resources["mpi"] == "srun"  # else the jobstep wraps the job in a one-task step
    plan = plan_for(launch_args(resources, backend), IN_ALLOCATION)
    assert plan.kind == "srun"
    assert list(plan.argv) == ["srun", "--nodes=1", "--ntasks=8", "--ntasks-per-node=8",
                               f"--cpus-per-task={resources['cpus_per_task']}", "--kill-on-bad-exit=1",
                               *srun_task(TRAIN)]
    lazy = {"PT_HPU_LAZY_MODE": "1"} if backend == "hpu" else {}  # Gaudi runs in lazy mode
    assert plan.env == {"MASTER_PORT": "29400", "LOCAL_WORLD_SIZE": "8",
                        "OMP_NUM_THREADS": str(resources["cpus_per_task"]), **lazy}


def test_two_node_gpu_job_spreads_the_tasks_over_the_nodes():
    resources = profile_resources("slurm-gpu", "train_cell") | {"nodes": 2, "tasks": 16}
    plan = plan_for(launch_args(resources, "cuda"), IN_ALLOCATION)
    assert list(plan.argv[:4]) == ["srun", "--nodes=2", "--ntasks=16", "--ntasks-per-node=8"]


@pytest.mark.parametrize("backend, expected", [
    ("cuda", ["-m", "torch.distributed.run", "--standalone", "--nnodes=1", "--nproc-per-node=8",
              "-m", "llava_gemma"]),
    ("cpu", ["-m", "torch.distributed.run", "--standalone", "--nnodes=1", "--nproc-per-node=8",
             "-m", "llava_gemma"]),
    # optimum-habana's gaudi_spawn.py --use_deepspeed: DeepSpeed's launcher, no --local_rank argument.
    ("hpu", ["-m", "deepspeed.launcher.runner", "--num_nodes=1", "--num_gpus=8", "--no_local_rank",
             "--master_port=29400", "--module", "llava_gemma"]),
])
def test_local_profile_launches_every_accelerator_on_this_machine(backend, expected):
    resources = profile_resources("local", "train_cell")
    assert resources["tasks"] == resources["accelerators"]  # a training job takes them all
    plan = plan_for(launch_args(resources, backend), {})
    assert list(plan.argv) == [PY, *expected, *TRAIN]
    assert plan.env == {"OMP_NUM_THREADS": "8", **({"PT_HPU_LAZY_MODE": "1"} if backend == "hpu" else {})}


def test_gaudi_runs_in_lazy_mode_unless_the_user_chose_otherwise():
    single = LaunchRequest(tuple(TRAIN), backend="hpu")
    assert build_plan(single, {}, python=PY).env == {"PT_HPU_LAZY_MODE": "1"}  # in-process: launch sets it
    assert build_plan(single, {"PT_HPU_LAZY_MODE": "0"}, python=PY).env == {}  # the user's eager run stays eager
    assert build_plan(LaunchRequest(tuple(TRAIN), backend="cpu"), {}, python=PY).env == {}


def test_in_process_launch_exports_lazy_mode_before_the_command_runs(monkeypatch):
    from llava_gemma.train.launch import launch

    monkeypatch.setenv("PT_HPU_LAZY_MODE", "")  # records the variable's state, so the test leaves it as it was
    monkeypatch.delenv("PT_HPU_LAZY_MODE")
    seen = launch(["--", *TRAIN], tasks=1, nodes=1, backend="hpu", cpus_per_task=None, launcher="auto",
                  slurm_task=False, run_in_process=lambda argv: os.environ.get("PT_HPU_LAZY_MODE"))
    assert seen == "1"


def test_slurm_gpu_profile_submits_one_task_per_gpu_without_binding():
    """The sbatch line snakemake-executor-plugin-slurm builds from the profile's train_cell resources."""
    submit = pytest.importorskip("snakemake_executor_plugin_slurm.submit_string")
    from snakemake_executor_plugin_slurm.utils import set_gres_string

    values = {k: v for k, v in profile_resources("slurm-gpu", "train_cell").items() if k != "runtime"}

    class Resources(SimpleNamespace):
        def get(self, key, default=None):
            return getattr(self, key, default)

    job = SimpleNamespace(resources=Resources(**values), threads=1)
    params = dict(run_uuid="u", slurm_logfile="l", comment_str="c", account="-A a", partition="-p p", workdir=None)
    line = submit.get_submit_command(job, params) + set_gres_string(job)
    assert "--ntasks=8" in line and "--nodes=1" in line and "--gres=gpu:8" in line
    assert "--cpus-per-task=8" in line
    assert "ntasks-per-gpu" not in line  # it would bind each task to a single GPU


def test_one_task_runs_in_this_process_everywhere():
    request = LaunchRequest(TRAIN, tasks=1)
    for environ in ({}, IN_ALLOCATION, {"SLURM_JOB_ID": "1", "SLURM_STEP_ID": "0"}):
        assert build_plan(request, environ, python=PY).argv == TRAIN


def test_launcher_choice_and_its_errors():
    many = LaunchRequest(TRAIN, tasks=4, nodes=1, backend="cuda")
    in_step = {"SLURM_JOB_ID": "1", "SLURM_STEP_ID": "0"}
    assert choose_launcher(many, in_step) == "torchrun"  # a nested srun would wait for the outer step
    assert choose_launcher(many, {"LLAVA_GEMMA_LAUNCHER": "srun"}) == "srun"
    with pytest.raises(LaunchError, match="mpi: srun"):
        choose_launcher(LaunchRequest(TRAIN, tasks=16, nodes=2), in_step)
    with pytest.raises(LaunchError, match="outside a SLURM allocation"):
        choose_launcher(LaunchRequest(TRAIN, tasks=16, nodes=2), {})
    with pytest.raises(LaunchError, match="do not split evenly"):
        LaunchRequest(TRAIN, tasks=3, nodes=2)
    with pytest.raises(LaunchError, match="needs a command"):
        LaunchRequest(())
    with pytest.raises(LaunchError, match="not one of"):
        choose_launcher(many, {"LLAVA_GEMMA_LAUNCHER": "mpirun"})


@pytest.mark.parametrize("nodelist, host", [
    ("gpu07", "gpu07"), ("gpu[07-09,12]", "gpu07"), ("gpu[12,07-09],login1", "gpu12"),
    ("rack[2-3]-n[04-05]", "rack2-n04"), ("a,b[1-2]", "a"),
])
def test_first_host_of_a_slurm_host_list(nodelist, host):
    assert first_host(nodelist) == host


def test_srun_task_maps_slurm_variables_to_torch_distributed():
    environ = {"SLURM_PROCID": "9", "SLURM_LOCALID": "1", "SLURM_STEP_NUM_TASKS": "16", "SLURM_NTASKS": "16",
               "SLURM_JOB_ID": "4242", "SLURM_STEP_NODELIST": "gpu[03-04]", "MASTER_PORT": "29411"}
    assert slurm_task_env(environ) == {"RANK": "9", "LOCAL_RANK": "1", "WORLD_SIZE": "16", "MASTER_ADDR": "gpu03",
                                       "MASTER_PORT": "29411"}
    without_port = {k: v for k, v in environ.items() if k != "MASTER_PORT"}
    ports = {slurm_task_env(without_port | {"SLURM_PROCID": str(r)})["MASTER_PORT"] for r in range(4)}
    assert len(ports) == 1  # every task derives the same port from the job id
    with pytest.raises(LaunchError, match="started by srun"):
        slurm_task_env({"SLURM_JOB_ID": "1"})


# --- a real two-rank training (gloo on CPU) ------------------------------------------------------

FAKE_SRUN = """#!{python}
# Stands in for srun on a machine without SLURM: starts --ntasks copies of the command on this host
# with the variables srun gives each task.
import os, subprocess, sys
args = sys.argv[1:]
opts = {{}}
while args[0].startswith("--"):
    key, _, value = args.pop(0)[2:].partition("=")
    opts[key] = value
n = int(opts["ntasks"])
procs = [subprocess.Popen(args, env=dict(os.environ, SLURM_PROCID=str(i), SLURM_LOCALID=str(i), SLURM_NTASKS=str(n),
                                         SLURM_STEP_NUM_TASKS=str(n), SLURM_STEP_NODELIST="localhost"))
         for i in range(n)]
sys.exit(max(p.wait() for p in procs))
"""


@pytest.fixture(scope="module")
def caption_data(tiny_backbones, tmp_path_factory):
    return th.prepare_captions(tiny_backbones, tmp_path_factory.mktemp("captions"))


@pytest.fixture(scope="module")
def one_rank(tiny_backbones, caption_data, tmp_path_factory):
    """Reference: one process, micro-batch 4, accumulation 2 (global batch 8)."""
    out = tmp_path_factory.mktemp("one_rank")
    th.run(th.llava_gemma("launch", "--tasks", "1", "--backend", "cpu", "--",
                          *th.train_argv(tiny_backbones, *caption_data, out, per_device=4, global_batch=8)))
    return out



@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["torchrun", "srun"])
def test_two_ranks_through_the_launcher_equal_one_rank(launcher, tiny_backbones, caption_data, one_rank, tmp_path):
    """Two gloo ranks with micro-batch 4 see the same 8 samples per step as one rank accumulating
    two micro-batches, so losses and weights agree up to float reduction order."""
    env = {}
    if launcher == "srun":  # the path a SLURM job takes, with a stand-in srun on this host
        fake = tmp_path / "bin" / "srun"
        fake.parent.mkdir()
        fake.write_text(FAKE_SRUN.format(python=sys.executable))
        fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
        env = {"PATH": f"{fake.parent}{os.pathsep}{os.environ['PATH']}", "SLURM_JOB_ID": "4242"}
    done = th.run(th.llava_gemma("launch", "--tasks", "2", "--backend", "cpu", "--cpus_per_task", "1", "--",
                                 *th.train_argv(tiny_backbones, *caption_data, tmp_path, per_device=4,
                                                global_batch=8)), **env)
    assert f"llava-gemma launch: {launcher}:" in done.stderr
    ranks = th.rank_results(done.stdout)
    assert [r["world_size"] for r in ranks] == [2, 2], done.stdout[-2000:]
    assert ranks[0]["final_loss"] == ranks[1]["final_loss"]  # the logged loss is the mean over ranks

    one_metrics, one_weights = th.trained(one_rank)
    two_metrics, two_weights = th.trained(tmp_path)
    assert two_metrics["steps"] == one_metrics["steps"] == 3
    # fp32 on CPU; only the order of the gradient reduction differs. Logged losses carry 4 decimals.
    assert th.losses(tmp_path) == pytest.approx(th.losses(one_rank), abs=1.5e-4)
    for name, tensor in one_weights.items():
        torch.testing.assert_close(two_weights[name], tensor, rtol=1e-5, atol=1e-7, msg=name)


def workflow_rule_names() -> set[str]:
    """Every rule the workflow can define (under either eval.one_job_per), read from the rule files."""
    import re

    text = "\n".join(p.read_text() for p in (ROOT / "workflow" / "rules").glob("*.smk"))
    return set(re.findall(r"^\s*rule (\w+):", text, re.MULTILINE))


@pytest.mark.parametrize("profile", sorted(p.name for p in (ROOT / "profiles").iterdir() if p.is_dir()))
def test_profiles_name_only_rules_that_exist(profile):
    # Snakemake ignores a resource setting for a rule it does not know, so a renamed rule would
    # silently lose its accelerators or threads.
    config = yaml.safe_load((ROOT / "profiles" / profile / "config.yaml").read_text()) or {}
    named = set(config.get("set-resources", {})) | set(config.get("set-threads", {}))
    assert named <= workflow_rule_names(), f"{profile} names unknown rules: {sorted(named - workflow_rule_names())}"
