"""LLaVA-1.5's ``group_by_modality_length``: batches of one modality and of similar length.

The recipe's stage 2 groups image and text-only samples apart and sorts by length inside large random
groups, so a batch pads little; the batches are then shuffled, so the order stays random at the
batch level. Consecutive runs of ``batch_size`` indices form the batches, which is how the Trainer's
data loader (and accelerate's per-rank sharding, batch i to rank i mod world) cuts the stream.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

# Batches per sorted group: HF's LengthGroupedSampler uses the same multiple (its mega_batch_mult).
GROUP_BATCHES = 50


def length_grouped_order(lengths: np.ndarray, has_image: np.ndarray, batch_size: int, seed: int,
                         group_batches: int = GROUP_BATCHES) -> np.ndarray:
    """A permutation of all samples. Every batch holds one modality and neighbours in length, except
    one: the leftovers of the two modalities (each fewer than a batch) go last, image ones first, so
    no batch boundary shifts and at most one batch, in the last two, mixes modalities."""
    rng = np.random.default_rng(seed)
    full: list[np.ndarray] = []
    rest: list[np.ndarray] = []
    for members in (np.flatnonzero(has_image), np.flatnonzero(~has_image)):
        shuffled = rng.permutation(members)
        group = batch_size * group_batches
        for start in range(0, len(shuffled), group):
            chunk = shuffled[start:start + group]
            chunk = chunk[np.argsort(-lengths[chunk], kind="stable")]
            cut = len(chunk) - len(chunk) % batch_size
            full += [chunk[i:i + batch_size] for i in range(0, cut, batch_size)]
            rest.append(chunk[cut:])
    batches = [full[i] for i in rng.permutation(len(full))]
    tail = np.concatenate(rest) if rest else np.empty(0, dtype=np.int64)
    return np.concatenate([*batches, tail]).astype(np.int64)


class ModalityLengthGroupedSampler(torch.utils.data.Sampler[int]):
    """The order above, reseeded every epoch (the Trainer calls ``set_epoch``), so a resumed run
    replays the same order and skips the batches it has already seen."""

    def __init__(self, lengths: np.ndarray, has_image: np.ndarray, batch_size: int, seed: int):
        self.lengths = np.asarray(lengths)
        self.has_image = np.asarray(has_image, dtype=bool)
        self.batch_size = batch_size
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self) -> Iterator[int]:
        order = length_grouped_order(self.lengths, self.has_image, self.batch_size, self.seed + self.epoch)
        return iter(order.tolist())


class GroupedSamplerMixin:
    """Put before a Trainer class (HF's or GaudiTrainer) to draw training batches grouped as above."""

    def _get_train_sampler(self, train_dataset=None):
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        # data_seed wins when set, as in accelerate's seeded sampler.
        seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
        return ModalityLengthGroupedSampler(dataset.lengths, dataset.has_image(), self.args.per_device_train_batch_size,
                                            seed)
