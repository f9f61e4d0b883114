"""The ranks of one evaluation job: which device each uses, and the barriers between its phases.

``llava-gemma launch --tasks N -- evaluate ...`` starts N processes (torchrun, DeepSpeed's launcher
or srun set RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT). They share no tensors, only
files in the work folder, so a gloo group serves for the barriers on every backend.
"""

from __future__ import annotations

import datetime
import os

from llava_gemma.eval.answers import Shard

# A rank that finishes its share early waits for the others at a barrier: allow a long benchmark.
BARRIER_TIMEOUT = datetime.timedelta(hours=24)


def rank_device(device: str) -> str:
    """The device of this rank: its own GPU by LOCAL_RANK; on Gaudi each process is given its own
    card by the Habana runtime (as under optimum-habana's launcher), so plain ``hpu``."""
    if device == "cuda":
        return f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    return device


class RankGroup:
    """Barriers among the job's ranks; a no-op for one rank."""

    def __init__(self, shard: Shard):
        self.shard = shard
        self._started = False
        if shard.world_size > 1:
            import torch.distributed as dist

            if not dist.is_initialized():
                dist.init_process_group("gloo", rank=shard.rank, world_size=shard.world_size,
                                        timeout=BARRIER_TIMEOUT)
                self._started = True

    @property
    def is_main(self) -> bool:
        return self.shard.rank == 0

    def barrier(self) -> None:
        if self.shard.world_size > 1:
            import torch.distributed as dist

            dist.barrier()

    def close(self) -> None:
        if self._started:
            import torch.distributed as dist

            dist.destroy_process_group()
            self._started = False
