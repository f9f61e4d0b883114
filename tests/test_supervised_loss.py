"""The loss at supervised positions only (train/supervised_loss.py) against HF's full-logits loss, in fp32:
same loss, same gradients, on a tiny LLaVA and on a head of Gemma's real width and vocabulary."""

from __future__ import annotations

import pytest
import torch
from llava_gemma.model.assemble import llava_config
from llava_gemma.train.supervised_loss import (
    IGNORE_INDEX,
    SupervisedLossMixin,
    head_loss_sum,
    normalise,
    padded_rows,
    supervised_loss,
    supervised_rows,
)
from llava_gemma.train.trainer_setup import make_trainer
from transformers import CLIPVisionConfig, GemmaConfig, LlavaForConditionalGeneration, TrainingArguments
from transformers.loss.loss_utils import ForCausalLMLoss

IMAGE_ID = 127
TOWER = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                         image_size=28, patch_size=7)
GEMMA = GemmaConfig(vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                    num_attention_heads=4, num_key_value_heads=2, head_dim=8)


def tiny_llava() -> LlavaForConditionalGeneration:
    torch.manual_seed(0)
    config = llava_config(GEMMA, TOWER, image_token_index=IMAGE_ID, image_seq_length=16)
    return LlavaForConditionalGeneration._from_config(config, attn_implementation="eager").float()


def batch() -> dict:
    """Two image rows, right-padded: prompt and image tokens masked, answers supervised, as the collator builds them."""
    torch.manual_seed(1)
    width = 40
    ids = torch.zeros(2, width, dtype=torch.long)
    labels = torch.full((2, width), IGNORE_INDEX)
    mask = torch.zeros(2, width, dtype=torch.long)
    for i, (prompt, answer) in enumerate([(5, 9), (3, 14)]):
        row = torch.cat([torch.randint(3, 100, (prompt,)), torch.full((16,), IMAGE_ID),
                         torch.randint(3, 100, (answer,))])
        ids[i, :len(row)], mask[i, :len(row)] = row, 1
        labels[i, prompt + 16:len(row)] = row[prompt + 16:]
    return {"input_ids": ids, "attention_mask": mask, "labels": labels, "pixel_values": torch.randn(2, 3, 28, 28)}


def grads(model) -> dict[str, torch.Tensor]:
    found = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    return found


def assert_same(new: dict, old: dict) -> None:
    assert new.keys() == old.keys()
    for name in old:
        torch.testing.assert_close(new[name], old[name], rtol=1e-5, atol=1e-7, msg=name)


@pytest.mark.parametrize("items", [None, 37])
@pytest.mark.parametrize("checkpointing", [False, True])
def test_tiny_llava_loss_and_gradients_equal_the_full_logits_path(items, checkpointing):
    model = tiny_llava()
    model.train()
    if checkpointing:
        model.gradient_checkpointing_enable({"use_reentrant": False})
    inputs = batch()
    extra = {} if items is None else {"num_items_in_batch": torch.tensor(items)}
    old_loss = model(**inputs, **extra).loss
    old_loss.backward()
    old = grads(model)
    # chunk_rows 4: 23 supervised positions make 6 chunks, the last padded with an ignored row.
    new_loss, outputs = supervised_loss(model, inputs, chunk_rows=4,
                                        num_items_in_batch=None if items is None else torch.tensor(items))
    new_loss.backward()
    torch.testing.assert_close(new_loss, old_loss, rtol=1e-5, atol=0)
    assert outputs.logits.shape[1] == 1  # the model's own head ran on one position, not forty
    assert_same(grads(model), old)


