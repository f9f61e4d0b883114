"""MME's question files in either distribution: the lmms-lab/MME parquet or the official release folders.

Parquet (the hub snapshot)::

    <root>/data/test-*.parquet   (or <root>/test-*.parquet); columns question_id ("OCR/0001.png": the
                                 image, shared by its two questions), image ({"bytes", "path"}),
                                 question, answer ("Yes"/"No"), category (the subtask)

    Images are written once to ``<root>/images/<question_id>`` so the runner can open them.

Release folders (MME_Benchmark_release_version, as LLaVA's MME script reads them)::

    <root>/[MME_Benchmark_release_version/]<subtask>/
        <name>.jpg|.png + <name>.txt                       most subtasks: questions beside the images
        images/<name>.jpg + questions_answers_YN/<name>.txt  artwork, celebrity, landmark, posters, scene

    Each ``<name>.txt`` holds the image's questions, one per line: ``question<TAB>Yes|No``.

Both give the same rows: the image key ``<subtask>/<image file>``, the image path, the question,
the answer (lower-cased) and the subtask; malformed entries are counted, not kept.
"""

from __future__ import annotations

import io
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RELEASE_FOLDER = "MME_Benchmark_release_version"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
COLUMNS = ("question_id", "image", "question", "answer", "category")


@dataclass(frozen=True)
class MMERow:
    image_key: str  # "<subtask>/<image file>": the unit of acc+ (both questions of an image right)
    image_path: Path
    question: str
    answer: str  # "yes" or "no"
    category: str


@dataclass(frozen=True)
class MMERows:
    rows: list[MMERow]
    skipped: int
    total: int
    source: Path


def read_mme(root: Path, subtasks: tuple[str, ...]) -> MMERows:
    """MME's rows from the parquet if ``root`` holds one, else from the release folders."""
    root = Path(root)
    parquet = sorted((root / "data").glob("test-*.parquet")) or sorted(root.glob("test-*.parquet"))
    if parquet:
        return _read_parquet(root, parquet)
    for folder in (root / RELEASE_FOLDER, root):
        if any((folder / task).is_dir() for task in subtasks):
            return _read_release(folder, subtasks)
    raise FileNotFoundError(
        f"MME: {root} holds neither the lmms-lab/MME parquet (data/test-*.parquet) nor the release folders "
        f"({RELEASE_FOLDER}/<subtask>/); run the download rule for MME or check the MME root in the config."
    )


# --- release folders ---------------------------------------------------------------------------


def _read_release(folder: Path, subtasks: tuple[str, ...]) -> MMERows:
    rows: list[MMERow] = []
    skipped = total = 0
    absent = [task for task in subtasks if not (folder / task).is_dir()]
    if absent:
        warnings.warn(f"MME: {folder} lacks the subtask folders {absent}; they are left out.", stacklevel=3)
    for task in subtasks:
        task_dir = folder / task
        if not task_dir.is_dir():
            continue
        qa_dir = task_dir / "questions_answers_YN" if (task_dir / "questions_answers_YN").is_dir() else task_dir
        image_dir = task_dir / "images" if (task_dir / "images").is_dir() else task_dir
        images = {p.stem: p for p in sorted(image_dir.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES}
        for txt in sorted(qa_dir.glob("*.txt")):
            image = images.get(txt.stem)
            for line in txt.read_text(encoding="utf-8-sig").splitlines():
                if not line.strip():
                    continue
                total += 1
                fields = line.split("\t")
                answer = fields[-1].strip().lower()
                if image is None or len(fields) != 2 or not fields[0].strip() or answer not in ("yes", "no"):
                    skipped += 1  # no image of that name, or not "question<TAB>Yes|No"
                    continue
                rows.append(MMERow(f"{task}/{image.name}", image, fields[0], answer, task))
    return MMERows(rows, skipped, total, folder)


# --- lmms-lab/MME parquet ----------------------------------------------------------------------


def _read_parquet(root: Path, files: list[Path]) -> MMERows:
    import pyarrow.parquet as pq

    raw: list[dict[str, Any]] = []
    for path in files:
        try:
            table = pq.read_table(path)
        except Exception as err:  # pyarrow raises several types for a damaged file
            raise ValueError(f"MME: {path} is not a readable parquet file ({err}); "
                             "run the download rule again.") from err
        missing = [c for c in COLUMNS if c not in table.column_names]
        if missing:
            raise ValueError(f"MME: {path} lacks the columns {missing}; expected the lmms-lab/MME test split.")
        raw += table.select(list(COLUMNS)).to_pylist()
    rows = []
    for row in raw:
        if _valid(row):
            key = row["question_id"].strip()
            _extract(bytes(row["image"]["bytes"]), root / "images" / key)
            rows.append(MMERow(key, root / "images" / key, row["question"], row["answer"].strip().lower(),
                               row["category"]))
    return MMERows(rows, len(raw) - len(rows), len(raw), files[0].parent)


def _valid(row: dict[str, Any]) -> bool:
    image = row.get("image")
    return (all(isinstance(row.get(k), str) and row[k].strip() for k in ("question_id", "question", "category"))
            and isinstance(row.get("answer"), str) and row["answer"].strip().lower() in ("yes", "no")
            and isinstance(image, dict) and isinstance(image.get("bytes"), bytes | bytearray))


def _extract(image_bytes: bytes, path: Path) -> None:
    """Write an embedded image once (atomically), re-encoding to PNG only if it is not a PNG/JPEG."""
    if path.is_file():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    data = image_bytes
    if not (data.startswith(b"\x89PNG") or data.startswith(b"\xff\xd8")):
        from PIL import Image

        buf = io.BytesIO()
        Image.open(io.BytesIO(data)).convert("RGB").save(buf, "PNG")
        data = buf.getvalue()
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")  # cells evaluated in parallel share the folder
    tmp.write_bytes(data)
    tmp.replace(path)
