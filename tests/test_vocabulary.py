"""Training refuses an LM whose vocabulary differs from the one that tokenized its data."""

from __future__ import annotations

import json

import pytest
from llava_gemma.errors import UserError
from llava_gemma.model.assemble import prepare_tokenizer
from llava_gemma.model.vocabulary import FILE, check_vocabulary, fingerprint, write_vocabulary
from llava_gemma.toy.tokenizer import train_toy_tokenizer


def test_an_lm_with_another_vocabulary_is_refused_in_one_sentence(tiny_backbones, tmp_path):
    same = prepare_tokenizer(tiny_backbones["lm"])
    data = tmp_path / "prepared"
    data.mkdir()
    check_vocabulary(data, same, tiny_backbones["lm"])  # no record (older preparation): nothing to compare
    write_vocabulary(data, prepare_tokenizer(tiny_backbones["tokenizer"]), "data/models/2b")
    assert json.loads((data / FILE).read_text())["fingerprint"] == fingerprint(same)
    check_vocabulary(data, same, tiny_backbones["lm"])  # the LM saved the very tokenizer: accepted

    lines = ["a red circle and a blue square.", "Is there a star? No", "a green triangle on the left."] * 20
    train_toy_tokenizer(lines, tmp_path / "other", vocab_size=300)
    other = prepare_tokenizer(tmp_path / "other")
    assert fingerprint(other) != fingerprint(same)
    with pytest.raises(UserError, match=r"was tokenized with data/models/2b .* differs from the LM"):
        check_vocabulary(data, other, tmp_path / "other")
