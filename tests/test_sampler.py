"""Stage 2's modality-grouped steps (LLaVA-1.5's group_by_modality_length) and the length-sorted variant."""

from __future__ import annotations

import itertools

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from llava_gemma.train.dataset import PreparedDataset
from llava_gemma.train.sampler import (
    ModalityLengthGroupedSampler,
    even_micro_batches,
    length_grouped_order,
    shuffled_order,
)
from llava_gemma.train.trainer_setup import make_trainer
from transformers import Trainer, TrainingArguments


def _mix(n: int = 1003, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    has_image = rng.random(n) < 0.8
    lengths = np.where(has_image, rng.integers(20, 400, n), rng.integers(50, 1500, n))
    return lengths, has_image


def _batches(order: np.ndarray, batch: int) -> list[np.ndarray]:
    return [order[i:i + batch] for i in range(0, len(order), batch)]


def _padding(order: np.ndarray, lengths: np.ndarray, batch: int) -> float:
    padded = sum(len(b) * lengths[b].max() for b in _batches(order, batch))
    return 1 - lengths.sum() / padded


@pytest.mark.parametrize("n,seed", [(5, 0), (203, 1), (1003, 2), (5000, 3)])
def test_order_is_a_permutation_with_single_modality_batches(n, seed):
    lengths, has_image = _mix(n, seed)
    order = length_grouped_order(lengths, has_image, batch_size=8, seed=seed)
    assert sorted(order.tolist()) == list(range(len(lengths)))
    batches = _batches(order, 8)
    mixed = [i for i, b in enumerate(batches) if 0 < has_image[b].sum() < len(b)]
    assert len(mixed) <= 1 and all(i >= len(batches) - 2 for i in mixed)  # only where the leftovers meet


@pytest.mark.parametrize("n,seed", [(203, 1), (5000, 3)])
def test_every_optimizer_step_holds_one_modality_but_the_final_remainder(n, seed):
    """8 ranks x micro-batch 4 x accumulation 2: steps of 64 samples, as accelerate deals them out."""
    lengths, has_image = _mix(n, seed)
    order = length_grouped_order(lengths, has_image, batch_size=4, seed=seed, step_batches=8 * 2)
    assert sorted(order.tolist()) == list(range(n))
    steps = _batches(order, 64)
    mixed = [i for i, s in enumerate(steps) if 0 < has_image[s].sum() < len(s)]
    assert len(mixed) <= 1 and all(i >= len(steps) - 2 for i in mixed)
    sorted_groups = length_grouped_order(lengths, has_image, batch_size=4, seed=seed, step_batches=16,
                                         group_steps=50)
    assert _padding(sorted_groups, lengths, 4) < 0.15  # micro-batches neighbour in length (uniform: > 0.3)


def test_even_micro_batches_deal_the_longest_first_to_the_lightest():
    """LLaVA-1.5's split into even chunks: 10 -> first, 9 -> second, 8 -> second (9 < 10), 1 -> first."""
    lengths = np.array([8, 1, 10, 9])
    assert even_micro_batches(np.arange(4), lengths, 2).tolist() == [2, 1, 3, 0]


def test_llava_steps_are_random_draws_with_micro_batches_of_even_work():
    """group_steps 1 (the default): every step spans the modality's lengths (what packing needs), and
    its micro-batches carry about equal token totals, the k-th holding the step's k-th longest."""
    lengths, has_image = _mix(5000, 3)
    step = 4 * 16
    llava = length_grouped_order(lengths, has_image, batch_size=4, seed=3, step_batches=16)
    banded = length_grouped_order(lengths, has_image, batch_size=4, seed=3, step_batches=16, group_steps=50)
    full = [s for s in _batches(llava, step)[:-2] if len(s) == step]

    def spread(order):  # mean within-step standard deviation of length
        return np.mean([lengths[s].std() for s in _batches(order, step)[:-2]])

    assert spread(llava) > 0.8 * lengths[has_image].std() > 4 * spread(banded)
    for s in full:
        totals = lengths[s].reshape(16, 4).sum(axis=1)
        assert totals.max() - totals.min() <= lengths[s].max()
        widest = lengths[s].reshape(16, 4).max(axis=1)
        assert widest.tolist() == sorted(lengths[s], reverse=True)[:16]


@pytest.mark.parametrize("group_steps", [1, 50])
def test_batch_order_is_random_not_sorted(group_steps):
    lengths, has_image = _mix()
    order = length_grouped_order(lengths, has_image, 8, seed=1, group_steps=group_steps)
    firsts = [lengths[b].max() for b in _batches(order, 8)[:-2]]
    # Sorted batches would make the longest-row sequence monotone over each group of 50 batches.
    assert sum(a < b for a, b in itertools.pairwise(firsts)) > len(firsts) // 4


def test_sampler_is_reproducible_and_reseeded_per_epoch():
    lengths, has_image = _mix()
    sampler = ModalityLengthGroupedSampler(lengths, has_image, batch_size=8, seed=3)
    first = list(sampler)
    assert first == list(ModalityLengthGroupedSampler(lengths, has_image, 8, 3))  # a resumed run replays it
    sampler.set_epoch(1)
    assert list(sampler) != first and sorted(sampler) == sorted(first)
    assert len(sampler) == len(lengths)


def test_prepared_dataset_modality_column(tmp_path):
    path = tmp_path / "data.parquet"
    pq.write_table(pa.table({"input_ids": [[1, 2], [3], [4, 5, 6]], "labels": [[1, 2], [3], [4, 5, 6]],
                             "image": ["coco/1.jpg", None, ""], "length": [2, 1, 3]}), path)
    assert PreparedDataset(path, tmp_path).has_image().tolist() == [True, False, False]


class _Echo(torch.nn.Module):
    """A stand-in model: the Trainer only needs parameters to build its data loader."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))


@pytest.fixture
def fresh_accelerate_state(monkeypatch):
    """A Trainer without DeepSpeed, whatever earlier tests left behind in this process: building
    TrainingArguments with a DeepSpeed config sets ACCELERATE_USE_DEEPSPEED and accelerate's
    process-wide state, which a later plain Trainer would trip over."""
    from accelerate.state import AcceleratorState

    monkeypatch.delenv("ACCELERATE_USE_DEEPSPEED", raising=False)
    AcceleratorState._reset_state(reset_partial_state=True)
    yield
    AcceleratorState._reset_state(reset_partial_state=True)


def test_trainer_draws_grouped_batches(tmp_path, fresh_accelerate_state):
    lengths, has_image = _mix(203)
    path = tmp_path / "data.parquet"
    ids = [list(range(n)) for n in lengths]
    pq.write_table(pa.table({"input_ids": ids, "labels": ids, "length": lengths,
                             "image": ["coco/x.jpg" if h else None for h in has_image]}), path)
    dataset = PreparedDataset(path, tmp_path)
    args = TrainingArguments(output_dir=str(tmp_path / "work"), per_device_train_batch_size=8, use_cpu=True,
                             report_to=[], seed=5, remove_unused_columns=False)

    def collate(rows):  # lengths and modality only: no images are read
        return {"length": torch.tensor([len(r["input_ids"]) for r in rows]),
                "image": torch.tensor([r["image_path"] is not None for r in rows])}

    grouped = make_trainer("cpu", model=_Echo(), args=args, precision="fp32", train_dataset=dataset,
                           data_collator=collate, group_by_modality_length=True)
    assert isinstance(grouped, Trainer) and isinstance(grouped._get_train_sampler(), ModalityLengthGroupedSampler)
    batches = list(grouped.get_train_dataloader())
    assert sum(len(b["length"]) for b in batches) == len(lengths)
    assert sum(not (b["image"].all() or not b["image"].any()) for b in batches) <= 1
    assert batches[0]["length"].max() == lengths.max()  # the longest step first
    plain = make_trainer("cpu", model=_Echo(), args=args, precision="fp32", train_dataset=dataset,
                         data_collator=collate)
    assert not plain._get_train_sampler().grouped  # a uniform shuffle, the longest step first
    batches = list(plain.get_train_dataloader())
    assert batches[0]["length"].max() == lengths.max() and sum(len(b["length"]) for b in batches) == len(lengths)
    assert sum(0 < b["image"].sum() < len(b["image"]) for b in batches) > 1  # modalities mixed: no grouping


def _steps_padded(order: np.ndarray, lengths: np.ndarray, batch: int, step_batches: int) -> list[tuple[int, int]]:
    """(widest micro-batch, padded tokens) of every full step."""
    step = batch * step_batches
    found = []
    for i in range(0, len(order) - len(order) % step, step):
        widths = lengths[order[i:i + step]].reshape(step_batches, batch).max(axis=1)
        found.append((int(widths.max()), int(widths.sum()) * batch))
    return found


@pytest.mark.parametrize("grouped", [True, False])
@pytest.mark.parametrize("n,seed", [(203, 1), (5000, 3)])
def test_the_step_with_the_most_padded_tokens_comes_first(grouped, n, seed):
    """8 ranks x micro-batch 4 x accumulation 2, as accelerate deals the micro-batches out."""
    lengths, has_image = _mix(n, seed)
    if grouped:
        order = length_grouped_order(lengths, has_image, batch_size=4, seed=seed, step_batches=16)
    else:
        order = shuffled_order(lengths, batch_size=4, seed=seed, step_batches=16)
    assert sorted(order.tolist()) == list(range(n))
    steps = _steps_padded(order, lengths, 4, 16)
    if grouped:  # the remainder of each modality (less than a step) goes last: not a step
        steps = steps[:sum(int(k.sum()) // 64 for k in (has_image, ~has_image))]
    assert steps[0] == max(steps)
    first = order[:64]
    longest = int(np.argmax(lengths))
    full_of_its_kind = (has_image == has_image[longest]).sum() >= 64 if grouped else True
    # pulled out of the remainder when a step can take it (ties: another sample of that length may lead)
    assert (lengths[first].max() == lengths[longest]) == full_of_its_kind
    if grouped:  # one modality, and the first micro-batch is the widest
        assert len(set(has_image[first])) == 1
        assert lengths[first[:4]].max() == lengths[first].max()
    # Still a shuffle: the rest of the steps are not sorted by size.
    rest = [w for w, _ in steps[1:]]
    if len(rest) >= 8:
        assert sum(a < b for a, b in itertools.pairwise(rest)) > len(rest) // 4


def test_longest_first_orders_are_deterministic_and_reseeded():
    lengths, has_image = _mix()
    for grouped in (True, False):
        sampler = ModalityLengthGroupedSampler(lengths, has_image, batch_size=8, seed=3, grouped=grouped)
        first = list(sampler)
        assert first == list(ModalityLengthGroupedSampler(lengths, has_image, 8, 3, grouped=grouped))
        sampler.set_epoch(1)
        again = list(sampler)
        assert again != first and sorted(again) == sorted(first)
        assert lengths[again[:8]].max() == lengths[first[:8]].max() == lengths.max()