def test_gemma_width_head_loss_and_gradients_equal_the_full_logits_path():
    """Gemma's real head (2,048 x 256,000) on a few tokens; the weight's gradient is compared through
    two random projections and some whole rows, so no two 2 GB gradients are held at once."""
    torch.manual_seed(2)
    head = torch.nn.Linear(2048, 256_000, bias=False, device="meta").to_empty(device="cpu")
    torch.nn.init.normal_(head.weight, std=0.02)  # Gemma's initializer_range; faster than the default init
    hidden = torch.randn(2, 6, 2048, requires_grad=True)
    labels = torch.tensor([[IGNORE_INDEX, IGNORE_INDEX, 17, 255_999, 3, IGNORE_INDEX],
                           [IGNORE_INDEX, 99_000, 5, IGNORE_INDEX, 200_123, 7]])  # 6 shifted: padded to 8
    u, v = torch.randn(256_000), torch.randn(2048)
    rows = torch.tensor([0, 3, 5, 17, 99_000, 128_000, 255_999])

    def run(loss_fn):
        loss = loss_fn()
        grad_hidden, grad_weight = torch.autograd.grad(loss, [hidden, head.weight])
        return loss.detach(), grad_hidden, (grad_weight @ v, u @ grad_weight, grad_weight[rows].clone())

    old = run(lambda: ForCausalLMLoss(head(hidden), labels, 256_000))
    new = run(lambda: normalise(*head_loss_sum(hidden, labels, head, chunk_rows=8)))
    torch.testing.assert_close(new[0], old[0], rtol=1e-5, atol=0)
    torch.testing.assert_close(new[1], old[1], rtol=1e-5, atol=1e-9)
    for a, b in zip(new[2], old[2]):  # sums over 256,000 rows cancel: tolerance relative to the largest entry
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5 * float(b.abs().max()))


def test_softcapping_matches_the_capped_full_logits():
    torch.manual_seed(3)
    head = torch.nn.Linear(16, 50, bias=False)
    hidden = torch.randn(1, 8, 16) * 10
    labels = torch.randint(0, 50, (1, 8))
    full = head(hidden)
    capped = torch.tanh(full / 3.0) * 3.0
    total, count = head_loss_sum(hidden, labels, head, softcap=3.0, chunk_rows=2)
    torch.testing.assert_close(normalise(total, count), ForCausalLMLoss(capped, labels, 50))
    assert not torch.allclose(normalise(total, count), ForCausalLMLoss(full, labels, 50))


def test_rows_are_the_shifted_supervised_positions_padded_to_few_shapes():
    labels = torch.tensor([[IGNORE_INDEX, 4, 5, IGNORE_INDEX], [IGNORE_INDEX, IGNORE_INDEX, IGNORE_INDEX, 9]])
    positions, targets, count = supervised_rows(labels, chunk_rows=8)
    assert count == 3 and positions[:3].tolist() == [0, 1, 6] and targets[:3].tolist() == [4, 5, 9]
    assert len(positions) == 8 and (targets[3:] == IGNORE_INDEX).all()  # padded to a multiple of the chunk
    assert [padded_rows(n, 8) for n in (0, 1, 3, 8, 9, 17)] == [8, 8, 8, 8, 16, 24]
    assert [padded_rows(n, 1024) for n in (1, 128, 129, 562, 1025)] == [128, 128, 256, 640, 1152]


@pytest.fixture
def fresh_accelerate_state(monkeypatch):
    """A clean accelerate state: an earlier test's DeepSpeed arguments leave process-wide state behind."""
    from accelerate.state import AcceleratorState

    monkeypatch.delenv("ACCELERATE_USE_DEEPSPEED", raising=False)
    AcceleratorState._reset_state(reset_partial_state=True)
    yield
    AcceleratorState._reset_state(reset_partial_state=True)


def test_every_backend_trainer_takes_the_supervised_loss(tmp_path, fresh_accelerate_state):
    """The Trainer make_trainer builds returns the same loss as HF's own compute_loss, with
    num_items_in_batch as the Trainer passes it under gradient accumulation."""
    from transformers import Trainer

    model = tiny_llava()
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to=[], remove_unused_columns=False)
    trainer = make_trainer("cpu", model=model, args=args, precision="fp32", train_dataset=None,
                           data_collator=None)
    assert isinstance(trainer, SupervisedLossMixin)
    plain = Trainer(model=model, args=args)
    inputs, items = batch(), torch.tensor(50)
    model.train()
    ours = trainer.compute_loss(model, inputs, num_items_in_batch=items)
    theirs = plain.compute_loss(model, dict(inputs), num_items_in_batch=items)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=0)
