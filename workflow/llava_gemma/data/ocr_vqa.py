"""OCR-VQA covers for the 665k mix: from the dataset's own URL list, or a mirror already unpacked.

``dataset.json`` (from the OCR-VQA release) maps a book id to its ``imageURL``; LLaVA's mix names
the image ``ocr_vqa/images/<id><ext of the URL>``, as OCR-VQA's ``loadDataset.py`` saved it. Each
cover the mix uses is fetched with the resumable downloader (written whole or not at all), many at a
time; the ones that cannot be had are listed in the report rather than failing the job: the prepare
stage counts them as ``image_missing``, and fails there if too many are gone, which is when the
hub mirror (``ocr_vqa.source: hub``) is the better source. A rerun fetches only what is missing.
Most of those links are dead today, and each dead one can cost minutes of retries, so the fetch has a
total time budget and fails fast: once the first ``probe`` covers are tried, a failure rate above
``max_failure_rate``, or a pace that cannot finish within ``budget_seconds``, stops it in one sentence
(what was fetched stays; a rerun resumes), instead of hours later at the prepare stage.
Either way the report counts what the mix needs, what is there, what is dead or failed, and the
formats found (many covers are GIFs under a ``.jpg`` name; prepare converts them).
"""

from __future__ import annotations

import json
import posixpath
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from tqdm import tqdm

from llava_gemma.data.download import DownloadError, download_url
from llava_gemma.data.jsonstream import BrokenFile, iter_array_batches
from llava_gemma.errors import ConfigError, UserError

MIX_PREFIX = "ocr_vqa/images/"
# Answers meaning the cover is gone for good (Amazon's old image links), not a passing failure.
DEAD = ("HTTP 403", "HTTP 404", "HTTP 410")
_MAGIC = {b"\xff\xd8\xff": "jpeg", b"GIF8": "gif", b"\x89PNG": "png", b"RIFF": "webp"}


class CoverFetchStopped(UserError, RuntimeError):
    """The URL list cannot deliver the covers in time: the early failure rate or pace says so."""


@dataclass(frozen=True)
class FetchBudget:
    """When a URL fetch gives up: after ``probe`` tries, on a failure rate above ``max_failure_rate`` or a pace
    that would overrun ``seconds`` in all."""

    seconds: float = 6 * 3600.0
    probe: int = 500
    max_failure_rate: float = 0.05


def fetch_ocr_vqa_covers(mix_json: Path, into: Path, report_path: Path, *, source: str,
                         dataset_json: Path | None = None, threads: int = 16, timeout: float = 30.0,
                         retries: int = 3, budget: FetchBudget | None = None) -> dict:
    """The rule's job: the covers ``mix_json`` uses, into ``into``, with the report written last."""
    needed = needed_from_mix(Path(mix_json))
    if source == "urls":
        if dataset_json is None:
            raise ConfigError("ocr_vqa.source is 'urls' but no dataset.json was given; set ocr_vqa.dataset_json.")
        report = download_ocr_vqa_images(Path(dataset_json), Path(into), needed=needed, threads=threads,
                                          timeout=timeout, retries=retries, budget=budget)
    elif source == "hub":
        report = audit_ocr_vqa_images(Path(into), needed)
    else:
        raise ConfigError(f"ocr_vqa.source must be 'urls' or 'hub', not {source!r}; fix config.yaml.")
    report["missing_fraction"] = report["failed"] / max(report["wanted"], 1)
    part = Path(report_path).with_name(Path(report_path).name + ".part")
    part.write_text(json.dumps(report, indent=1) + "\n")
    part.replace(report_path)  # whole or absent: Snakemake takes an existing output as done
    return {k: v for k, v in report.items() if k != "failures"}


def image_name(book_id: str, url: str) -> str:
    """The file name LLaVA's mix uses for a book's cover."""
    ext = posixpath.splitext(urlparse(url).path)[1] or ".jpg"
    return f"{book_id}{ext}"


def needed_from_mix(mix_json: Path) -> dict[str, str]:
    """Book id -> image name (as the mix spells it) of every cover the instruction mix uses."""
    needed = {}
    for batch in iter_array_batches(mix_json, max_records=20_000):
        for record in json.loads(batch.text):
            image = record.get("image") if isinstance(record, dict) else None
            if isinstance(image, str) and image.startswith(MIX_PREFIX):
                name = image[len(MIX_PREFIX):]
                needed[posixpath.splitext(name)[0]] = name
    return needed


