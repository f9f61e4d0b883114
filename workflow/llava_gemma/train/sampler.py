"""LLaVA-1.5's ``group_by_modality_length``: optimizer steps of one modality, batches of similar length.

The recipe's stage 2 groups image and text-only samples apart and sorts by length inside large random
groups, so a batch pads little; the steps are then shuffled, so the order stays random at the step
level. Consecutive runs of ``batch_size`` indices form the micro-batches, which is how the Trainer's
data loader (and accelerate's per-rank sharding, batch i to rank i mod world) cuts the stream; one
optimizer step takes world size x accumulation consecutive micro-batches. So the unit of grouping is
the step (LLaVA's megabatch of world size x micro-batch, here times accumulation too): every rank
and every accumulation micro-batch of a step hold the same modality, except in the final remainder.

The step with the most padded tokens (its widest micro-batch first, then its padded total) goes
first, as transformers' ``LengthGroupedSampler`` puts its longest megabatch first: a micro-batch
that does not fit in device memory fails at step 1 (and in the smoke run), not hours in. Stages
that do not group (stage 1) take a uniform shuffle with the same longest step first. Within a
step the micro-batches are sorted longest first (grouped) so the first micro-batch of every
rank is its widest.
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
    tail = np.concatenate(rest) if rest else np.empty(0, dtype=np.int64)
    steps, tail = longest_step_first([full[i] for i in rng.permutation(len(full))], tail, lengths, batch_size,
                                     kind=has_image, sort_steps=True)
    return np.concatenate([*steps, tail]).astype(np.int64)


def longest_step_first(steps: list[np.ndarray], tail: np.ndarray, lengths: np.ndarray, batch_size: int,
                       kind: np.ndarray | None = None, sort_steps: bool = False) -> tuple[list[np.ndarray], np.ndarray]:
    """(steps, remainder) with the step of most padded tokens swapped to the front: the widest
    micro-batch decides (memory is spent per micro-batch), the step's padded total breaks ties, then
    the order. A longest sample left in the remainder first trades places with the shortest sample
    of a full step of its ``kind`` (modality), if there is one; ``sort_steps`` re-sorts that step
    longest first, as the grouped order keeps its steps."""
    if not steps:
        return steps, tail
    steps, tail = [s.copy() for s in steps], tail.copy()
    if len(tail) and lengths[tail].max() > max(lengths[s].max() for s in steps):
        j = int(np.argmax(lengths[tail]))
        same = [i for i, s in enumerate(steps) if kind is None or kind[s[0]] == kind[tail[j]]]
        if same:
            step = steps[same[0]]
            m = int(np.argmin(lengths[step]))
            step[m], tail[j] = tail[j], step[m]
            if sort_steps:
                steps[same[0]] = step[np.argsort(-lengths[step], kind="stable")]
    widths = [lengths[s].reshape(-1, batch_size).max(axis=1) for s in steps]  # full steps: whole micro-batches
    widest = np.array([w.max() for w in widths])
    padded = np.array([int(w.sum()) * batch_size for w in widths])
    best = int(np.lexsort((-np.arange(len(steps)), padded, widest))[-1])  # ties: the earliest
    steps[0], steps[best] = steps[best], steps[0]
    return steps, tail


def shuffled_order(lengths: np.ndarray, batch_size: int, seed: int, step_batches: int = 1) -> np.ndarray:
    """A uniform shuffle cut into steps of ``step_batches`` micro-batches, the longest step first
    (the remainder, less than a step, stays last)."""
    order = np.random.default_rng(seed).permutation(len(lengths))
    step = batch_size * step_batches
    cut = len(order) - len(order) % step
    steps, tail = longest_step_first([order[i:i + step] for i in range(0, cut, step)], order[cut:], lengths,
                                     batch_size)
    return np.concatenate([*steps, tail]).astype(np.int64)


class ModalityLengthGroupedSampler(torch.utils.data.Sampler[int]):
    """The order above (``grouped``) or the longest-first shuffle, reseeded every epoch (the Trainer
    calls ``set_epoch``), so a resumed run replays the same order and skips the batches it has already seen."""

    def __init__(self, lengths: np.ndarray, has_image: np.ndarray, batch_size: int, seed: int,
                 step_batches: int = 1, grouped: bool = True):
        self.lengths = np.asarray(lengths)
        self.has_image = np.asarray(has_image, dtype=bool)
        self.batch_size = batch_size
        self.step_batches = step_batches  # micro-batches per optimizer step, over all ranks
        self.seed = seed
        self.grouped = grouped
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self) -> Iterator[int]:
        seed = self.seed + self.epoch
        if self.grouped:
            order = length_grouped_order(self.lengths, self.has_image, self.batch_size, seed,
                                         step_batches=self.step_batches)
        else:
            order = shuffled_order(self.lengths, self.batch_size, seed, step_batches=self.step_batches)
        return iter(order.tolist())


class GroupedSamplerMixin:
    """Put before a Trainer class (HF's or GaudiTrainer) to draw training batches grouped as above;
    ``LongestFirstSamplerMixin`` draws them in a uniform shuffle with the longest step first."""

    group_by_modality = True

    def _get_train_sampler(self, train_dataset=None):
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        # data_seed wins when set, as in accelerate's seeded sampler.
        seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
        # Every rank builds the same order; accelerate then deals micro-batch i to rank i mod world.
        step_batches = self.args.world_size * self.args.gradient_accumulation_steps
        return ModalityLengthGroupedSampler(dataset.lengths, dataset.has_image(), self.args.per_device_train_batch_size,
                                            seed, step_batches=step_batches, grouped=self.group_by_modality)


class LongestFirstSamplerMixin(GroupedSamplerMixin):
    group_by_modality = False
