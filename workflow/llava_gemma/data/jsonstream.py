"""Read a large top-level JSON array (llava_v1_5_mix665k.json is 1 GB) in batches of elements.

``json.load`` of the whole file holds every record as Python objects (several GB for the mix).
Here the file is decoded in blocks and cut at element boundaries found by the C scanner; each
batch comes out as the JSON text of a smaller array, cheap to hand to a worker process, which
parses it again. Memory stays at about one block plus the batches in flight.
"""

from __future__ import annotations

import codecs
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from llava_gemma.errors import UserError

BLOCK = 16 << 20  # characters decoded per read
_WHITESPACE = " \t\n\r"
_NUMBER_START = "-0123456789"
_AFTER_ELEMENT = ",]" + _WHITESPACE


class BrokenFile(UserError, ValueError):
    """A downloaded input that is not what it should be: the fix is to fetch it again."""


@dataclass(frozen=True)
class Batch:
    start: int  # index of the first element in the whole array
    count: int
    text: str  # a JSON array holding exactly these elements


DOWNLOAD_FIX = "delete it and rerun its download rule"


def iter_array_batches(path: Path, max_records: int = 2000, max_chars: int = 4 << 20, *,
                       fix: str = DOWNLOAD_FIX) -> Iterator[Batch]:
    """Consecutive batches of the array in ``path``; ``BrokenFile`` naming the file, the place and ``fix``."""
    scan = json.JSONDecoder().raw_decode
    reader = _Reader(path, fix)
    buf, pos = reader.more(""), 0
    pos = _skip(buf, pos)
    while pos >= len(buf) and not reader.eof:
        buf, pos = reader.more(buf[pos:]), 0
        pos = _skip(buf, pos)
    if pos >= len(buf) or buf[pos] != "[":
        raise BrokenFile(f"{path} does not hold a JSON list of records; {fix}.")
    pos += 1
    index = 0
    pieces: list[str] = []
    size = 0
    first = index
    expect_element = True  # after "[" or ","
    while True:
        pos = _skip(buf, pos)
        if pos >= len(buf):
            if reader.eof:
                raise _invalid(path, index, reader.at(buf, pos), fix, "the file ends inside the list")
            buf, pos = reader.more(buf[pos:]), 0
            continue
        if not expect_element:
            if buf[pos] == ",":
                pos, expect_element = pos + 1, True
                continue
            if buf[pos] == "]":
                break
            raise _invalid(path, index, reader.at(buf, pos), fix, f"expected ',' or ']' but found {buf[pos]!r}")
        if buf[pos] == "]" and index == 0:
            break
        try:
            _, end = scan(buf, pos)
        except json.JSONDecodeError as err:
            if reader.eof:
                raise _invalid(path, index, reader.at(buf, err.pos), fix, err.msg) from None
            buf, pos = reader.more(buf[pos:]), 0  # the element runs past the block: read on
            continue
        if not reader.eof and buf[pos] in _NUMBER_START and (end >= len(buf) or buf[end] not in _AFTER_ELEMENT):
            buf, pos = reader.more(buf[pos:]), 0  # "-1" of "-1.5e-3" cut at the block end: read on
            continue
        pieces.append(buf[pos:end])
        size += end - pos
        pos, index, expect_element = end, index + 1, False
        if len(pieces) >= max_records or size >= max_chars:
            yield Batch(first, len(pieces), "[" + ",".join(pieces) + "]")
            pieces, size, first = [], 0, index
    if pieces:
        yield Batch(first, len(pieces), "[" + ",".join(pieces) + "]")
    if _skip(buf, pos + 1) < len(buf) or reader.more("").strip():
        raise _invalid(path, index, reader.at(buf, pos + 1), fix, "there is text after the closing ']'")


class _Reader:
    def __init__(self, path: Path, fix: str):
        self.file = path.open("rb")
        self.decoder = codecs.getincrementaldecoder("utf-8-sig")(errors="strict")
        self.eof = False
        self.fix = fix
        self.decoded = 0  # characters decoded so far: the end of the current buffer in the file

    def at(self, buf: str, pos: int) -> int:
        """The character offset in the file of ``buf[pos]`` (``buf`` ends where decoding stopped)."""
        return self.decoded - len(buf) + pos

    def more(self, rest: str) -> str:
        if self.eof:
            return rest
        try:
            data = self.file.read(BLOCK)
            self.eof = not data
            text = self.decoder.decode(data, final=self.eof)
        except UnicodeDecodeError:
            raise BrokenFile(f"{self.file.name} is not UTF-8 text; {self.fix}.") from None
        self.decoded += len(text)
        if self.eof:
            self.file.close()
        return rest + text


def _skip(buf: str, pos: int) -> int:
    while pos < len(buf) and buf[pos] in _WHITESPACE:
        pos += 1
    return pos


def _invalid(path: Path, index: int, offset: int, fix: str, why: str) -> BrokenFile:
    return BrokenFile(f"{path} is not valid JSON at record {index} (character {offset}: {why}); {fix}.")
