"""The toy world's spoiled records: prepare drops each for its reason and names it in the filter report."""

from __future__ import annotations

import json

import pytest
from llava_gemma.data.prepare import prepare_dataset
from llava_gemma.toy.spoiled import IMAGE_KINDS, add_spoiled_records
from llava_gemma.toy.world import ToyWorldSpec, generate_toy_world


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("toy")
    counts = generate_toy_world(root, ToyWorldSpec(seed=3, n_pretrain=60, n_instruct=200, n_pope_images=2,
                                                   n_gqa_questions=6))
    assert counts["spoiled_instruct"] == 0 < counts["instruct"] < 1000  # below min_records: small worlds stay clean
    extra = add_spoiled_records(root, share=0.2, min_records=100)
    return root, extra


def test_each_kind_is_dropped_for_its_reason_and_named(world, tmp_path):
    from llava_gemma.model.assemble import prepare_tokenizer
    from llava_gemma.toy.tokenizer import train_toy_tokenizer

    root, extra = world
    corpus = (root / "toy_text" / "corpus.txt").read_text().splitlines()
    tok_dir = tmp_path / "tok"
    train_toy_tokenizer(corpus, tok_dir, vocab_size=400)
    report = prepare_dataset(root / "llava_instruct" / "llava_v1_5_mix665k.json", root / "llava_instruct" / "images",
                             prepare_tokenizer(str(tok_dir)), tmp_path / "out", fmt="gemma", max_length=1024,
                             image_tokens=16, default_source="other", max_drop_fraction=0.2, workers=1)
    dropped = {r for s in report["sources"].values() for r in s["dropped"]}
    expected = {"no_conversations", "malformed_turn", "roles_out_of_order", "empty_turn", "chat_marker_in_text",
                "unanswered_last_turn", "image_token_missing", "several_image_tokens", "image_token_not_in_first_turn",
                "duplicate", "too_long", "image_token_in_text_only_record", "not_a_record", "malformed_image_field",
                "image_path_outside_root", "malformed_conversations", "text_not_unicode", "image_missing",
                *(k for k in IMAGE_KINDS if k != "image_converted")}
    assert expected <= dropped, sorted(expected - dropped)
    assert sum(s["repaired"].get("image_converted", 0) for s in report["sources"].values()) >= 1
    assert report["dropped_examples"]["image_truncated"][0]["id"] == "spoiled_image_truncated"
    assert extra["spoiled_instruct"] == len(expected) + 1  # the converted GIF is kept


def test_pretraining_pairs_are_spoiled_too(world):
    root, extra = world
    records = json.loads((root / "llava_pretrain" / "chat.json").read_text())
    ids = [r["id"] for r in records[-extra["spoiled_pretrain"]:]]
    assert "spoiled_not_a_caption_pair" in ids and extra["spoiled_pretrain"] == 4
