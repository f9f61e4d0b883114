"""LLaVA-1.5's ``group_by_modality_length``: optimizer steps of one modality, batches of similar length.

The recipe's stage 2 groups image and text-only samples apart and sorts by length inside large random
groups, so a batch pads little; the steps are then shuffled, so the order stays random at the step
level. Consecutive runs of ``batch_size`` indices form the micro-batches, which is how the Trainer's
data loader (and accelerate's per-rank sharding, batch i to rank i mod world) cuts the stream; one
optimizer step takes world size x accumulation consecutive micro-batches. So the unit of grouping is
the step (LLaVA's megabatch of world size x micro-batch, here times accumulation too): every rank
and every accumulation micro-batch of a step hold the same modality, except in the final remainder.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

# Steps per sorted group: HF's LengthGroupedSampler uses the same multiple (its mega_batch_mult).
GROUP_BATCHES = 50


def length_grouped_order(lengths: np.ndarray, has_image: np.ndarray, batch_size: int, seed: int,
                         group_batches: int = GROUP_BATCHES, step_batches: int = 1) -> np.ndarray:
    """A permutation of all samples, in optimizer steps of ``step_batches`` micro-batches of
    ``batch_size``. Every step holds one modality and each micro-batch neighbours in length, except
    at the end: the leftovers of the two modalities (each less than a step) go last, image ones first,
    so no step boundary shifts and at most one step, of the last two, mixes modalities."""
    rng = np.random.default_rng(seed)
    step = batch_size * step_batches
    full: list[np.ndarray] = []
    rest: list[np.ndarray] = []
    for members in (np.flatnonzero(has_image), np.flatnonzero(~has_image)):
        shuffled = rng.permutation(members)
        group = step * group_batches  # a multiple of the step: only a modality's last group leaves a rest
        for start in range(0, len(shuffled), group):
            chunk = shuffled[start:start + group]
            chunk = chunk[np.argsort(-lengths[chunk], kind="stable")]
            cut = len(chunk) - len(chunk) % step
            full += [chunk[i:i + step] for i in range(0, cut, step)]
            rest.append(chunk[cut:])
    steps = [full[i] for i in rng.permutation(len(full))]
    tail = np.concatenate(rest) if rest else np.empty(0, dtype=np.int64)
    return np.concatenate([*steps, tail]).astype(np.int64)


class ModalityLengthGroupedSampler(torch.utils.data.Sampler[int]):
    """The order above, reseeded every epoch (the Trainer calls ``set_epoch``), so a resumed run
    replays the same order and skips the batches it has already seen."""

    def __init__(self, lengths: np.ndarray, has_image: np.ndarray, batch_size: int, seed: int,
                 step_batches: int = 1):
        self.lengths = np.asarray(lengths)
        self.has_image = np.asarray(has_image, dtype=bool)
        self.batch_size = batch_size
        self.step_batches = step_batches  # micro-batches per optimizer step, over all ranks
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self) -> Iterator[int]:
        order = length_grouped_order(self.lengths, self.has_image, self.batch_size, self.seed + self.epoch,
                                     step_batches=self.step_batches)
        return iter(order.tolist())


class GroupedSamplerMixin:
    """Put before a Trainer class (HF's or GaudiTrainer) to draw training batches grouped as above."""

    def _get_train_sampler(self, train_dataset=None):
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        # data_seed wins when set, as in accelerate's seeded sampler.
        seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
        # Every rank builds the same order; accelerate then deals micro-batch i to rank i mod world.
        step_batches = self.args.world_size * self.args.gradient_accumulation_steps
        return ModalityLengthGroupedSampler(dataset.lengths, dataset.has_image(), self.args.per_device_train_batch_size,
                                            seed, step_batches=step_batches)
