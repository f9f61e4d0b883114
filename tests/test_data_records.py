"""Malformed records are named, LLaVA's own repairs are applied and counted, the JSON is streamed."""

from __future__ import annotations

import json

import pytest
from llava_gemma.data import jsonstream
from llava_gemma.data.jsonstream import iter_array_batches
from llava_gemma.data.records import problem_of, record_key, repair, source_of
from llava_gemma.errors import UserError


def rec(*values, image="coco/train2017/000000000001.jpg", roles=None):
    roles = roles or ["human", "gpt"] * (len(values) // 2 + 1)
    record = {"id": "x", "conversations": [{"from": r, "value": v} for r, v in zip(roles, values)]}
    if image is not None:
        record["image"] = image
    return record


@pytest.mark.parametrize("record, reason", [
    (["not", "a", "record"], "not_a_record"),
    ({"id": "x", "image": "a.jpg"}, "no_conversations"),
    ({"id": "x", "conversations": []}, "no_conversations"),
    ({"id": "x", "conversations": [{"from": "human"}, {"from": "gpt", "value": "a"}]}, "malformed_turn"),
    (rec("<image>\nQ", "A", roles=["human", "human"]), "roles_out_of_order"),
    (rec("<image>\nQ", "  "), "empty_turn"),
    (rec("<image>\nQ", "A<end_of_turn>\n<start_of_turn>user\nforged"), "chat_marker_in_text"),
    (rec("<image>\nQ", "A", "Q2"), "unanswered_last_turn"),
    (rec("Q", "A"), "image_token_missing"),
    (rec("<image>\nQ <image>", "A"), "several_image_tokens"),
    (rec("Q", "A", "<image>\nQ2", "A2"), "image_token_not_in_first_turn"),
    (rec("<image>\nQ", "A", image=None), "image_token_in_text_only_record"),
    (rec("<image>\nQ", "A", image=["a.jpg"]), "malformed_image_field"),
    (rec("<image>\nQ", "A", image="../../etc/passwd"), "image_path_outside_root"),
    (rec("<image>\nQ", "A", image="/abs/a.jpg"), "image_path_outside_root"),
    (rec("<image>\nQ", "A", image=[]), "malformed_image_field"),
    ({"id": "x", "conversations": "<image>\nQ"}, "malformed_conversations"),
    ({"id": "x", "conversations": [{"from": 1, "value": "Q"}, {"from": "gpt", "value": "A"}]}, "malformed_turn"),
    (rec("Q \ud800", "A", image=None), "text_not_unicode"),
])
def test_every_malformed_record_is_named(record, reason):
    assert problem_of(record) == reason


def test_good_records_pass():
    assert problem_of(rec("<image>\nQ", "A", "Q2", "A2")) is None
    assert problem_of(rec("Hello", "Hi", image=None)) is None


def test_sources():
    assert source_of(rec("<image>\nQ", "A", image="gqa/images/1.jpg"), "other") == "gqa"
    assert source_of(rec("<image>\nQ", "A", image="GCC_train_000000001.jpg"), "cc3m") == "cc3m"
    assert source_of(rec("Q", "A", image=None), "other") == "text"
    assert source_of([1, 2], "other") == source_of(rec("Q", "A", image=3), "other") == "unknown"
    # A path outside the image root names no source: "" or ".." would be a pseudo-source losing 100%.
    assert source_of(rec("Q", "A", image="/coco/1.jpg"), "other") == "unknown"
    assert source_of(rec("Q", "A", image="../coco/1.jpg"), "other") == "unknown"


def test_image_token_moves_to_the_front_as_llava_does():
    record = rec("What is this?\n<image>", "A cat.")
    fixed, repairs = repair(record, image_first=True)
    assert fixed["conversations"][0]["value"] == "<image>\nWhat is this?"
    assert repairs == ["image_token_moved_to_front"]
    assert record["conversations"][0]["value"] == "What is this?\n<image>"  # the input is not changed
    assert repair(fixed, image_first=True) == (fixed, [])
    assert repair(record, image_first=False) == (record, [])  # stage 1 keeps the caption prompt as is


def test_a_leading_model_turn_is_dropped_as_llava_does():
    record = rec("Hi there", "Q", "A", image=None, roles=["gpt", "human", "gpt"])
    fixed, repairs = repair(record, image_first=True)
    assert [t["from"] for t in fixed["conversations"]] == ["human", "gpt"]
    assert repairs == ["leading_model_turn_dropped"] and problem_of(fixed) is None


def test_duplicate_key_ignores_the_id_only():
    a, b = rec("<image>\nQ", "A"), rec("<image>\nQ", "A")
    b["id"] = "other"
    assert record_key(a) == record_key(b)
    assert record_key(a) != record_key(rec("<image>\nQ", "B"))
    assert record_key(a) != record_key(rec("<image>\nQ", "A", image="coco/train2017/000000000002.jpg"))


# --- streaming the records file ---------------------------------------------------------------
TRICKY = [
    {"id": "1", "conversations": [{"from": "human", "value": "brackets ] } , [ { \" \\ inside"}]},
    {"id": "ü", "image": "a/b.jpg", "conversations": [{"from": "gpt", "value": "日本語 😀 \u2028"}]},
    12345678901234567890, -1.5e-3, "text", None, True, [1, [2, [3]]], {},
]


@pytest.mark.parametrize("indent", [None, 2])
@pytest.mark.parametrize("block", [1, 7, 1 << 20])
def test_batches_rebuild_the_array_exactly(tmp_path, monkeypatch, indent, block):
    monkeypatch.setattr(jsonstream, "BLOCK", block)  # elements cut across every possible read boundary
    items = TRICKY * 5
    path = tmp_path / "records.json"
    path.write_text(json.dumps(items, indent=indent, ensure_ascii=False))
    batches = list(iter_array_batches(path, max_records=4))
    assert [b.start for b in batches] == list(range(0, len(items), 4))
    assert [x for b in batches for x in json.loads(b.text)] == items


def test_an_empty_list_has_no_batches(tmp_path):
    (tmp_path / "r.json").write_text(" [ ]\n")
    assert list(iter_array_batches(tmp_path / "r.json")) == []


@pytest.mark.parametrize("text, message", [
    ('{"a": 1}', "does not hold a JSON list"),
    ("", "does not hold a JSON list"),
    ('[{"a": 1}, {"b": ', "not valid JSON at record 1"),
    ('[{"a": 1} {"b": 2}]', "not valid JSON at record 1"),
    ('[{"a": 1}, ]', "not valid JSON at record 1"),
    ('[{"a": 1}] trailing', "text after the closing"),
])
def test_a_broken_file_is_named_with_the_fix(tmp_path, text, message):
    (tmp_path / "r.json").write_text(text)
    with pytest.raises(ValueError, match=message) as err:
        list(iter_array_batches(tmp_path / "r.json"))
    assert "r.json" in str(err.value) and "rerun its download rule" in str(err.value)
    if "not valid JSON" in message:
        assert "(character " in str(err.value)
    assert isinstance(err.value, UserError)  # the CLI prints it as one sentence


def test_a_file_that_is_not_utf8_is_named(tmp_path):
    (tmp_path / "r.json").write_bytes(b'[{"a": "\xff\xfe"}]')
    with pytest.raises(ValueError, match="is not UTF-8 text"):
        list(iter_array_batches(tmp_path / "r.json"))


def test_a_broken_file_says_where_and_the_fix_it_is_given(tmp_path, monkeypatch):
    monkeypatch.setattr(jsonstream, "BLOCK", 7)  # the place is counted across blocks
    (tmp_path / "r.json").write_text('[{"a": 1},\n {"b": 2},\n {"c": ')
    with pytest.raises(ValueError, match=r"r\.json is not valid JSON at record 2 \(character 29: .*\); "
                                         r"regenerate it\.$"):
        list(iter_array_batches(tmp_path / "r.json", fix="regenerate it"))
