"""Packed training: each optimizer step's samples, in rows of one fixed length, micro-batches of a fixed row count.

The steps are the unpacked run's (train/sampler.py: the same samples in the same steps, the steps in
the same order, the longest first). Inside a step the samples go into rows of ``row_length`` tokens
by first-fit decreasing, whole samples only; the step's gradient is a sum over its samples, so
where a sample sits inside the step changes nothing. The rows are dealt to the ranks round-robin and
cut into micro-batches of ``rows`` rows, so every micro-batch has the shape ``rows x row_length``
(one HPU graph per stage); a step takes as many micro-batches as its tokens need (accumulation is a
loop, train/packed_step.py). Every rank runs the same number of micro-batches in a step (ZeRO-3's
gathers and ZeRO-2's reductions are collectives every rank joins), so the last round of a step may
hold empty rows: that is the padding left.

The sampler yields one key per (step, rank), step-major, so accelerate's sharding (batch i to rank
i mod world) hands rank r its own part of every step.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from llava_gemma.errors import UserError
from llava_gemma.train.sampler import length_grouped_order, shuffled_order


class PackingError(UserError, ValueError):
    """A sample longer than the packed row."""


@dataclass(frozen=True)
class StepPart:
    """One rank's share of one optimizer step: micro-batches of rows of sample indices, and the
    supervised tokens of the whole step over all ranks (the loss divides by it)."""

    micro_batches: tuple[tuple[tuple[int, ...], ...], ...]
    step_items: int


def pack_rows(lengths: Sequence[int], row_length: int) -> list[list[int]]:
    """Positions (into ``lengths``) packed into rows of at most ``row_length`` tokens, first-fit
    decreasing; inside a row the samples keep their order in ``lengths``."""
    rows: list[list[int]] = []
    free: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda k: -lengths[k]):  # stable: ties keep their order
        if lengths[i] > row_length:
            raise PackingError(f"a sample of {lengths[i]} tokens is longer than the packed row of {row_length} "
                               f"tokens; set the stage's pack_length to at least {lengths[i]} (or data.max_length).")
        for r, room in enumerate(free):
            if lengths[i] <= room:
                rows[r].append(i)
                free[r] -= lengths[i]
                break
        else:
            rows.append([i])
            free.append(row_length - lengths[i])
    return [sorted(row) for row in rows]


def split_step(step: np.ndarray, lengths: np.ndarray, items: np.ndarray, row_length: int, rows: int,
               world_size: int) -> list[StepPart]:
    """One step's samples (dataset indices) as ``world_size`` parts with equally many micro-batches;
    empty rows (``()``) fill the last round."""
    packed = [tuple(int(step[i]) for i in row) for row in pack_rows(lengths[step].tolist(), row_length)]
    per_round = rows * world_size
    rounds = -(-len(packed) // per_round)
    packed += [()] * (rounds * per_round - len(packed))
    step_items = int(items[step].sum())
    parts = []
    for rank in range(world_size):
        mine = packed[rank::world_size]
        parts.append(StepPart(tuple(tuple(mine[k:k + rows]) for k in range(0, len(mine), rows)), step_items))
    return parts


def steps_of(order: np.ndarray, global_batch: int) -> list[np.ndarray]:
    """The optimizer steps of a sample order: consecutive runs of the global batch (the last may be short)."""
    return [order[i:i + global_batch] for i in range(0, len(order), global_batch)]


class PackedStepSampler(torch.utils.data.Sampler[StepPart]):
    """The unpacked run's sample order (grouped by modality, or the longest-first shuffle),
    cut into its steps, each packed and dealt to the ranks; reseeded every epoch like that sampler."""

    def __init__(self, lengths: np.ndarray, has_image: np.ndarray, tokens: np.ndarray, items: np.ndarray, *,
                 micro_batch: int, global_batch: int, world_size: int, row_length: int, rows: int, seed: int,
                 grouped: bool, group_steps: int = 1):
        self.lengths = np.asarray(lengths)  # as prepared: what the unpacked sampler orders by
        self.tokens = np.asarray(tokens)  # tokens of each sample with this tower's image tokens: what a row holds
        self.has_image = np.asarray(has_image, dtype=bool)
        self.items = np.asarray(items)
        self.micro_batch, self.global_batch, self.world_size = micro_batch, global_batch, world_size
        self.row_length, self.rows, self.seed, self.grouped = row_length, rows, seed, grouped
        self.group_steps = group_steps
        self.epoch = 0
        self._parts: tuple[int, list[StepPart]] | None = None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def order(self) -> np.ndarray:
        seed, step_batches = self.seed + self.epoch, self.global_batch // self.micro_batch
        if self.grouped:
            return length_grouped_order(self.lengths, self.has_image, self.micro_batch, seed,
                                        step_batches=step_batches, group_steps=self.group_steps)
        return shuffled_order(self.lengths, self.micro_batch, seed, step_batches=step_batches)

    def parts(self) -> list[StepPart]:
        if self._parts is None or self._parts[0] != self.epoch:
            parts = [part for step in steps_of(self.order(), self.global_batch)
                     for part in split_step(step, self.tokens, self.items, self.row_length, self.rows,
                                            self.world_size)]
            self._parts = (self.epoch, parts)
        return self._parts[1]

    def __len__(self) -> int:
        return len(self.parts())

    def __iter__(self) -> Iterator[StepPart]:
        return iter(self.parts())


class PackedSteps(torch.utils.data.Dataset):
    """A dataset read by ``StepPart`` keys: each key gives the rows' samples of one rank's share of a step."""

    def __init__(self, samples: torch.utils.data.Dataset):
        self.samples = samples

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, part: StepPart) -> dict:
        return {"micro_batches": [[[self.samples[i] for i in row] for row in mb] for mb in part.micro_batches],
                "step_items": part.step_items}
