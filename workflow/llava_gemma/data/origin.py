"""Where a dataset's raw files came from, so an error's advice names the step that makes them again.

Found on disk, not passed in: the toy world leaves ``toy_world.json`` in the raw folder
(``generate_toy_world``), an unpacked archive leaves ``<archive>.extracted.json`` naming the folder
it filled (``extract_archive``), and a records file no archive filled was downloaded
(``download_file``). Reading this only when something failed keeps it out of the rule's params,
so it costs no rerun. Paths in the advice are as the caller gave them (relative to the working
directory in a Snakemake job).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

TOY_MANIFEST = "toy_world.json"
MARKER_SUFFIX = ".extracted.json"


@dataclass(frozen=True)
class Origin:
    """How the raw files under one raw folder were made."""

    toy_manifest: Path | None = None  # the toy world's manifest, if the toy world made them
    extracted: dict[str, str] = field(default_factory=dict)  # folder filled -> the archive that filled it

    def fix_records(self, records: Path) -> str:
        """The fix for a records file that is broken or malformed as a whole."""
        if self.toy_manifest is not None:
            return self._regenerate()
        archive = self._archive_of(records)
        if archive:
            return (f"delete {archive}{MARKER_SUFFIX} and {archive}, then run snakemake again "
                    "(rules download_file and extract_archive)")
        return f"delete {records} and run snakemake again (rule download_file fetches it anew)"

    def fix_images(self, folder: Path) -> str:
        """The fix for a source whose images (under ``folder``) are missing or broken."""
        if self.toy_manifest is not None:
            return self._regenerate()
        archives = sorted({a for into, a in self.extracted.items() if _overlaps(into, folder)})
        if archives:
            markers = ", ".join(a + MARKER_SUFFIX for a in archives)
            return (f"check that {', '.join(archives)} downloaded completely, then delete {markers} and run "
                    "snakemake again (rule extract_archive unpacks it anew)")
        return f"check that the download that fills {folder} completed (its rule's log under logs/) and rerun it"

    def _regenerate(self) -> str:
        return (f"regenerate the toy world (delete {self.toy_manifest} and run snakemake again, rule "
                "generate_toy_world) or check the toy_world settings")

    def _archive_of(self, path: Path) -> str | None:
        for into, archive in self.extracted.items():
            if _norm(path).startswith(_norm(into) + os.sep):
                return archive
        return None


def find_origin(records: Path) -> Origin:
    """The origin of ``records`` (``data/raw/<dataset>/<file>``), read from the folders around it."""
    for folder in list(Path(records).parents)[:3]:
        if (folder / TOY_MANIFEST).is_file():
            return Origin(toy_manifest=folder / TOY_MANIFEST)
    extracted = {}
    # Markers sit at data/raw/<archive>.extracted.json, archives at most one folder deep; globbing
    # two levels under the records' folder and its parent never walks the image folders.
    folders = list(Path(records).parents)[:2]
    markers = {m for folder in folders for pattern in ("*", "*/*") for m in folder.glob(pattern + MARKER_SUFFIX)}
    for marker in sorted(markers):
        try:
            spec = json.loads(marker.read_text())
            extracted[spec["into"]] = spec["archive"]
        except (OSError, ValueError, KeyError, TypeError):
            continue  # a marker we cannot read just gives vaguer advice
    return Origin(extracted=extracted)


def _norm(path: str | Path) -> str:
    return os.path.normpath(os.path.abspath(path))


def _overlaps(a: str | Path, b: str | Path) -> bool:
    """Whether one folder holds the other (or they are the same)."""
    a, b = _norm(a), _norm(b)
    return a == b or a.startswith(b + os.sep) or b.startswith(a + os.sep)
