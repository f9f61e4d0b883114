"""LLaVA-1.5's ``group_by_modality_length``: optimizer steps of one modality, micro-batches of even length.

LLaVA-1.5's stage-2 sampler (``LengthGroupedSampler`` in its llava_trainer.py, called with the world
size times the accumulation steps) draws each optimizer step at random from one modality (image or
text-only samples), sorts the step's samples longest first and deals them to the step's micro-batches
greedily, each sample to the micro-batch with the fewest tokens so far, so the micro-batches of a
step carry about equal work; the steps of both modalities are then shuffled. A step therefore holds
samples of every length, which is what packing needs (train/packing.py), and its micro-batches each
pad to their own longest sample.

``group_steps`` > 1 sorts larger random groups of that many steps by length and cuts them into
steps of neighbouring lengths (transformers' ``LengthGroupedSampler`` with ``mega_batch_mult``): far
less padding without packing, but each step then holds samples of one length band, which is not
LLaVA-1.5's recipe. Consecutive runs of ``batch_size`` indices form the micro-batches, which is how
the Trainer's data loader (and accelerate's per-rank sharding, batch i to rank i mod world) cuts the
stream; one optimizer step takes world size x accumulation consecutive micro-batches. Every rank and
every accumulation micro-batch of a step hold the same modality, except in the final remainder.

The step with the most padded tokens (its widest micro-batch first, then its padded total) goes
first, as transformers' ``LengthGroupedSampler`` puts its longest megabatch first: a micro-batch
that does not fit in device memory fails at step 1 (and in the smoke run), not hours in. Stages
that do not group (stage 1) take a uniform shuffle with the same longest step first. Within a
step the micro-batches come longest first, so the first micro-batch of every rank is its widest.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import torch


def even_micro_batches(step: np.ndarray, lengths: np.ndarray, batch_size: int) -> np.ndarray:
    """A step's samples as micro-batches of ``batch_size`` with about equal token totals (LLaVA-1.5's
    split into even chunks): longest first, each to the open micro-batch with the fewest tokens, ties
    to the earliest, so micro-batch k holds the k-th longest sample as its widest."""
    if len(step) % batch_size:
        return step[np.argsort(-lengths[step], kind="stable")]  # a short remainder: longest first
    count = len(step) // batch_size
    batches: list[list[int]] = [[] for _ in range(count)]
    totals = np.zeros(count)
    for index in step[np.argsort(-lengths[step], kind="stable")]:
        k = int(np.argmin(totals))
        batches[k].append(int(index))
        totals[k] += lengths[index]
        if len(batches[k]) == batch_size:
            totals[k] = np.inf  # full
    return np.array([i for batch in batches for i in batch], dtype=np.int64)


def length_grouped_order(lengths: np.ndarray, has_image: np.ndarray, batch_size: int, seed: int,
                         step_batches: int = 1, group_steps: int = 1) -> np.ndarray:
    """A permutation of all samples, in optimizer steps of ``step_batches`` micro-batches of
    ``batch_size``. Every step holds one modality, except at the end: the leftovers of the two
    modalities (each less than a step) go last, image ones first, so no step boundary shifts and at
    most one step, of the last two, mixes modalities. ``group_steps`` 1 is LLaVA-1.5's order (random
    steps, even micro-batches); more sorts groups of that many steps by length (see the module)."""
    rng = np.random.default_rng(seed)
    step = batch_size * step_batches
    full: list[np.ndarray] = []
    rest: list[np.ndarray] = []
    for members in (np.flatnonzero(has_image), np.flatnonzero(~has_image)):
        shuffled = rng.permutation(members)
        group = step * group_steps  # a multiple of the step: only a modality's last group leaves a rest
        for start in range(0, len(shuffled), group):
            chunk = shuffled[start:start + group]
            if group_steps > 1:
                chunk = chunk[np.argsort(-lengths[chunk], kind="stable")]
            cut = len(chunk) - len(chunk) % step
            full += [chunk[i:i + step] for i in range(0, cut, step)]
            rest.append(chunk[cut:])
    tail = np.concatenate(rest) if rest else np.empty(0, dtype=np.int64)

    def arrange(s: np.ndarray) -> np.ndarray:
        return (even_micro_batches(s, lengths, batch_size) if group_steps == 1
                else s[np.argsort(-lengths[s], kind="stable")])

    steps, tail = longest_step_first([full[i] for i in rng.permutation(len(full))], tail, lengths, batch_size,
                                     kind=has_image, arrange=arrange)
    return np.concatenate([*steps, tail]).astype(np.int64)


def longest_step_first(steps: list[np.ndarray], tail: np.ndarray, lengths: np.ndarray, batch_size: int,
                       kind: np.ndarray | None = None, arrange: Callable[[np.ndarray], np.ndarray] | None = None
                       ) -> tuple[list[np.ndarray], np.ndarray]:
    """(steps, remainder) with the step of most padded tokens swapped to the front: the widest
    micro-batch decides (memory is spent per micro-batch), the step's padded total breaks ties, then
    the order. A longest sample left in the remainder first trades places with the shortest sample
    of a full step of its ``kind`` (modality), if there is one. ``arrange`` orders a step's samples
    into its micro-batches before they are measured (None: as they stand)."""
    if not steps:
        return steps, tail
    arrange = arrange or (lambda s: s)
    steps, tail = [s.copy() for s in steps], tail.copy()
    if len(tail) and lengths[tail].max() > max(lengths[s].max() for s in steps):
        j = int(np.argmax(lengths[tail]))
        same = [i for i, s in enumerate(steps) if kind is None or kind[s[0]] == kind[tail[j]]]
        if same:
            step = steps[same[0]]
            m = int(np.argmin(lengths[step]))
            step[m], tail[j] = tail[j], step[m]
    steps = [arrange(s) for s in steps]
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
                 step_batches: int = 1, grouped: bool = True, group_steps: int = 1):
        self.lengths = np.asarray(lengths)
        self.has_image = np.asarray(has_image, dtype=bool)
        self.batch_size = batch_size
        self.step_batches = step_batches  # micro-batches per optimizer step, over all ranks
        self.seed = seed
        self.grouped = grouped
        self.group_steps = group_steps
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self) -> Iterator[int]:
        seed = self.seed + self.epoch
        if self.grouped:
            order = length_grouped_order(self.lengths, self.has_image, self.batch_size, seed,
                                         step_batches=self.step_batches, group_steps=self.group_steps)
        else:
            order = shuffled_order(self.lengths, self.batch_size, seed, step_batches=self.step_batches)
        return iter(order.tolist())


class GroupedSamplerMixin:
    """Put before a Trainer class (HF's or GaudiTrainer) to draw training batches grouped as above;
    ``LongestFirstSamplerMixin`` draws them in a uniform shuffle with the longest step first."""

    group_by_modality = True
    length_group_steps = 1  # the stage's setting (trainer_setup.py); 1 is LLaVA-1.5's order

    def _get_train_sampler(self, train_dataset=None):
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        # data_seed wins when set, as in accelerate's seeded sampler.
        seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
        # Every rank builds the same order; accelerate then deals micro-batch i to rank i mod world.
        step_batches = self.args.world_size * self.args.gradient_accumulation_steps
        return ModalityLengthGroupedSampler(dataset.lengths, dataset.has_image(), self.args.per_device_train_batch_size,
                                            seed, step_batches=step_batches, grouped=self.group_by_modality,
                                            group_steps=self.length_group_steps)


class LongestFirstSamplerMixin(GroupedSamplerMixin):
    group_by_modality = False
