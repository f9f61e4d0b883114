"""Packed training (train/packing.py, train/packed_batches.py, model/packed_attention.py, train/packed_step.py):
the steps are the unpacked run's, every row holds whole samples, a packed row computes exactly what each of
its samples computes alone, and a packed step's loss and gradients equal the unpacked step's (fp32, the
shipped toy 2B LM and toy CLIP from models/)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from llava_gemma.model.assemble import assemble_llava, image_token_count, set_trainable
from llava_gemma.model.chat import IMAGE_TOKEN
from llava_gemma.model.packed_attention import attach_packed_attention, block_diagonal_mask
from llava_gemma.train.dataset import LlavaCollator
from llava_gemma.train.masking import IGNORE_INDEX
from llava_gemma.train.packed_batches import PackedCollator
from llava_gemma.train.packing import PackedStepSampler, PackingError, pack_rows, split_step, steps_of
from llava_gemma.train.sampler import length_grouped_order
from llava_gemma.train.supervised_loss import supervised_loss
from PIL import Image

from tests import test_supervised_loss as tiny

fresh_accelerate_state = tiny.fresh_accelerate_state  # the fixture, for the Trainer test below

MODELS = Path(__file__).resolve().parents[1] / "models"


# --- the packer -------------------------------------------------------------------------------


def test_rows_hold_whole_samples_within_the_row_length():
    lengths = np.random.default_rng(0).integers(20, 300, size=200).tolist()
    rows = pack_rows(lengths, 512)
    assert sorted(i for row in rows for i in row) == list(range(200))  # every sample once, whole
    assert all(sum(lengths[i] for i in row) <= 512 for row in rows)
    assert sum(lengths) / (512 * len(rows)) > 0.97  # first-fit decreasing leaves little room
    with pytest.raises(PackingError, match="pack_length"):
        pack_rows([10, 600], 512)


def test_every_rank_runs_as_many_micro_batches_and_the_step_keeps_its_samples():
    lengths = np.full(50, 100)
    items = np.arange(50)
    parts = split_step(np.arange(50), lengths, items, row_length=300, rows=2, world_size=3)
    # 50 samples, 3 a row: 17 rows, dealt to 3 ranks in micro-batches of 2 rows: 3 rounds, one empty row.
    assert [len(p.micro_batches) for p in parts] == [3, 3, 3]
    assert all(len(mb) == 2 for p in parts for mb in p.micro_batches)
    placed = sorted(i for p in parts for mb in p.micro_batches for row in mb for i in row)
    assert placed == list(range(50))
    assert {p.step_items for p in parts} == {int(items.sum())}


def test_the_packed_steps_are_the_unpacked_steps():
    rng = np.random.default_rng(1)
    lengths, has_image = rng.integers(30, 200, 300), rng.random(300) < 0.6
    sampler = PackedStepSampler(lengths, has_image, lengths, np.ones(300, dtype=int), micro_batch=4,
                                global_batch=16, world_size=2, row_length=256, rows=2, seed=5, grouped=True)
    order = length_grouped_order(lengths, has_image, 4, 5, step_batches=4)
    parts = list(sampler)
    assert len(parts) == len(sampler) == 2 * len(steps_of(order, 16))
    for k, step in enumerate(steps_of(order, 16)):
        packed = [i for p in parts[2 * k:2 * k + 2] for mb in p.micro_batches for row in mb for i in row]
        assert sorted(packed) == sorted(step.tolist())


def test_the_floor_fills_whole_rounds_and_no_packing_goes_below_it():
    from llava_gemma.analysis.planning.padding import packed_padding, packing_floor

    # Two steps of 4 samples on 2 ranks, rows of 100: a step's 240 tokens need 2 rounds of 200 slots
    # at the floor; first-fit fits one 60 per row, 4 rows: also 2 rounds.
    lengths, order = np.full(8, 60), np.arange(8)
    floor = packing_floor(lengths, order, 4, 2, 100, 1)
    packed = packed_padding(lengths, np.ones(8, dtype=bool), order, 4, 2, 100, 1)
    assert floor.slots == packed.slots == 2 * 400 and floor.share == pytest.approx(1 - 480 / 800)
    rng = np.random.default_rng(0)
    lengths, has_image = rng.integers(20, 100, 400), rng.random(400) < 0.7
    order = length_grouped_order(lengths, has_image, 4, 0, step_batches=4)
    floor = packing_floor(lengths, order, 16, 2, 256, 1)
    assert floor.slots <= packed_padding(lengths, has_image, order, 16, 2, 256, 1).slots
    assert floor.slots % (2 * 256) == 0 and floor.slots >= lengths.sum()


def test_the_mask_is_causal_inside_each_sample_only():
    positions = torch.tensor([[0, 1, 2, 0, 1, 0]])
    allowed = block_diagonal_mask(positions, torch.float32)[0, 0] == 0
    expected = torch.tensor([[1, 0, 0, 0, 0, 0], [1, 1, 0, 0, 0, 0], [1, 1, 1, 0, 0, 0],
                             [0, 0, 0, 1, 0, 0], [0, 0, 0, 1, 1, 0], [0, 0, 0, 0, 0, 1]], dtype=torch.bool)
    assert torch.equal(allowed, expected)


# --- the toy model: packed rows compute what each sample computes alone --------------------------


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    model, processor = assemble_llava(MODELS / "toy-gemma-2b", MODELS / "toy-clip", torch.float32)
    set_trainable(model, "stage2")  # connector and LM train, the tower is frozen, as in stage 2
    model.train()
    tok = processor.tokenizer
    collator = LlavaCollator(processor.image_processor, tok.convert_tokens_to_ids(IMAGE_TOKEN),
                             image_token_count(processor), tok.pad_token_id)
    root = tmp_path_factory.mktemp("packing_images")
    rng = np.random.default_rng(0)
    paths = []
    for k in range(3):
        path = root / f"{k}.png"
        Image.fromarray(rng.integers(0, 255, (40, 30 + 10 * k, 3), dtype=np.uint8)).save(path)
        paths.append(str(path))
    return model, collator, paths


def sample(collator, rng, prompt: int, answer: int, image: str | None) -> dict:
    """A prepared row: bos, an optional ``<image>``, a prompt (masked) and an answer (supervised)."""
    head = [2] + ([collator.image_token_id] if image else [])
    ids = np.array(head + rng.integers(10, 900, prompt).tolist() + rng.integers(10, 900, answer).tolist())
    labels = np.full(len(ids), IGNORE_INDEX)
    labels[-answer:] = ids[-answer:]
    return {"input_ids": ids, "labels": labels, "image_path": image}


def samples(collator, paths) -> list[dict]:
    rng = np.random.default_rng(3)
    return [sample(collator, rng, 7, 5, paths[0]), sample(collator, rng, 12, 9, None),
            sample(collator, rng, 4, 6, paths[1]), sample(collator, rng, 9, 3, None),
            sample(collator, rng, 5, 8, paths[2])]


def logits_of(model, batch: dict) -> torch.Tensor:
    with torch.no_grad():
        return model(**{k: v for k, v in batch.items() if k != "labels"}).logits


def spans(collator, rows: list[list[dict]]) -> list[tuple[int, int, int]]:
    """(row, start, length) of every sample in the packed rows."""
    found = []
    for r, row in enumerate(rows):
        at = 0
        for s in row:
            n = len(collator.expand(s["input_ids"], s["labels"])[0])
            found.append((r, at, n))
            at += n
    return found


@pytest.fixture(scope="module")
def packed_logits(toy):
    model, collator, paths = toy
    data = samples(collator, paths)
    rows = [[data[0], data[1], data[2]], [data[3], data[4]]]
    packer = PackedCollator(collator, row_length=112, rows=2)
    handle = attach_packed_attention(model)
    try:
        packed = logits_of(model, packer.micro_batch(rows))
        perturbed_rows = [[data[0], dict(data[1], input_ids=data[1]["input_ids"][::-1].copy()), data[2]],
                          [data[3], data[4]]]
        perturbed = logits_of(model, packer.micro_batch(perturbed_rows))
    finally:
        handle.remove()
    return data, rows, packed, perturbed


def test_a_packed_row_computes_each_sample_as_alone(toy, packed_logits):
    model, collator, _ = toy
    _, rows, packed, _ = packed_logits
    assert [r for r, _, _ in spans(collator, rows)] == [0, 0, 0, 1, 1]  # several samples a row, images in two
    for (r, at, n), s in zip(spans(collator, rows), [x for row in rows for x in row]):
        alone = logits_of(model, collator([s]))[0]
        torch.testing.assert_close(packed[r, at:at + n], alone[:n], atol=1e-5, rtol=0)


def test_changing_one_sample_changes_no_other(toy, packed_logits):
    _, collator, _ = toy
    _, rows, packed, perturbed = packed_logits
    where = spans(collator, rows)
    for k, (r, at, n) in enumerate(where):
        same = torch.equal(packed[r, at:at + n], perturbed[r, at:at + n])
        assert same == (k != 1), k  # only sample 1 (row 0, second) was changed


def test_a_packed_step_has_the_unpacked_loss_and_gradients(toy):
    model, collator, paths = toy
    data = samples(collator, paths)
    items = sum(int((s["labels"][1:] != IGNORE_INDEX).sum()) for s in data)

    def step(batches: list[dict]) -> tuple[float, dict]:
        model.zero_grad(set_to_none=True)
        total = 0.0
        for batch in batches:
            loss, _ = supervised_loss(model, batch, num_items_in_batch=torch.tensor(items), chunk_rows=8)
            loss.backward()
            total += loss.item()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        model.zero_grad(set_to_none=True)
        return total, grads

    unpacked_loss, unpacked = step([collator(data[:2]), collator(data[2:4]), collator(data[4:])])
    handle = attach_packed_attention(model)
    try:
        packer = PackedCollator(collator, row_length=64, rows=2)  # 4 rows: two micro-batches of two rows
        rows = [[data[0]], [data[1], data[3]], [data[2]], [data[4]]]
        packed_loss, packed = step([packer.micro_batch(rows[:2]), packer.micro_batch(rows[2:])])
    finally:
        handle.remove()
    assert packed_loss == pytest.approx(unpacked_loss, rel=1e-5)
    assert packed.keys() == unpacked.keys() and len(packed) > 10
    for name, grad in unpacked.items():  # fp32 sums in another order: 1e-5 of the tensor's scale
        torch.testing.assert_close(packed[name], grad, rtol=1e-5, atol=1e-5 * float(grad.abs().max()), msg=name)


# --- loss normalisation -------------------------------------------------------------------------


@pytest.mark.usefixtures("fresh_accelerate_state")
@pytest.mark.parametrize("normalisation", ["step_tokens", "micro_batch"])
def test_the_loss_normalisation_setting(normalisation, tmp_path):
    """step_tokens divides by the step's supervised tokens (as packed steps do); micro_batch is LLaVA-1.5's
    mean of the micro-batch, whatever the Trainer counted for the step."""
    from llava_gemma.train.trainer_setup import make_trainer
    from transformers import TrainingArguments

    model = tiny.tiny_llava()
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to=[], remove_unused_columns=False)
    trainer = make_trainer("cpu", model=model, args=args, precision="fp32", train_dataset=None, data_collator=None,
                           loss_normalisation=normalisation)
    model.train()
    inputs = tiny.batch()
    supervised = int((inputs["labels"][:, 1:] != IGNORE_INDEX).sum())
    step_items = torch.tensor(4 * supervised)  # as if the step held three more micro-batches like this one
    with torch.no_grad():
        loss = trainer.compute_loss(model, inputs, num_items_in_batch=step_items)
        mean, _ = supervised_loss(model, inputs)
    assert trainer.model_accepts_loss_kwargs == (normalisation == "step_tokens")
    expected = mean / 4 if normalisation == "step_tokens" else mean
    torch.testing.assert_close(loss, expected, rtol=1e-6, atol=0)


def test_packing_refuses_the_micro_batch_mean():
    from llava_gemma.study.config import ConfigError, _check_packing

    with pytest.raises(ConfigError, match="loss_normalisation: step_tokens"):
        _check_packing({"packing": {"hpu": True}, "loss_normalisation": "micro_batch"}, "train.stage2", "c")
    _check_packing({"packing": {"hpu": False}, "loss_normalisation": "micro_batch"}, "train.stage2", "c")


# --- the padding estimate and plan print ------------------------------------------------------------


def test_estimate_counts_the_padding_left(tmp_path):
    from llava_gemma.analysis.planning.estimate import run_estimate

    from tests.test_flops import ROOT, _prepared

    path = _prepared(tmp_path / "instruct" / "data.parquet", [(101, "coco/1.jpg"), (51, None), (301, "gqa/2.jpg")])
    # 676 + 51 + 876 = 1,603 tokens: one packed row of 2,048, and 7 empty rows for the other devices.
    packed = run_estimate(ROOT / "config.yaml", prepared=[path])["markdown"]
    assert f"stage2 padding on hpu (packed 1x2048, 8 devices, 576 image tokens): {1 - 1603 / (8 * 2048):.1%}" \
        in packed
    assert "stage1 padding on hpu: unknown without prepared data" in packed
    # cpu pads the one micro-batch of three to its longest row, 876 tokens.
    longest = run_estimate(ROOT / "config.yaml", prepared=[path], backend="cpu")["markdown"]
    assert f"stage2 padding on cpu (longest row, 8 devices, 576 image tokens): {1 - 1603 / (3 * 876):.1%}" in longest
    # plan prints the same line, with its study's largest tower (CLIP-L/14 at 336 px: 576 image tokens).
    from llava_gemma.analysis.planning.plan import run_plan

    assert f"stage2 padding on hpu (packed 1x2048, 8 devices, 576 image tokens): {1 - 1603 / (8 * 2048):.1%}" \
        in run_plan([ROOT / "config.yaml"], prepared=[path])
