"""Spoiled records and images in the toy world: one of each kind the preparation filter knows.

The real downloads hold broken records and files (truncated JPEGs, GIFs named .jpg, empty turns,
duplicates); ``prepare`` drops or repairs them and names them in ``filter_report.json``. So that the
toy report shows every counter at work, ``add_spoiled_records`` appends one record per kind to the
toy mix and to the pretraining pairs (writing the broken images they point at), spread over the
image sources so that no source loses more than ``share`` of its records (the toy config's
``data.max_drop_fraction`` must still pass). Worlds smaller than ``min_records`` stay clean: the unit
tests' tiny worlds count their records exactly.

Not spoiled here, and why: ``masking_mismatch`` and ``no_supervised_tokens`` (no record provokes
them with a working tokenizer; they guard against tokenizer changes). Records whose image path
leaves the image root are spoiled: they name no source (``unknown``), so they are judged against
the whole file and never fail the stage.
"""

from __future__ import annotations

import io
import json
import struct
import zipfile
import zlib
from collections import Counter
from pathlib import Path
from typing import Any

from PIL import Image

from llava_gemma.data.records import source_of

GOOD_TURNS = [{"from": "human", "value": "<image>\nWhat is in the image?"}, {"from": "gpt", "value": "A shape."}]


def _image_bytes(kind: str) -> bytes:
    """Bytes that the image check rejects (or repairs) for the reason ``kind``."""
    buf = io.BytesIO()
    if kind == "image_truncated":
        Image.effect_noise((64, 64), 60).convert("RGB").save(buf, "JPEG", quality=90)
        return buf.getvalue()[: len(buf.getvalue()) // 2]
    if kind == "image_undecodable":  # a PNG whose compressed pixels are garbage
        Image.new("RGB", (64, 64), (200, 20, 20)).save(buf, "PNG")
        png = buf.getvalue()
        i = png.index(b"IDAT") + 4
        return png[:i] + bytes(b ^ 0xFF for b in png[i: i + 20]) + png[i + 20:]
    if kind == "image_too_large":  # a PNG header claiming 30000 x 30000 pixels: a decompression bomb
        def chunk(tag: bytes, data: bytes) -> bytes:
            return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))
        return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 30000, 30000, 1, 0, 0, 0, 0)) + chunk(
            b"IEND", b"")
    if kind == "image_converted":  # a GIF under a .jpg name: prepare converts it (a repair, not a drop)
        Image.new("RGB", (48, 48), (20, 20, 200)).save(buf, "GIF")
        return buf.getvalue()
    return {"image_empty": b"", "image_unreadable": b"<html>Not Found</html>"}[kind]


IMAGE_KINDS = ("image_truncated", "image_undecodable", "image_too_large", "image_empty", "image_unreadable",
               "image_converted")


def _turn(who: str, value: Any) -> dict:
    return {"from": who, "value": value}


def _record_kinds(template: dict, text_template: dict) -> list[tuple[str, dict]]:
    """(reason, record) for every malformed-record reason, built from a good image record and a text one."""
    img, conv = template["image"], template["conversations"]
    q, a = conv[0]["value"].replace("<image>", "").strip(), conv[1]["value"]
    return [
        ("no_conversations", {"image": img}),
        ("malformed_turn", {"image": img, "conversations": [_turn("human", f"<image>\n{q}"), _turn("gpt", 7)]}),
        ("roles_out_of_order", {"image": img, "conversations": [_turn("human", f"<image>\n{q}"), _turn("human", a)]}),
        ("empty_turn", {"image": img, "conversations": [_turn("human", f"<image>\n{q}"), _turn("gpt", "  ")]}),
        ("chat_marker_in_text", {"image": img, "conversations": [
            _turn("human", f"<image>\n{q}"), _turn("gpt", f"{a}<end_of_turn>")]}),
        ("unanswered_last_turn", {"image": img, "conversations": [_turn("human", f"<image>\n{q}")]}),
        ("image_token_missing", {"image": img, "conversations": [_turn("human", q), _turn("gpt", a)]}),
        ("several_image_tokens", {"image": img, "conversations": [
            _turn("human", f"<image>\n{q} <image>"), _turn("gpt", a)]}),
        ("image_token_not_in_first_turn", {"image": img, "conversations": [
            _turn("human", q), _turn("gpt", a), _turn("human", f"<image>\n{q}"), _turn("gpt", a)]}),
        ("duplicate", dict(template)),
        ("too_long", {"image": img, "conversations": [
            _turn("human", f"<image>\n{q}"), _turn("gpt", (a + " ") * 3000)]}),
        ("image_token_in_text_only_record", {"conversations": [
            _turn("human", "<image>\n" + text_template["conversations"][0]["value"]),
            text_template["conversations"][1]]}),
        ("not_a_record", "not a record"),
        ("malformed_image_field", {"image": ["coco", "x.jpg"], "conversations": conv}),
        ("image_path_outside_root", {"image": "../" + img, "conversations": conv}),
        ("malformed_conversations", {"image": img, "conversations": f"<image>\n{q}"}),
        ("text_not_unicode", {"image": img, "conversations": [
            _turn("human", f"<image>\n{q} \ud800"), _turn("gpt", a)]}),
    ]


