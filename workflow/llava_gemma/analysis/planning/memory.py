"""Predicted memory per rank of each real cell: host memory while the model loads, device memory
of the model states while it trains (part of ``llava-gemma estimate``).

Parameter counts come from the meta-device cell (model/architectures/); the byte counts follow the
ZeRO paper's accounting of mixed-precision Adam (Rajbhandari et al. 2020, section 3.1):

- weights: 2 bytes per parameter in bf16 (4 in fp32), on every rank; ZeRO-3 partitions them over ranks;
- gradients of the trained parameters: 2 bytes (4 in fp32), partitioned from ZeRO-2 on;
- optimizer: an fp32 master copy and Adam's two moments of the trained parameters, 12 bytes,
  partitioned from ZeRO-1 on (with fp32 training the master copy is the weights: 8 bytes).

Host memory while loading, per rank: the LM and tower in the load precision on every rank; under
ZeRO-3 (the training arguments built first, train/run.py) each rank keeps its partition plus, for a
moment, the largest whole tensor being partitioned. Rank 0 also reads every checkpoint file to
scatter it: those pages are memory-mapped page cache (counted in its resident size while used, but
shared and reclaimable), not counted here. tools/bench_load_memory.py measured, for a 1.02B LM on
2 ranks: fp32 4.97 GB per rank, bf16 2.28, ZeRO-3 1.82 on rank 1 and 2.53 on rank 0.

On the device, one micro-batch's activations and LM head with its loss come on top
(analysis/planning/step_memory.py), at the stage's micro-batch and rows of ``data.max_length`` tokens: the
longest step, which the sampler runs first. Not counted: communication buffers and the allocator's slack.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

from llava_gemma.analysis.planning.step_memory import StepMemory, device_warning

GB = 1e9


@dataclass(frozen=True)
class MemoryEstimate:
    cell: str
    stage: str
    zero_stage: int
    ranks: int
    parameters: int
    trainable: int
    host_load_fp32_gb: float  # every rank loads the whole model in fp32 (the way before train/run.py's load_dtype)
    host_load_gb: float  # in the training precision; partitioned while loading under ZeRO-3
    device_weights_gb: float
    device_gradients_gb: float
    device_optimizer_gb: float
    step: StepMemory | None = None  # activations and head/loss of one micro-batch at data.max_length
    device_capacity_gb: float | None = None

    @property
    def device_model_states_gb(self) -> float:
        return self.device_weights_gb + self.device_gradients_gb + self.device_optimizer_gb

    @property
    def device_total_gb(self) -> float:
        return self.device_model_states_gb + (self.step.total_gb if self.step else 0.0)

    @property
    def warning(self) -> str | None:
        if self.step is None:
            return None
        return device_warning(self.cell, self.stage, self.device_total_gb, self.device_capacity_gb,
                              self.step.micro_batch, self.step.row_tokens, self.step.checkpointing)

    def with_step(self, step: StepMemory, capacity_gb: float | None) -> MemoryEstimate:
        return replace(self, step=step, device_capacity_gb=capacity_gb)

    def as_dict(self) -> dict:
        found = {**asdict(self), "device_model_states_gb": self.device_model_states_gb,
                 "device_total_gb": self.device_total_gb, "warning": self.warning}
        if self.step:
            found["step"] = {**asdict(self.step), "total_gb": self.step.total_gb}
        return found


def memory_estimate(cell: str, stage: str, *, parameters: int, trainable: int, largest_tensor: int, zero_stage: int,
                    ranks: int, precision: str = "bf16") -> MemoryEstimate:
    """Bytes per rank (as GB) of one cell in one stage; see the module text for the accounting."""
    weight_bytes = 2 if precision == "bf16" else 4
    optimizer_bytes = 12 if precision == "bf16" else 8
    weights = parameters * weight_bytes / (ranks if zero_stage >= 3 else 1)
    host_load = weights + (largest_tensor * weight_bytes if zero_stage >= 3 else 0)
    gradients = trainable * weight_bytes / (ranks if zero_stage >= 2 else 1)
    optimizer = trainable * optimizer_bytes / (ranks if zero_stage >= 1 else 1)
    return MemoryEstimate(cell, stage, zero_stage, ranks, parameters, trainable, parameters * 4 / GB, host_load / GB,
                          weights / GB, gradients / GB, optimizer / GB)


def cell_memory(cell: str, meta, stages: dict[str, int], ranks: int, precision: str) -> list[MemoryEstimate]:
    """``meta``: the cell's ``MetaCell``; ``stages``: stage name -> its ZeRO stage."""
    parameters = sum(meta.parameters().values())
    largest = max(p.numel() for p in meta.model.parameters())
    return [memory_estimate(cell, stage, parameters=parameters, trainable=meta.trainable(stage), largest_tensor=largest,
                            zero_stage=zero, ranks=ranks, precision=precision) for stage, zero in stages.items()]


def memory_table(estimates: list[MemoryEstimate], backend: str) -> str:
    capacity = next((e.device_capacity_gb for e in estimates if e.device_capacity_gb), None)
    device = f"of {capacity:g} GB" if capacity else "(no capacity known)"
    lines = [f"Memory per rank ({backend}; GB = 1e9 bytes; device {device}: weights + gradients + optimizer, and one "
             "micro-batch at data.max_length: activations, LM head + loss at supervised positions)",
             "",
             "| cell | stage | ZeRO | ranks | parameters (B) | trained (B) | host, fp32 load | host, as loaded now* | "
             "device model states | micro-batch x tokens | activations | head + loss (full logits) | device total |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|"]
    for e in estimates:
        step = e.step
        shape = f"{step.micro_batch} x {step.row_tokens}{' (ckpt)' if step.checkpointing else ''}" if step else "-"
        acts = f"{step.activations_gb:.1f}" if step else "-"
        head = f"{step.head_loss_gb:.1f} ({step.head_loss_full_logits_gb:.1f})" if step else "-"
        lines.append(f"| {e.cell} | {e.stage} | {e.zero_stage} | {e.ranks} | {e.parameters / 1e9:.2f} | "
                     f"{e.trainable / 1e9:.2f} | {e.host_load_fp32_gb:.1f} | {e.host_load_gb:.1f} | "
                     f"{e.device_model_states_gb:.1f} | {shape} | {acts} | {head} | {e.device_total_gb:.1f} |")
    lines += ["", "*under ZeRO-3, rank 0 also maps every checkpoint file while it scatters the weights (page cache)"]
    lines += [f"Warning: {w}" for w in memory_warnings(estimates)]
    return "\n".join(lines)


def memory_warnings(estimates: list[MemoryEstimate]) -> list[str]:
    return [e.warning for e in estimates if e.warning]
