"""From the global batch the recipe states to the micro-batch and accumulation each process runs.

The config states the recipe's global batch (256 in stage 1, 128 in stage 2) and, per stage, the
largest micro-batch one device can hold (``per_device_batch_size``). The plan splits the global
batch evenly over the processes and takes the largest micro-batch not above that cap that divides
each process's share; gradient accumulation makes up the rest. So one config serves 8 Gaudis, 4
GPUs or one CPU with the same optimisation, and a device count that cannot reach the global batch
exactly is refused rather than rounded.
"""

from __future__ import annotations

from dataclasses import dataclass

from llava_gemma.errors import UserError


class BatchSizeError(UserError, ValueError):
    """The global batch cannot be split exactly over the processes."""


@dataclass(frozen=True)
class BatchPlan:
    global_batch_size: int
    world_size: int
    micro_batch_size: int  # per process and step
    accumulation_steps: int

    def __post_init__(self):
        if self.micro_batch_size * self.accumulation_steps * self.world_size != self.global_batch_size:
            raise ValueError(f"inconsistent batch plan {self}")


def plan_batch(global_batch_size: int, world_size: int, max_micro_batch: int, *,
               stage: str = "stage") -> BatchPlan:
    """The exact split of ``global_batch_size`` over ``world_size`` processes with micro-batches of
    at most ``max_micro_batch``; ``stage`` names the config section in the error message."""
    for name, value in (("global_batch_size", global_batch_size), ("per_device_batch_size", max_micro_batch),
                        ("world size", world_size)):
        if value < 1:
            raise BatchSizeError(f"train.{stage}: {name} is {value}; it must be at least 1.")
    if global_batch_size % world_size:
        raise BatchSizeError(
            f"train.{stage}.global_batch_size {global_batch_size} is not a multiple of the {world_size} training "
            f"processes (devices x nodes), so the global batch cannot be reached exactly; use a device count "
            f"that divides {global_batch_size}, or change global_batch_size.")
    per_process = global_batch_size // world_size
    micro = max(d for d in range(1, min(per_process, max_micro_batch) + 1) if per_process % d == 0)
    return BatchPlan(global_batch_size, world_size, micro, per_process // micro)
