"""Unpack an archive into a folder: every file appears complete or not at all.

Members are written into a staging folder of this archive's own (``.<into>.<archive>.part``
beside ``into``), then moved into ``into``. Several archives may fill one folder (the two Visual
Genome parts), and Snakemake may unpack them at the same time, so no staging folder is shared
and moving in is file by file.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import zipfile
from pathlib import Path

from llava_gemma.data.jsonstream import BrokenFile


def staging_folder(archive: Path, into: Path) -> Path:
    """Where ``archive`` unpacks before its files move into ``into``: one folder per (archive, into)."""
    tag = hashlib.sha1(str(Path(archive).resolve()).encode()).hexdigest()[:8]
    return into.parent / f".{into.name}.{Path(archive).name}.{tag}.part"


def extract_zip(archive: Path, into: Path, *, strip: int = 0, members: list[str] | None = None) -> int:
    """Extract (optionally only ``members``, dropping ``strip`` leading path parts); returns files written."""
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
    _move_in(part, into)
    return written


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
