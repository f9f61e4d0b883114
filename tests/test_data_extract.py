"""Archive extraction: archives sharing a folder unpack concurrently without touching each other's files."""

from __future__ import annotations

import threading
import zipfile
from pathlib import Path

from llava_gemma.data.extract import extract_zip, staging_folder


def _zip(path: Path, names: list[str]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name in names:
            zf.writestr(name, name.encode() * 100)
    return path


def test_two_archives_into_one_folder_at_once_keep_every_file(tmp_path):
    # The two Visual Genome parts: VG_100K/ and VG_100K_2/ land in the same `into`.
    a = _zip(tmp_path / "vg_images_part1.zip", [f"VG_100K/{i}.jpg" for i in range(300)])
    b = _zip(tmp_path / "vg_images_part2.zip", [f"VG_100K_2/{i}.jpg" for i in range(300)])
    into = tmp_path / "raw" / "vg"
    assert staging_folder(a, into) != staging_folder(b, into)
    counts = {}
    threads = [threading.Thread(target=lambda z=z: counts.setdefault(z.name, extract_zip(z, into))) for z in (a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert counts == {a.name: 300, b.name: 300}
    assert len(list((into / "VG_100K").iterdir())) == 300 and len(list((into / "VG_100K_2").iterdir())) == 300
    assert not [p for p in into.parent.iterdir() if p.name.endswith(".part")]


def test_strip_and_members_and_a_rerun_overwrite(tmp_path):
    z = _zip(tmp_path / "mm-vet.zip", ["mm-vet/mm-vet.json", "mm-vet/images/v1_0.png"])
    into = tmp_path / "mmvet"
    assert extract_zip(z, into, strip=1) == 2
    assert extract_zip(z, into, strip=1, members=["mm-vet/mm-vet.json"]) == 1  # a rerun merges over
    assert sorted(p.relative_to(into).as_posix() for p in into.rglob("*") if p.is_file()) == [
        "images/v1_0.png", "mm-vet.json"]
