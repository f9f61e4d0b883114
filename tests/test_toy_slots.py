"""Slot look-ups (toy/slots.py): the scene's 9 cell vectors stand where the image tokens will."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch
from llava_gemma.model.chat import IMAGE_TOKEN
from llava_gemma.toy import lookup, slots
from llava_gemma.toy import scenes as sc
from transformers import AutoTokenizer, GemmaForCausalLM

LM = Path(__file__).resolve().parents[1] / "models" / "toy-gemma-2b"


@pytest.fixture(scope="module")
def lm():
    torch.manual_seed(0)
    return GemmaForCausalLM.from_pretrained(LM), AutoTokenizer.from_pretrained(LM)


def test_each_cell_holds_its_objects_words_in_the_patches_order():
    scene = sc.Scene(objects=[sc.Obj("star", "pink", "small", 2), sc.Obj("circle", "red", "large", 6)],
                     text="SUN", text_cell=4)
    cells = slots.cell_words(scene)
    assert len(cells) == slots.N_SLOTS
    assert cells[2] == ["small", "pink", "star"] and cells[6] == ["large", "red", "circle"]
    assert cells[4] == ["word", '"SUN"']
    assert all(cells[k] == [] for k in (0, 1, 3, 5, 7, 8))


def test_slots_are_the_sums_of_word_embeddings_and_the_rest_are_the_tokens(lm):
    model, tokenizer = lm
    ex = lookup.existence_example(random.Random(4), slots=True)
    encoded = lookup.encode_examples(tokenizer, [ex], "<end_of_turn>")
    image_id = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
    ids = encoded["input_ids"][0]
    assert int((ids == image_id).sum()) == slots.N_SLOTS
    embeds = lookup.model_inputs(model, tokenizer, encoded)["inputs_embeds"][0]
    table = model.get_input_embeddings()
    at = (ids == image_id).nonzero().flatten()
    for cell, words in enumerate(slots.cell_words(ex.scene)):
        want = sum((table(torch.tensor(tokenizer.encode(" " + w, add_special_tokens=False))).mean(0) for w in words),
                   torch.zeros(table.weight.shape[1]))
        assert torch.allclose(embeds[at[cell]], want, atol=1e-6)
    others = ids != image_id
    assert torch.equal(embeds[others], table(ids[others]))


def test_a_slot_example_asks_what_its_caption_example_asks_of_the_same_scene():
    """The slot flag changes what stands in the context, never which scenes and questions are drawn."""
    for kind in ("existence", "attribute", "describe", "choice", "verify", "word"):
        plain = lookup.draw_example(random.Random(11), kind)
        slotted = lookup.draw_example(random.Random(11), lookup.SLOT_PREFIX + kind)
        assert slotted.answer == plain.answer and slotted.caption == plain.caption
        assert slotted.scene is not None and plain.scene is None
        assert plain.caption in plain.prompt and IMAGE_TOKEN in slotted.prompt
        assert slotted.prompt.replace(IMAGE_TOKEN, plain.caption) == plain.prompt


def test_slots_pass_gradients_to_their_words_embeddings_only(lm):
    """The slots are built from the LM's own table, so training on them moves the words they hold."""
    model, tokenizer = lm
    scene = sc.Scene(objects=[sc.Obj("heart", "green", "small", 0)])
    table = model.get_input_embeddings()
    (grad,) = torch.autograd.grad(slots.slot_vectors(table, tokenizer, [scene]).sum(), table.weight)
    touched = set(grad.abs().sum(1).nonzero().flatten().tolist())
    words = {i for w in ("small", "green", "heart") for i in tokenizer.encode(" " + w, add_special_tokens=False)}
    assert touched == words


def test_a_mixed_batch_trains(lm):
    """Slot and caption examples share a batch; the curriculum's loss is finite and has gradients."""
    model, tokenizer = lm
    examples = lookup.draw_examples(random.Random(5), 6, {"slot_verify": 0.5, "verify": 0.5})
    assert any(ex.scene is not None for ex in examples) and any(ex.scene is None for ex in examples)
    encoded = lookup.encode_examples(tokenizer, examples, "<end_of_turn>")
    model.zero_grad()
    loss = lookup.answer_loss(model(**lookup.model_inputs(model, tokenizer, encoded)).logits, encoded["labels"])
    loss.backward()
    assert torch.isfinite(loss) and model.get_input_embeddings().weight.grad.abs().sum() > 0
    model.zero_grad()
