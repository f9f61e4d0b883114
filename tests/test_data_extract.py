"""Archive extraction: archives sharing a folder unpack concurrently without touching each other's files."""

from __future__ import annotations

import json
import threading
import zipfile
from pathlib import Path

import pytest
from llava_gemma.cli import main
from llava_gemma.data.extract import ArchiveLayoutError, extract_zip, staging_folder


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


def test_an_archive_without_the_expected_layout_fails_and_moves_nothing_in(tmp_path):
    # questions1.2.zip assumed to hold its JSON at the top: a release that nests it must fail here, not at evaluation.
    z = _zip(tmp_path / "gqa_testdev_questions.zip", ["questions1.2/testdev_balanced_questions.json"])
    into = tmp_path / "gqa"
    with pytest.raises(ArchiveLayoutError, match=r"gqa_testdev_questions\.zip gave no file \(members "
                                                 r"testdev_balanced_questions\.json\)"):
        extract_zip(z, into, members=["testdev_balanced_questions.json"])
    with pytest.raises(ArchiveLayoutError, match=r"lacks testdev_balanced_questions\.json after unpacking .*"
                                                 r"top level holds questions1\.2"):
        extract_zip(z, into, expect=["testdev_balanced_questions.json"])
    assert not into.exists() or not any(into.rglob("*"))
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".part")]
    assert extract_zip(z, into, strip=1, expect=["testdev_balanced_questions.json"]) == 1  # the right strip passes


def test_the_extract_command_fails_in_one_sentence_and_writes_no_marker(tmp_path, capsys):
    z = _zip(tmp_path / "vqav2_val_questions.zip", ["readme.txt"])
    marker = tmp_path / "vqav2_val_questions.zip.extracted.json"
    settings = json.dumps({"strip": 0, "expect": ["v2_OpenEnded_mscoco_val2014_questions.json"]})
    code = main(["extract", "--archive", str(z), "--into", str(tmp_path / "vqav2"), "--out", str(marker),
                 "--settings", settings])
    err = capsys.readouterr().err.strip()
    assert code == 1 and not marker.exists()
    assert len(err.splitlines()) == 1
    assert "vqav2_val_questions.zip lacks v2_OpenEnded_mscoco_val2014_questions.json" in err
