"""Start one training process per device, on one node or several.

A training rule runs ``llava-gemma launch --tasks T --nodes M --backend B -- train ...``; this
module turns that into the command that starts the T ranks:

- ``single``: one rank on one node; the command runs in this very process (no launcher).
- ``torchrun``: one node, cuda or cpu (``python -m torch.distributed.run --standalone``).
- ``deepspeed``: one node, hpu. optimum-habana's ``gaudi_spawn.py --use_deepspeed`` starts DeepSpeed
  training on Gaudi through the DeepSpeed launcher with ``--no_local_rank``; we do the same.
- ``srun``: inside a SLURM allocation, on any number of nodes and any backend. ``srun`` starts the
  T tasks itself; each task (``launch --slurm_task``) turns SLURM's task variables into the
  torch.distributed ones, so no ssh, hostfile or rendezvous server is needed.

``auto`` picks ``srun`` when the job owns a SLURM allocation and is not already inside a job step,
else the local launcher of the backend. Several nodes need SLURM. ``LLAVA_GEMMA_LAUNCHER``
overrides the choice (for example ``torchrun`` when Snakemake itself runs inside a one-node
``sbatch`` whose tasks cannot be split).
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import sys
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from llava_gemma.errors import UserError
from llava_gemma.train.gaudi import LAZY_MODE_ENV

LAUNCHERS = ("auto", "single", "torchrun", "deepspeed", "srun")
LAUNCHER_ENV = "LLAVA_GEMMA_LAUNCHER"


class LaunchError(UserError, ValueError):
    pass


@dataclass(frozen=True)
class LaunchRequest:
    """What a rule asks for: ``tasks`` ranks in all (one per device) spread over ``nodes`` nodes."""

    command: tuple[str, ...]  # a llava-gemma subcommand and its arguments, e.g. ("train", "--stage", ...)
    tasks: int = 1
    nodes: int = 1
    backend: str = "cpu"  # resolved: cpu | cuda | hpu
    cpus_per_task: int | None = None
    launcher: str = "auto"

    def __post_init__(self):
        if not self.command:
            raise LaunchError("llava-gemma launch needs a command after `--`, e.g. `-- train --stage stage1 ...`.")
        if self.tasks < 1 or self.nodes < 1:
            raise LaunchError(f"launch: tasks ({self.tasks}) and nodes ({self.nodes}) must be at least 1; "
                              "fix the rule's resources in your profile.")
        if self.tasks % self.nodes:
            raise LaunchError(f"launch: {self.tasks} tasks do not split evenly over {self.nodes} nodes; set the "
                              "rule's `tasks` resource to nodes x devices per node in your profile.")
        if self.launcher not in LAUNCHERS:
            raise LaunchError(f"launcher {self.launcher!r} is not one of {', '.join(LAUNCHERS)}; "
                              f"fix --launcher or ${LAUNCHER_ENV}.")

    @property
    def tasks_per_node(self) -> int:
        return self.tasks // self.nodes


@dataclass(frozen=True)
class LaunchPlan:
    kind: str  # single | torchrun | deepspeed | srun
    argv: tuple[str, ...]  # the process to exec; for ``single`` the llava-gemma command to run in-process
    env: dict[str, str] = field(default_factory=dict)  # added to the environment of the started process(es)


def in_slurm_allocation(environ: Mapping[str, str]) -> bool:
    return "SLURM_JOB_ID" in environ


def inside_slurm_step(environ: Mapping[str, str]) -> bool:
    """True inside an ``srun`` step (Snakemake's SLURM jobstep wraps non-MPI jobs in ``srun -n1``);
    a nested ``srun`` for more tasks would wait for resources the outer step holds."""
    return "SLURM_STEP_ID" in environ


def choose_launcher(request: LaunchRequest, environ: Mapping[str, str]) -> str:
    wanted = environ.get(LAUNCHER_ENV) or request.launcher
    if wanted not in LAUNCHERS:
        raise LaunchError(f"${LAUNCHER_ENV}={wanted!r} is not one of {', '.join(LAUNCHERS)}.")
    if wanted != "auto":
        return wanted
    if request.tasks == 1:
        return "single"
    if in_slurm_allocation(environ) and not inside_slurm_step(environ):
        return "srun"
    if request.nodes > 1:
        if inside_slurm_step(environ):
            raise LaunchError(
                f"{request.nodes} nodes requested, but this job already runs inside a one-task SLURM step; "
                "set `mpi: srun` among the training rule's resources in your SLURM profile (see profiles/slurm-gpu).")
        raise LaunchError(f"{request.nodes} nodes requested outside a SLURM allocation; run the workflow with a "
                          "SLURM profile (profiles/slurm-gpu or profiles/slurm-gaudi) or set nodes to 1.")
    return "deepspeed" if request.backend == "hpu" else "torchrun"


def hpu_env(backend: str, environ: Mapping[str, str]) -> dict[str, str]:
    """``PT_HPU_LAZY_MODE=1`` for Gaudi runs (lazy mode: graphs compiled once and replayed, which
    ``use_lazy_mode`` and HPU graphs need; Habana's PyTorch starts eager without it, as optimum-habana's
    examples note). It must be set before habana_frameworks is imported, so the launcher sets it; a
    value the user exported wins. ``auto`` counts as hpu where the Habana software is installed
    (importing it to ask for a device would be too late to set the mode)."""
    hpu = backend == "hpu" or (backend == "auto" and importlib.util.find_spec("habana_frameworks") is not None)
    return {LAZY_MODE_ENV: "1"} if hpu and LAZY_MODE_ENV not in environ else {}


def module_command(python: str, command: Sequence[str]) -> list[str]:
    return [python, "-m", "llava_gemma", *command]


def build_plan(request: LaunchRequest, environ: Mapping[str, str], *, python: str = sys.executable,
               master_port: int | None = None) -> LaunchPlan:
    """The exact command that starts the request's ranks (pure: the tests compare it)."""
    kind = choose_launcher(request, environ)
    command = list(request.command)
    env = hpu_env(request.backend, environ)
    if kind == "single":
        if request.tasks != 1:
            raise LaunchError(f"launcher single starts one process, but {request.tasks} tasks were requested.")
        return LaunchPlan("single", tuple(command), env)
    if kind in ("torchrun", "deepspeed") and request.nodes != 1:
        raise LaunchError(f"launcher {kind} runs on one node here, but {request.nodes} nodes were requested; "
                          "use a SLURM profile (srun) for several nodes.")
    if request.cpus_per_task and "OMP_NUM_THREADS" not in environ:
        env["OMP_NUM_THREADS"] = str(request.cpus_per_task)  # torchrun would force 1 thread per rank
    n = request.tasks_per_node
    if kind == "torchrun":
        argv = [python, "-m", "torch.distributed.run", "--standalone", "--nnodes=1", f"--nproc-per-node={n}",
                "-m", "llava_gemma", *command]
    elif kind == "deepspeed":
        port = master_port or 29500
        argv = [python, "-m", "deepspeed.launcher.runner", "--num_nodes=1", f"--num_gpus={n}", "--no_local_rank",
                f"--master_port={port}", "--module", "llava_gemma", *command]
    else:  # srun: this host runs the batch script, so it is the allocation's first node
        if master_port is not None:
            env["MASTER_PORT"] = str(master_port)
        env["LOCAL_WORLD_SIZE"] = str(n)  # tasks per node are uniform (--ntasks-per-node)
        argv = ["srun", f"--nodes={request.nodes}", f"--ntasks={request.tasks}", f"--ntasks-per-node={n}"]
        if request.cpus_per_task:
            # Snakemake's SLURM jobstep clears SLURM_CPUS_PER_TASK, so srun must be told again.
            argv.append(f"--cpus-per-task={request.cpus_per_task}")
        argv += ["--kill-on-bad-exit=1", *module_command(python, ["launch", "--slurm_task", "--", *command])]
    return LaunchPlan(kind, tuple(argv), env)


def first_host(nodelist: str) -> str:
    """The first host of a SLURM host list such as ``gpu[07-09,12],login1`` (-> ``gpu07``)."""
    depth, end = 0, len(nodelist)
    for i, ch in enumerate(nodelist):
        depth += ch == "["
        depth -= ch == "]"
        if ch == "," and depth == 0:
            end = i
            break
    first = nodelist[:end].strip()
    if not first:
        raise LaunchError(f"SLURM host list {nodelist!r} is empty; is this running inside an allocation?")
    return re.sub(r"\[([^\]]*)\]", lambda m: re.split(r"[-,]", m.group(1))[0], first)


def slurm_task_env(environ: Mapping[str, str]) -> dict[str, str]:
    """torch.distributed's variables for one ``srun`` task (rank 0 runs on the step's first node)."""
    try:
        rank = environ["SLURM_PROCID"]
        local_rank = environ["SLURM_LOCALID"]
        world = environ.get("SLURM_STEP_NUM_TASKS") or environ["SLURM_NTASKS"]
        job_id = environ["SLURM_JOB_ID"]
    except KeyError as missing:
        raise LaunchError(f"launch --slurm_task runs only as a task started by srun ({missing.args[0]} is not "
                          "set); use `llava-gemma launch --tasks N` instead.") from None
    nodelist = (environ.get("SLURM_STEP_NODELIST") or environ.get("SLURM_JOB_NODELIST")
                or environ.get("SLURM_NODELIST") or "")
    # Every task must agree on the port without talking: the launcher exports one, else derive it from the job.
    port = environ.get("MASTER_PORT") or str(20000 + zlib.crc32(job_id.encode()) % 20000)
    return {"RANK": rank, "LOCAL_RANK": local_rank, "WORLD_SIZE": world, "MASTER_ADDR": first_host(nodelist),
            "MASTER_PORT": port}


def execute(plan: LaunchPlan) -> None:
    """Replace this process by the launcher, so Snakemake's signals reach it directly."""
    program = plan.argv[0]
    if shutil.which(program) is None and not os.path.isabs(program):
        raise LaunchError(f"launcher program {program!r} is not on PATH; install it or set ${LAUNCHER_ENV}.")
    sys.stdout.flush()
    sys.stderr.flush()
    os.execvpe(program, list(plan.argv), {**os.environ, **plan.env})


def launch(command: Sequence[str], *, tasks: int, nodes: int, backend: str, cpus_per_task: int | None,
           launcher: str, slurm_task: bool, run_in_process) -> dict:
    """``llava-gemma launch``: run ``command`` here (one rank, or one srun task) or exec the launcher.

    ``run_in_process(argv)`` runs a llava-gemma command in this process and returns its result.
    """
    command = list(command[1:] if command[:1] == ["--"] else command)
    if command[:1] == ["launch"]:
        raise LaunchError("launch cannot launch itself; give the command to run, e.g. `-- train ...`.")
    if slurm_task:
        os.environ.update(slurm_task_env(os.environ))
        return run_in_process(command)
    if tasks > 1 and backend == "auto":
        from llava_gemma.train.backends import resolve_backend

        backend = resolve_backend(backend)  # only hpu changes the launcher
    request = LaunchRequest(tuple(command), tasks=tasks, nodes=nodes, backend=backend, cpus_per_task=cpus_per_task,
                            launcher=launcher)
    port = None
    if request.tasks > 1:
        from llava_gemma.train.backends import free_port

        port = free_port()
    plan = build_plan(request, os.environ, master_port=port)
    print(f"llava-gemma launch: {plan.kind}: {' '.join(plan.argv)}", file=sys.stderr, flush=True)
    if plan.kind == "single":
        os.environ.update(plan.env)  # before the command imports anything of Habana's
        return run_in_process(list(plan.argv))
    execute(plan)
    raise AssertionError("unreachable: exec returned")
