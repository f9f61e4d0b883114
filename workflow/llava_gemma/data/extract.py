"""Unpack an archive into a folder: every file appears complete or not at all.

Members are written into a staging folder of this archive's own (``.<into>.<archive>.part``
beside ``into``), then moved into ``into``. Several archives may fill one folder (the two Visual
Genome parts), and Snakemake may unpack them at the same time, so no staging folder is shared
and moving in is file by file.

What an archive must hold is checked before anything moves in (``expect``: paths, below ``into``,
that must exist after unpacking; and always at least one file): a ``members`` filter or an assumed
inner layout that finds nothing fails here, in one sentence, and the rule writes no done-marker,
instead of an evaluation failing after all training.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import zipfile
from pathlib import Path

from llava_gemma.data.jsonstream import BrokenFile
from llava_gemma.errors import UserError


class ArchiveLayoutError(UserError, ValueError):
    """An archive unpacked completely but lacks what its `extract` entry expects."""


def staging_folder(archive: Path, into: Path) -> Path:
    """Where ``archive`` unpacks before its files move into ``into``: one folder per (archive, into)."""
    tag = hashlib.sha1(str(Path(archive).resolve()).encode()).hexdigest()[:8]
    return into.parent / f".{into.name}.{Path(archive).name}.{tag}.part"


def extract_zip(archive: Path, into: Path, *, strip: int = 0, members: list[str] | None = None,
                expect: list[str] | None = None) -> int:
    """Extract (optionally only ``members``, dropping ``strip`` leading path parts); returns files written.

    Raises ``ArchiveLayoutError`` (and moves nothing in) when no file was written or a path of ``expect``
    is missing below the unpacked tree.
    """
    archive, into = Path(archive), Path(into)
    part = staging_folder(archive, into)
    shutil.rmtree(part, ignore_errors=True)  # a killed earlier attempt of this archive only
    part.mkdir(parents=True)
    written = 0
    try:
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                if info.is_dir() or (members and info.filename not in members):
                    continue
                parts = Path(info.filename).parts[strip:]
                if not parts or ".." in parts:
                    continue
                target = part.joinpath(*parts)
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, target.open("wb") as dst:
                    shutil.copyfileobj(src, dst)
                written += 1
    except zipfile.BadZipFile:
        shutil.rmtree(part, ignore_errors=True)
        raise BrokenFile(f"{archive} is not a complete zip archive; delete it and rerun its download rule.") from None
    try:
        check_layout(archive, part, written, strip=strip, members=members, expect=expect)
    except ArchiveLayoutError:
        shutil.rmtree(part, ignore_errors=True)
        raise
    _move_in(part, into)
    return written


def check_layout(archive: Path, unpacked: Path, written: int, *, strip: int = 0, members: list[str] | None = None,
                 expect: list[str] | None = None) -> None:
    """One sentence naming the archive and what it lacks, when it gave no file or not every expected path."""
    how = f" (members {', '.join(members)})" if members else (f" (strip {strip})" if strip else "")
    if written == 0:
        raise ArchiveLayoutError(f"{archive} gave no file{how}: its `extract` entry expects "
                                 f"{', '.join(expect) if expect else 'at least one file'}; check the archive and "
                                 "its members/strip in the config's `extract`, or delete it and rerun its download.")
    missing = [path for path in expect or [] if not (unpacked / path).exists()]
    if missing:
        found = sorted({p.relative_to(unpacked).parts[0] for p in unpacked.rglob("*")})[:5]
        raise ArchiveLayoutError(f"{archive} lacks {', '.join(missing)} after unpacking{how} (its top level holds "
                                 f"{', '.join(found)}); fix `expect`/`strip` in the config's `extract`, or delete "
                                 "the archive and rerun its download.")


def _move_in(part: Path, into: Path) -> None:
    # File by file even into an empty folder: renaming the whole staging folder onto ``into`` could
    # replace a folder another extraction has just created. The marker file says when all is there.
    into.mkdir(parents=True, exist_ok=True)
    for path in sorted(part.rglob("*")):
        if path.is_file():
            dest = into / path.relative_to(part)
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, dest)
    shutil.rmtree(part)