def download_ocr_vqa_images(dataset_json: Path, into: Path, *, needed: dict[str, str] | None = None,
                            threads: int = 16, timeout: float = 30.0, retries: int = 3,
                            progress: bool = True, budget: FetchBudget | None = None) -> dict:
    """Fetch the covers of ``dataset_json`` (every book, or only the ``needed`` ids) into ``into``.

    A cover is saved under the name the mix gives it (``needed``; LLaVA saved every cover as
    ``.jpg``, GIFs included), else under its URL's extension, as OCR-VQA's own script does.
    Returns the report (counts, formats, and each failure by book id) for the rule to write.
    """
    books = _read_books(Path(dataset_json))
    into.mkdir(parents=True, exist_ok=True)
    todo, present, failures = [], [], {}
    for book_id in sorted(books if needed is None else needed):
        book = books.get(book_id)
        url = book.get("imageURL") if isinstance(book, dict) else None
        if not isinstance(url, str):
            failures[book_id] = "not in dataset.json"
            continue
        target = into / (needed[book_id] if needed else image_name(book_id, url))
        (present if target.exists() else todo).append((book_id, url, target))

    budget = budget or FetchBudget()
    stop = threading.Event()

    def fetch(job: tuple[str, str, Path]) -> str | None:
        _, url, target = job
        if stop.is_set():
            return "not tried: the fetch stopped"
        try:
            download_url(url, target, retries=retries, timeout=timeout, backoff=1.0, progress=False)
            return None
        except (DownloadError, OSError) as err:
            return str(err)

    fetched, tried, failed, start = [], 0, 0, time.monotonic()
    with ThreadPoolExecutor(threads) as pool, tqdm(total=len(todo), unit="img", disable=not progress,
                                                   mininterval=30) as bar:
        futures = {pool.submit(fetch, job): job for job in todo}  # I/O bound: threads, not processes
        try:
            for future in as_completed(futures):
                job, error = futures[future], future.result()
                tried += 1
                if error is None:
                    fetched.append(job[2])
                else:
                    failed += 1
                    failures[job[0]] = error
                bar.update()
                _check_pace(budget, tried, failed, len(todo), time.monotonic() - start)
        except CoverFetchStopped:
            stop.set()
            pool.shutdown(wait=True, cancel_futures=True)
            raise
    dead = sum(any(code in why for code in DEAD) for why in failures.values())
    return {"source": "urls", "wanted": len(books) if needed is None else len(needed),
            "present_before": len(present), "downloaded": len(fetched),
            "unlisted": sum(why == "not in dataset.json" for why in failures.values()), "dead": dead,
            "failed": len(failures), "formats": _formats([p for _, _, p in present] + fetched),
            "failures": dict(sorted(failures.items()))}


def _check_pace(budget: FetchBudget, tried: int, failed: int, total: int, elapsed: float) -> None:
    """Stop (one sentence) when the tries so far say the fetch cannot end well: too many dead, or too slow."""
    if elapsed > budget.seconds and tried < total:
        raise CoverFetchStopped(f"OCR-VQA covers: {tried} of {total} tried in {elapsed / 3600:.1f} h, past "
                                f"ocr_vqa.budget_seconds ({budget.seconds:.0f} s); set ocr_vqa.source: hub (the "
                                "mirror config.yaml names), or raise the budget and rerun (fetched covers are kept).")
    if tried != min(budget.probe, total) or tried == total:
        return
    rate = failed / tried
    if rate > budget.max_failure_rate:
        raise CoverFetchStopped(f"OCR-VQA covers: {failed} of the first {tried} URLs failed ({rate:.0%}, more than "
                                f"ocr_vqa.max_failure_rate {budget.max_failure_rate:.0%}): the link list is mostly "
                                "dead; set ocr_vqa.source: hub (the mirror config.yaml names).")
    projected = elapsed / tried * total
    if projected > budget.seconds:
        raise CoverFetchStopped(f"OCR-VQA covers: at the pace of the first {tried} ({elapsed:.0f} s), all {total} "
                                f"would take {projected / 3600:.1f} h, past ocr_vqa.budget_seconds "
                                f"({budget.seconds:.0f} s); set ocr_vqa.source: hub, or raise the budget or threads.")


def audit_ocr_vqa_images(into: Path, needed: dict[str, str]) -> dict:
    """The same report for covers unpacked from a mirror: which of the mix's images are there."""
    paths = {book_id: into / name for book_id, name in needed.items()}
    missing = {book_id: "not in the mirror" for book_id, p in paths.items() if not p.is_file()}
    found = [p for book_id, p in paths.items() if book_id not in missing]
    return {"source": "hub", "wanted": len(needed), "present_before": len(found), "downloaded": 0, "unlisted": 0,
            "dead": 0, "failed": len(missing), "formats": _formats(found), "failures": dict(sorted(missing.items()))}


def _read_books(path: Path) -> dict:
    try:
        books = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as err:
        raise BrokenFile(f"{path} is not OCR-VQA's dataset.json ({err}); rerun its download rule.") from None
    if not isinstance(books, dict):
        raise BrokenFile(f"{path} is not OCR-VQA's dataset.json (expected an object of books); "
                         "rerun its download rule.")
    return books


def _formats(paths: list[Path]) -> dict[str, int]:
    """What the files are, by their first bytes (not their name): GIFs under .jpg show up here."""
    counts: Counter = Counter()
    for path in paths:
        with path.open("rb") as f:
            head = f.read(4)
        counts[next((kind for magic, kind in _MAGIC.items() if head.startswith(magic)),
                    "empty" if not head else "other")] += 1
    return dict(counts.most_common())
