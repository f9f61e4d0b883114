"""A saved cell stops at ``<end_of_turn>`` in clients that pass the tokenizer's EOS to ``generate``.

lmms-eval's ``llava_hf`` loads a checkpoint with plain transformers, applies the tokenizer's chat
template to ``"<image>\\n" + question`` and calls ``generate(..., pad_token_id=tokenizer.eos_token_id,
eos_token_id=tokenizer.eos_token_id)``, which replaces the generation config's stop list. The test
does the same with a cell assembled from the shipped toy backbones (their LM closes its turns, as a
trained cell does) and saved as ``train_cell`` saves it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from llava_gemma.model.assemble import assemble_llava, save_cell_processor
from llava_gemma.model.chat import END_OF_TURN
from PIL import Image
from transformers import AutoProcessor, LlavaForConditionalGeneration

ROOT = Path(__file__).resolve().parents[1]
BUDGET = 48  # lmms-eval's default is 1024; a cell that misses the stop would use all of it


@pytest.fixture(scope="module")
def saved_cell(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    model, processor = assemble_llava(ROOT / "models" / "toy-gemma-2b", ROOT / "models" / "toy-clip")
    out = tmp_path_factory.mktemp("cell") / "model"
    model.save_pretrained(out, safe_serialization=True)
    save_cell_processor(processor, out)
    assert processor.tokenizer.eos_token == "<eos>"  # training's tokenizer is left as it was
    return out


def generate_as_lmms_eval(model_dir: Path, question: str) -> list[int]:
    model = LlavaForConditionalGeneration.from_pretrained(model_dir)
    processor = AutoProcessor.from_pretrained(model_dir)
    tokenizer = processor.tokenizer
    text = tokenizer.apply_chat_template([{"role": "user", "content": f"<image>\n{question}"}], tokenize=False,
                                         add_generation_prompt=True)
    inputs = processor(images=[Image.new("RGB", (64, 48), (200, 60, 40))], text=text, return_tensors="pt")
    out = model.generate(**inputs, do_sample=False, temperature=None, top_p=None, num_beams=1,
                         max_new_tokens=BUDGET, use_cache=True, pad_token_id=tokenizer.eos_token_id,
                         eos_token_id=tokenizer.eos_token_id)
    return out[0, inputs["input_ids"].shape[-1]:].tolist()


SHORT = "\nAnswer the question using a single word or phrase."


@pytest.mark.parametrize("question", ["Is there a star in the image?" + SHORT, "Describe the image."])
def test_a_cell_stops_at_the_turn_end_when_the_client_passes_the_tokenizer_eos(saved_cell, question):
    new = generate_as_lmms_eval(saved_cell, question)
    end_of_turn = AutoProcessor.from_pretrained(saved_cell).tokenizer.convert_tokens_to_ids(END_OF_TURN)
    assert new[-1] == end_of_turn and new.count(end_of_turn) == 1, new
    assert len(new) < BUDGET


def test_the_saved_cell_lists_both_stops_for_clients_that_pass_no_id(saved_cell):
    tokenizer = AutoProcessor.from_pretrained(saved_cell).tokenizer
    generation = LlavaForConditionalGeneration.from_pretrained(saved_cell).generation_config
    assert tokenizer.eos_token == END_OF_TURN
    assert set(generation.eos_token_id) == {tokenizer.convert_tokens_to_ids(END_OF_TURN),
                                            tokenizer.convert_tokens_to_ids("<eos>")}
