"""Throughput accounting for ``train_metrics.json``: real vs padded tokens, FLOPs, MFU, peak memory.

Tokens are counted where the batches really arrive, in a forward pre-hook on the model, so the
figures hold whatever the collator padded to (longest row or a length bucket) and however many
data-loader workers built the batches.
"""

from __future__ import annotations

import resource
import sys
from pathlib import Path

import torch

from llava_gemma.train.flops import CellShapes, accounting_metrics, peak_tflops, prepared_counts


class TokenCounter:
    """Counts the token slots (padded) and real tokens (attention mask) of every training forward."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.padded = 0
        self.real = 0
        self._handle = model.register_forward_pre_hook(self._count, with_kwargs=True)

    def _count(self, module, args, kwargs) -> None:
        if not module.training:
            return
        ids, mask = kwargs.get("input_ids"), kwargs.get("attention_mask")
        if ids is not None:
            self.padded += ids.numel()
            self.real += int(mask.sum()) if mask is not None else ids.numel()

    def totals(self) -> tuple[int, int]:
        """(real, padded) summed over all ranks."""
        counts = torch.tensor([self.real, self.padded], dtype=torch.int64)  # HPUs have no float64
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            # nccl and hccl reduce only tensors on their own device; gloo reduces host tensors.
            device = {"nccl": "cuda", "hccl": "hpu"}.get(torch.distributed.get_backend(), "cpu")
            counts = counts.to(device)
            torch.distributed.all_reduce(counts)
        return int(counts[0]), int(counts[1])

    def close(self) -> None:
        self._handle.remove()


def device_name(backend: str) -> str | None:
    if backend == "cuda":
        return torch.cuda.get_device_name(0)
    if backend == "hpu":
        import habana_frameworks.torch.hpu as hthpu  # only on the hpu path

        return hthpu.get_device_name()
    return None


def peak_memory_gib(backend: str) -> float:
    """Peak device memory of this rank (host RSS on cpu)."""
    if backend == "cuda":
        return torch.cuda.max_memory_allocated() / 2**30
    if backend == "hpu":
        import habana_frameworks.torch.hpu as hthpu

        return hthpu.max_memory_allocated() / 2**30
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return rss / (2**30 if sys.platform == "darwin" else 2**20)


def throughput_metrics(model_config, stage_name: str, data_parquet: Path, *, counter: TokenCounter,
                       samples_processed: int, wall_seconds: float, world_size: int, backend: str,
                       configured_peak_tflops: float | None) -> dict:
    real, padded = counter.totals()
    text_tokens, images, supervised = prepared_counts(data_parquet)
    per_second = (lambda n: n / wall_seconds) if wall_seconds > 0 else (lambda n: None)
    return {
        "samples_processed": samples_processed,
        "tokens_real": real, "tokens_padded": padded,
        "padding_fraction": 1 - real / padded if padded else None,
        "tokens_per_second": per_second(real), "padded_tokens_per_second": per_second(padded),
        "peak_memory_gib": peak_memory_gib(backend),
        **accounting_metrics(CellShapes.from_llava_config(model_config), stage_name, text_tokens, images,
                             samples_processed=samples_processed, wall_seconds=wall_seconds, devices=world_size,
                             supervised=supervised,
                             peak_tflops_per_device=peak_tflops(configured_peak_tflops, device_name(backend))),
    }
