"""The padding a stage's device work carries: longest-row padding (cpu, cuda), length buckets (hpu
unpacked) or packed rows (train/packing.py), for the samples of a workload.

The samples are ordered and cut into steps as the training sampler does (train/sampler.py), for the
run's devices; the share is padded token slots over all token slots. ``llava-gemma estimate`` and
``plan`` print it, and tools/bench_packing.py prints the three ways side by side.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from llava_gemma.study.batch_plan import plan_batch
from llava_gemma.study.config import StageConfig
from llava_gemma.train.dataset import padded_width
from llava_gemma.train.packing import split_step, steps_of
from llava_gemma.train.sampler import length_grouped_order, shuffled_order


@dataclass(frozen=True)
class Padding:
    way: str  # "longest row" | "hpu buckets" | "packed RxL"
    slots: int  # token slots the devices process
    real: int  # sample tokens among them
    shapes: int  # distinct language-model input shapes (HPU graphs)
    images: tuple[int, int] | None = None  # fewest and most images in a packed micro-batch

    @property
    def share(self) -> float:
        return 1 - self.real / self.slots if self.slots else 0.0


def stage_order(lengths: np.ndarray, has_image: np.ndarray, stage: StageConfig, devices: int,
                seed: int = 0) -> tuple[np.ndarray, int]:
    """(sample order, micro-batch) as the training sampler draws them on ``devices`` processes."""
    plan = plan_batch(stage.global_batch_size, devices, stage.per_device_batch_size)
    steps = stage.global_batch_size // plan.micro_batch_size
    if stage.group_by_modality_length:
        return length_grouped_order(lengths, has_image, plan.micro_batch_size, seed, step_batches=steps,
                                    group_steps=stage.length_group_steps), \
            plan.micro_batch_size
    return shuffled_order(lengths, plan.micro_batch_size, seed, step_batches=steps), plan.micro_batch_size


def unpacked_padding(lengths: np.ndarray, order: np.ndarray, micro: int, buckets: list[int] | None) -> Padding:
    batches = [lengths[order[i:i + micro]] for i in range(0, len(order), micro)]
    widths = [padded_width(int(b.max()), buckets) for b in batches]
    return Padding("hpu buckets" if buckets else "longest row", int(sum(w * len(b) for w, b in zip(widths, batches))),
                   int(lengths.sum()), len({(len(b), w) for w, b in zip(widths, batches)}))


def packed_padding(lengths: np.ndarray, has_image: np.ndarray, order: np.ndarray, global_batch: int, devices: int,
                   row_length: int, rows: int) -> Padding:
    slots, images = 0, set()
    zeros = np.zeros(len(lengths), dtype=np.int64)
    for step in steps_of(order, global_batch):
        for part in split_step(step, lengths, zeros, row_length, rows, devices):
            for mb in part.micro_batches:
                slots += rows * row_length
                images.add(int(sum(has_image[i] for row in mb for i in row)))
    return Padding(f"packed {rows}x{row_length}", slots, int(lengths.sum()), 1, (min(images), max(images)))


def packing_floor(lengths: np.ndarray, order: np.ndarray, global_batch: int, devices: int, row_length: int,
                  rows: int) -> Padding:
    """The least padding any packing of these steps can leave with one shape and equal micro-batch
    counts per rank: each step fills whole rounds of ``devices x rows x row_length`` token slots,
    as if samples could be cut anywhere. A step of T tokens still takes ceil(T / round) rounds."""
    per_round = devices * rows * row_length
    slots = sum(-(-int(lengths[step].sum()) // per_round) * per_round for step in steps_of(order, global_batch))
    return Padding(f"floor {rows}x{row_length}", slots, int(lengths.sum()), 1)


def stage_padding(lengths: np.ndarray, has_image: np.ndarray, stage: StageConfig, *, backend: str, devices: int,
                  buckets: list[int] | None, seed: int = 0) -> Padding:
    """The padding of the way ``backend`` pads this stage: packed rows when the stage packs there,
    length buckets on hpu, else each micro-batch to its longest row."""
    order, micro = stage_order(lengths, has_image, stage, devices, seed)
    if stage.packing_for(backend):
        return packed_padding(lengths, has_image, order, stage.global_batch_size, devices,
                              stage.pack_length or int(lengths.max()), stage.pack_rows)
    return unpacked_padding(lengths, order, micro, buckets if backend == "hpu" else None)


def padding_lines(stages: dict[str, StageConfig], samples: dict[str, tuple[np.ndarray, np.ndarray] | None], *,
                  backend: str, devices: int, buckets: list[int] | None, image_tokens: int) -> list[str]:
    """Markdown lines: each stage's padding share on ``backend`` (unknown without per-sample lengths)."""
    lines = []
    for name, stage in stages.items():
        found = samples.get(name)
        if found is None:
            lines.append(f"- {name} padding on {backend}: unknown without prepared data (--prepared); "
                         "the hours above count sample tokens only")
            continue
        text, images = found
        pad = stage_padding(text + images * image_tokens, images.astype(bool), stage, backend=backend,
                            devices=devices, buckets=buckets)
        lines.append(f"- {name} padding on {backend} ({pad.way}, {devices} devices, {image_tokens} image tokens): "
                     f"{pad.share:.1%} of the token slots, {pad.shapes} input shape(s); device time is about "
                     f"{1 / (1 - pad.share):.2f}x the hours above, which count sample tokens only")
    return lines
