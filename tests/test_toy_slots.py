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


def test_a_slot_example_asks_its_question_about_the_scene_in_its_slots():
    """The placeholder stands where the caption would; the answer and the caption are the scene's."""
    for kind in ("existence", "attribute", "describe", "choice", "verify", "word"):
        plain = lookup.draw_example(random.Random(11), kind)
        slotted = lookup.draw_example(random.Random(11), lookup.SLOT_PREFIX + kind)
        assert plain.scene is None and plain.caption in plain.prompt and IMAGE_TOKEN not in plain.prompt
        assert slotted.scene is not None and slotted.caption == sc.caption(slotted.scene)
        assert slotted.prompt.count(IMAGE_TOKEN) == 1 and slotted.caption not in slotted.prompt
        lines = slotted.prompt.split("\n")  # <image> on a line of its own, first or second, as in the mix
        assert lines[1] == IMAGE_TOKEN or lines[2].startswith(IMAGE_TOKEN)


def test_slot_scenes_wear_free_colours():
    """Half the objects of slot scenes are recoloured uniformly, so the typical colour is a poor guess."""
    rng = random.Random(3)
    objects = [o for _ in range(400) for o in lookup._scene(rng, heldout=False, slots=True).objects]
    typical = sum(o.color == sc.TYPICAL_COLOR[o.shape] for o in objects) / len(objects)
    expected = sc.TYPICAL_COLOR_PROB * (1 - lookup.FREE_COLOUR_PROB) + lookup.FREE_COLOUR_PROB / len(sc.COLORS) + \
        (1 - sc.TYPICAL_COLOR_PROB) * (1 - lookup.FREE_COLOUR_PROB) / len(sc.COLORS)
    assert abs(typical - expected) < 0.05


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


def test_the_shipped_towers_patch_carries_its_objects_colour_and_size():
    """Why slots: one patch per grid cell holds that cell's object whole (3,000 scenes: colour 0.999,
    shape 0.993, size 1.000 for toy-clip; tools/probe_tower.py --attributes). Fewer scenes here."""
    from llava_gemma.toy.readout import attribute_readout

    result = attribute_readout(str(LM.parent / "toy-clip"), n_scenes=500, n_train_scenes=350)
    assert result["colour"] >= 0.9 and result["size"] >= 0.9 and result["shape"] >= 0.8, result
