"""Worker side of preparation: a batch of raw records in, candidate rows and drop reasons out.

Everything here depends on one record at a time (repairs, malformed checks, tokenization with
masking, length), so batches run in parallel worker processes. What needs the whole dataset is
decided by the caller: duplicates (it gets a digest per candidate row) and which image files
still need a check (``image_task`` then checks them, once each, in the same workers).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from llava_gemma.data.images import check_images
from llava_gemma.data.jsonstream import Batch
from llava_gemma.data.records import TEXT_ONLY_SOURCE, problem_of, record_key, repair, source_of
from llava_gemma.train.masking import MaskingMismatch, tokenize_many

ROW_SCHEMA = pa.schema([
    ("id", pa.string()), ("source", pa.string()), ("image", pa.string()),
    ("input_ids", pa.list_(pa.int32())), ("labels", pa.list_(pa.int32())),
    ("length", pa.int32()), ("modality", pa.string()),
])
_CANDIDATE_SCHEMA = ROW_SCHEMA.append(pa.field("key", pa.binary(16)))


@dataclass(frozen=True)
class SampleSpec:
    """What a worker needs to turn records into rows (inherited by forked workers, never pickled)."""

    tokenizer: object
    fmt: str
    max_length: int
    image_tokens: int
    default_source: str
    known_images: dict = field(default_factory=dict)  # image verdicts of an earlier run


@dataclass
class BatchResult:
    start: int
    sources: list[str]  # one per record of the batch
    reasons: list[str | None]  # why each record was dropped here, None for candidates
    ids: list[str] = field(default_factory=list)  # one per record: its id (its index if it has none)
    images: list[str | None] = field(default_factory=list)  # one per record: its image path, if readable
    repairs: list[tuple[str, str]] = field(default_factory=list)  # (source, repair) for every repair made
    candidates: pa.Table | None = None  # rows that passed, in order, with a ``key`` column for duplicates


_SPEC: SampleSpec | None = None


def init_worker(spec: SampleSpec, *, in_process: bool = False) -> None:
    global _SPEC
    _SPEC = spec
    if not in_process:
        # Two worker processes already fill the cores; Rust threads on top would only contend.
        os.environ["TOKENIZERS_PARALLELISM"] = "false"


def process_batch(batch: Batch) -> BatchResult:
    assert _SPEC is not None, "init_worker must run first"
    return records_to_rows(json.loads(batch.text), batch.start, _SPEC)


def records_to_rows(records: list, start: int, spec: SampleSpec) -> BatchResult:
    result = BatchResult(start, [], [])
    todo: list[tuple[int, dict]] = []
    for i, raw in enumerate(records):
        source = source_of(raw, spec.default_source)
        record, repairs = repair(raw, image_first=spec.fmt == "gemma")
        result.sources.append(source)
        result.ids.append(_record_id(raw, start + i))
        result.images.append(raw.get("image") if isinstance(raw, dict) and isinstance(raw.get("image"), str) else None)
        result.repairs += [(source, r) for r in repairs]
        reason = problem_of(record)
        if reason is None and spec.fmt == "plain" and len(record["conversations"]) != 2:
            reason = "not_a_caption_pair"  # stage 1 trains on exactly one instruction and its caption
        result.reasons.append(reason)
        if reason is None:
            todo.append((i, record))
    samples = tokenize_many([r["conversations"] for _, r in todo], spec.tokenizer, spec.fmt) if todo else []
    cols: dict[str, list] = {name: [] for name in _CANDIDATE_SCHEMA.names}
    for (i, record), sample in zip(todo, samples):
        if isinstance(sample, ValueError):
            result.reasons[i] = "masking_mismatch" if isinstance(sample, MaskingMismatch) else "no_supervised_tokens"
            continue
        image = record.get("image") or None
        length = len(sample.input_ids) + (spec.image_tokens - 1 if image else 0)  # <image> becomes N tokens
        if length > spec.max_length:
            result.reasons[i] = "too_long"
            continue
        source = result.sources[i]
        cols["id"].append(str(record.get("id", start + i)))
        cols["source"].append(source)
        cols["image"].append(image)
        cols["input_ids"].append(sample.input_ids)
        cols["labels"].append(sample.labels)
        cols["length"].append(length)
        cols["modality"].append("text" if source == TEXT_ONLY_SOURCE else "image")
        cols["key"].append(record_key(record))
    result.candidates = pa.table(cols, schema=_CANDIDATE_SCHEMA)
    return result


def _record_id(raw: object, index: int) -> str:
    """A record's ``id`` as the report names it; ``#<index>`` (its place in the file) when it has none."""
    rid = raw.get("id") if isinstance(raw, dict) else None
    return str(rid) if isinstance(rid, str | int) and str(rid) else f"#{index}"


def image_task(paths: list[str], image_root: Path, converted_root: Path, decode: bool) -> list[tuple]:
    known = _SPEC.known_images if _SPEC is not None else None
    return check_images(paths, image_root, converted_root, decode=decode, known=known)
