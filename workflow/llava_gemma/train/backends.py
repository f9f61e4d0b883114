"""Which device a training run uses, what that device needs, and the process environment.

``cpu`` runs the same HF Trainer + DeepSpeed path as the accelerators (gloo, one process per
rank); ``cuda`` needs visible GPUs; ``hpu`` needs the Habana stack and optimum-habana, which is
imported only on that path because it cannot even be imported elsewhere (its version check fails
without the Habana software).
"""

from __future__ import annotations

import importlib.util
import os
import socket
from dataclasses import dataclass

from llava_gemma.errors import UserError

BACKENDS = ("cpu", "cuda", "hpu")


class BackendUnavailable(UserError, RuntimeError):
    pass


@dataclass(frozen=True)
class BackendTraits:
    """What differs between backends beyond the Trainer class (see train/trainer_setup.py)."""

    name: str
    # Activations recomputed in backward: the 7B LM at 2048 tokens does not fit otherwise.
    gradient_checkpointing: bool
    # HPU graphs are compiled per input shape: pad to a few fixed lengths, not to each batch's longest.
    pads_to_buckets: bool
    # Image decoding and the tower's processor run in workers so the device does not wait.
    dataloader_workers: int
    # A last, smaller micro-batch is one more shape to compile on HPU; dropping it costs < 1 batch.
    drop_last_batch: bool
    attn_implementation: str = "sdpa"


TRAITS = {
    "cpu": BackendTraits("cpu", gradient_checkpointing=False, pads_to_buckets=False, dataloader_workers=0,
                         drop_last_batch=False),
    "cuda": BackendTraits("cuda", gradient_checkpointing=True, pads_to_buckets=False, dataloader_workers=4,
                          drop_last_batch=False),
    "hpu": BackendTraits("hpu", gradient_checkpointing=True, pads_to_buckets=True, dataloader_workers=4,
                         drop_last_batch=True),
}


def _habana_available() -> bool:
    try:
        import habana_frameworks.torch.hpu as hthpu
    except ImportError:
        return False
    return hthpu.is_available()


def _optimum_habana_installed() -> bool:
    # find_spec locates the package without running its __init__ (which needs the Habana stack).
    try:
        return importlib.util.find_spec("optimum.habana") is not None
    except ImportError:  # no `optimum` at all
        return False


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def resolve_backend(requested: str) -> str:
    """``auto`` picks hpu, then cuda, then cpu; an explicit choice must be usable or fails clearly."""
    if requested not in ("auto", *BACKENDS):
        raise BackendUnavailable(f"train.backend {requested!r} is not one of auto, {', '.join(BACKENDS)}; "
                                 "fix it in the config.")
    habana = requested in ("auto", "hpu") and _habana_available()
    if requested == "hpu" and not habana:
        raise BackendUnavailable("train.backend is hpu but the Habana software (habana_frameworks) is missing or "
                                 "sees no Gaudi; run on a Gaudi node inside Intel's Gaudi PyTorch image, or set "
                                 "train.backend to auto.")
    if habana and not _optimum_habana_installed():
        # Also under `auto`: silently training on the CPU of a Gaudi node would take months.
        raise BackendUnavailable("this is a Gaudi node but optimum-habana is not installed; install it with "
                                 "`pip install -e .[hpu]` (see envs/hpu.yaml), or set train.backend to cpu.")
    if habana:
        return "hpu"
    if requested == "cuda" and not _cuda_available():
        raise BackendUnavailable("train.backend is cuda but torch sees no GPU; set train.backend to auto or cpu, "
                                 "or install a CUDA build of torch.")
    if requested == "auto":
        return "cuda" if _cuda_available() else "cpu"
    return requested


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def skip_shared_memory_comm_build(backend: str, world_size: int) -> bool:
    """One CPU process has no peers to share memory with, yet DeepSpeed's CPU accelerator compiles
    its shared-memory all-reduce op (deepspeed_shm_comm) when its communication starts: about 50 s
    on the first job of a fresh machine, and a second job waits on the build lock. Marking the op
    unavailable makes DeepSpeed skip it (it then uses gloo alone); runs of several ranks keep it."""
    if backend != "cpu" or world_size != 1:
        return False
    import deepspeed.ops

    deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False
    return True


def ensure_single_process_env() -> None:
    """A lone process (no launcher) still needs torch.distributed's variables, or DeepSpeed
    falls back to MPI discovery and fails. A launcher (torchrun, deepspeed, srun) sets them."""
    if "RANK" in os.environ:
        return
    os.environ.update({"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1",
                       "MASTER_PORT": str(free_port())})
