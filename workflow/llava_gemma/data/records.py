"""Checks and repairs of LLaVA conversation records (chat.json, llava_v1_5_mix665k.json).

``repair(record)`` applies the two normalisations LLaVA-1.5's own loader applies (a conversation
opening with a model turn loses that turn; ``<image>`` moves to the front of its turn) and names
what it changed. ``problem_of(record)`` returns the reason a record is malformed, or None. Both
names are keys of the filter report, so a user sees how many records each rule touched.
"""

from __future__ import annotations

import hashlib
import json
import posixpath

from llava_gemma.model.chat import END_OF_TURN, IMAGE_TOKEN, START_OF_TURN

TEXT_ONLY_SOURCE = "text"
# Records whose source cannot be read (not an object, an image field that is not a path, or a path
# outside the image root): the caller judges their loss against the whole file, not as a source.
UNKNOWN_SOURCE = "unknown"


def source_of(record: object, default: str) -> str:
    """The image source a record comes from (``coco``, ``gqa``, ... or ``text``)."""
    if not isinstance(record, dict):
        return UNKNOWN_SOURCE
    image = record.get("image")
    if image is None or image == "":
        return TEXT_ONLY_SOURCE
    if not isinstance(image, str) or _outside_root(image):
        return UNKNOWN_SOURCE
    return image.split("/", 1)[0] if "/" in image else default


def _outside_root(image: str) -> bool:
    """An absolute path, or one that climbs out with ``..``: never read, whatever the root is."""
    return posixpath.isabs(image) or ".." in image.split("/")


def repair(record: object, *, image_first: bool) -> tuple[object, list[str]]:
    """The record as LLaVA-1.5 trains on it, and the names of the repairs applied (a new dict if any)."""
    if not isinstance(record, dict) or not isinstance(record.get("conversations"), list):
        return record, []
    turns = record["conversations"]
    repairs = []
    if len(turns) > 1 and isinstance(turns[0], dict) and turns[0].get("from") == "gpt":
        turns = turns[1:]  # LLaVA skips a conversation's opening model turn
        repairs.append("leading_model_turn_dropped")
    if image_first and record.get("image") and turns and isinstance(turns[0], dict):
        value = turns[0].get("value")
        if isinstance(value, str) and value.count(IMAGE_TOKEN) == 1 and not value.startswith(IMAGE_TOKEN + "\n"):
            # LLaVA-1.5's preprocess_multimodal: "<image>\n" + the rest, stripped.
            moved = (IMAGE_TOKEN + "\n" + value.replace(IMAGE_TOKEN, "").strip()).strip()
            turns = [{**turns[0], "value": moved}, *turns[1:]]
            repairs.append("image_token_moved_to_front")
    return ({**record, "conversations": turns} if repairs else record), repairs


def problem_of(record: object) -> str | None:
    if not isinstance(record, dict):
        return "not_a_record"
    image = record.get("image")
    if image is not None and not isinstance(image, str):
        return "malformed_image_field"
    if image and _outside_root(image):
        return "image_path_outside_root"
    turns = record.get("conversations")
    if turns is not None and not isinstance(turns, list):
        return "malformed_conversations"
    if not turns:
        return "no_conversations"
    for i, turn in enumerate(turns):
        if not isinstance(turn, dict) or not all(isinstance(turn.get(k), str) for k in ("from", "value")):
            return "malformed_turn"
        if turn.get("from") != ("human" if i % 2 == 0 else "gpt"):
            return "roles_out_of_order"
        if not turn["value"].strip():
            return "empty_turn"
        if START_OF_TURN in turn["value"] or END_OF_TURN in turn["value"]:
            return "chat_marker_in_text"  # would forge a turn boundary
        if not _is_unicode(turn["value"]):
            return "text_not_unicode"  # a lone surrogate (\ud800 in the JSON): the tokenizer cannot take it
    if len(turns) % 2:
        return "unanswered_last_turn"
    n_images = sum(t["value"].count(IMAGE_TOKEN) for t in turns)
    if image:
        if n_images == 0:
            return "image_token_missing"
        if n_images > 1:
            return "several_image_tokens"
        if IMAGE_TOKEN not in turns[0]["value"]:
            return "image_token_not_in_first_turn"
    elif n_images:
        return "image_token_in_text_only_record"
    return None


def _is_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def record_key(record: dict) -> bytes:
    """A digest of what a sample is (image and turns), so duplicates are found without keeping them."""
    turns = [[t["from"], t["value"]] for t in record["conversations"]]
    text = json.dumps([record.get("image") or "", turns], ensure_ascii=False)
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()