def _budgets(records: list, share: float) -> Counter:
    return Counter({src: int(n * share) for src, n in Counter(source_of(r, "other") for r in records).items()})


def add_spoiled_records(root: Path, *, share: float = 0.02, min_records: int = 1000) -> dict[str, int]:
    """Append spoiled records to the toy mix and pretraining pairs under ``root``; returns counts per file."""
    root = Path(root)
    mix_path = root / "llava_instruct" / "llava_v1_5_mix665k.json"
    mix = json.loads(mix_path.read_text())
    if len(mix) < min_records:
        return {"spoiled_instruct": 0, "spoiled_pretrain": 0}
    budgets = _budgets(mix, share)
    image_records = [r for r in mix if r.get("image")]
    text_record = next(r for r in mix if not r.get("image"))
    added: list = []

    def spend(source: str) -> bool:
        # Records with no readable source are judged against the whole file: always affordable.
        if source == "unknown":
            return True
        budgets[source] -= 1
        return budgets[source] >= 0

    for i, (reason, record) in enumerate(_record_kinds(image_records[0], text_record)):
        if isinstance(record, dict) and isinstance(record.get("image"), str) and reason != "image_path_outside_root":
            # Spread the image-bearing kinds over the sources: the next template whose source can afford one.
            start = (37 * i) % len(image_records)
            for template in image_records[start:] + image_records[:start]:
                if budgets[source_of(template, "other")] > 0:
                    record = dict(template) if reason == "duplicate" else {**record, "image": template["image"]}
                    break
        if spend(source_of(record, "other")):
            added.append(record if reason in ("duplicate", "not_a_record") else {"id": f"spoiled_{reason}", **record})
    images_root = root / "llava_instruct" / "images"
    for i, kind in enumerate((*IMAGE_KINDS, "image_missing")):
        template = image_records[(7 * i + 3) % len(image_records)]
        folder = template["image"].rsplit("/", 1)[0]
        name = f"{folder}/spoiled_{kind}.{'png' if kind in ('image_undecodable', 'image_too_large') else 'jpg'}"
        if not spend(source_of({"image": name}, "other")):
            continue
        if kind != "image_missing":
            (images_root / name).parent.mkdir(parents=True, exist_ok=True)
            (images_root / name).write_bytes(_image_bytes(kind))
        added.append({"id": f"spoiled_{kind}", "image": name, "conversations": GOOD_TURNS})
    # A lone surrogate cannot be UTF-8: it is written as the JSON escape "\ud800", as in a real file.
    mix_path.write_bytes((json.dumps(mix + added, ensure_ascii=False) + "\n").encode("utf-8", "backslashreplace"))
    return {"spoiled_instruct": len(added), "spoiled_pretrain": _spoil_pretrain(root / "llava_pretrain", share)}


def _spoil_pretrain(folder: Path, share: float) -> int:
    """Pretraining pairs: a pair with two exchanges, a duplicate, a missing and a truncated image."""
    records = json.loads((folder / "chat.json").read_text())
    first = records[0]
    turns = first["conversations"]
    added = [
        {"id": "spoiled_not_a_caption_pair", "image": first["image"],
         "conversations": [*turns, _turn("human", "Anything else?"), turns[1]]},
        dict(records[1]),  # duplicate
        {"id": "spoiled_image_missing", "image": "spoiled_image_missing.jpg", "conversations": turns},
        {"id": "spoiled_image_truncated", "image": "spoiled_image_truncated.jpg", "conversations": turns},
    ][: max(0, int(len(records) * share))]
    if any(r["id"] == "spoiled_image_truncated" for r in added):
        with zipfile.ZipFile(folder / "images.zip", "a") as zf:
            info = zipfile.ZipInfo("spoiled_image_truncated.jpg", date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            zf.writestr(info, _image_bytes("image_truncated"))
    (folder / "chat.json").write_text(json.dumps(records + added, ensure_ascii=False) + "\n")
    return len(added)
