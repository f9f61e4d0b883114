"""Filter and tokenize a LLaVA dataset once into Parquet, with a report of what was dropped.

Output (``data/prepared/<dataset>/``): ``data.parquet`` with one row per kept sample (id, source,
image, input_ids, labels, length, modality, converted), ``filter_report.json`` with counts per
source and reason and, per reason, the first ``EXAMPLES`` dropped records (id, image, source) in
file order, and ``converted/`` with JPEG copies of images stored in another format under a
``.jpg`` name (rows with ``converted`` true load their image from there). A record is dropped for
a counted reason or repaired, never crashes the stage; a source losing more than
``max_drop_fraction`` fails it, naming the source, the top reasons and the fix that fits where its
files came from (``origin.py``: the toy world, an unpacked archive or a download). The outputs
are replaced only when the new ones are complete and accepted.

The 665k mix is streamed: the records file is cut into batches of JSON text, worker processes
parse, check and tokenize them (``samples.py``), each distinct image is checked once (as its own
task, as soon as a batch names it), and kept rows are written as row groups in file order, so
memory holds a few batches, not the dataset.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import sys
import time
from collections import Counter, defaultdict, deque
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from llava_gemma.data import samples
from llava_gemma.data.images import ImageCheck, load_known, save_known
from llava_gemma.data.jsonstream import iter_array_batches
from llava_gemma.data.origin import Origin, find_origin
from llava_gemma.data.records import TEXT_ONLY_SOURCE, UNKNOWN_SOURCE
from llava_gemma.data.samples import ROW_SCHEMA, SampleSpec
from llava_gemma.errors import ConfigError, UserError

SCHEMA = ROW_SCHEMA.append(pa.field("converted", pa.bool_()))
ROW_GROUP = 20_000  # rows per Parquet row group
IMAGE_TASK = 128  # images per image-check task
SMALL_FILE = 8 << 20  # below this, worker processes cost more than they save
EXAMPLES = 20  # dropped records named per reason in the report


class TooManyDropped(UserError, RuntimeError):
    pass


def prepare_dataset(records_path: Path, image_root: Path, tokenizer, out_dir: Path, *, fmt: str,
                    max_length: int, image_tokens: int, default_source: str, max_drop_fraction: float,
                    workers: int | None = None, image_check: str = "decode", batch_size: int = 1000,
                    log=None) -> dict:
    """Prepare ``records_path`` into ``out_dir``; returns the filter report (also written as JSON).

    ``workers`` processes share the work (default: the CPUs this process may use; 1 runs
    everything in this process). ``image_check`` is ``decode`` (decode every distinct image once,
    which finds truncated and corrupt files) or ``header`` (open it only: much faster, misses them).
    """
    if image_check not in ("decode", "header"):
        raise ConfigError(f"image_check must be 'decode' or 'header', not {image_check!r}; fix data.image_check.")
    records_path, image_root, out_dir = Path(records_path), Path(image_root), Path(out_dir)
    if not records_path.is_file():
        raise FileNotFoundError(f"{records_path} is missing; run its download rule first.")
    if workers is None:
        workers = 1 if records_path.stat().st_size < SMALL_FILE else len(os.sched_getaffinity(0))
    origin = find_origin(records_path)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "filter_report.rejected.json").unlink(missing_ok=True)  # from an earlier failed run
    converted_root = out_dir / "converted"  # kept between runs: remembered verdicts point into it
    converted_root.mkdir(exist_ok=True)
    known_file = out_dir / "image_checks.json"
    spec = SampleSpec(tokenizer, fmt, max_length, image_tokens, default_source, load_known(known_file))
    check = partial(samples.image_task, image_root=image_root, converted_root=converted_root,
                    decode=image_check == "decode")
    run = _Run(log or _stderr_log)
    # Written beside the outputs and renamed over them only once complete and accepted, so a
    # failed or killed run leaves the earlier prepared data as it was (outside Snakemake, which
    # deletes a job's outputs itself before it runs the job).
    part = out_dir / "data.parquet.part"
    try:
        with _executor(workers, spec) as pool, pq.ParquetWriter(part, SCHEMA) as writer:
            run.writer = writer
            in_flight: deque[Future] = deque()
            pending: deque[_Waiting] = deque()
            for batch in iter_array_batches(records_path, max_records=batch_size, fix=origin.fix_records(records_path)):
                in_flight.append(pool.submit(samples.process_batch, batch))
                while len(in_flight) > 2 * workers + 1:  # bounded: the file is never read far ahead
                    run.receive(in_flight.popleft().result(), pool, check, pending)
            while in_flight:
                run.receive(in_flight.popleft().result(), pool, check, pending)
            run.flush(pending, wait=True)
        save_known(known_file, {p: m for p, m in run.memo.items() if m is not None})  # valid even if rejected
        report = run.report(max_drop_fraction, image_check)
        text = json.dumps(report, indent=2) + "\n"
        try:
            _fail_if_too_many_dropped(report, max_drop_fraction, records_path, image_root, default_source, origin)
        except TooManyDropped:
            # Snakemake deletes a failed job's outputs; keep the evidence under a name it does not own.
            (out_dir / "filter_report.rejected.json").write_text(text)
            raise
        report_part = out_dir / "filter_report.json.part"
        report_part.write_text(text)
        os.replace(part, out_dir / "data.parquet")
        os.replace(report_part, out_dir / "filter_report.json")
    finally:
        part.unlink(missing_ok=True)
    return report


class _Run:
    """The state of one preparation: counts, the image verdicts, the duplicate digests, the output."""

    def __init__(self, log):
        self.log = log
        self.totals: Counter = Counter()
        self.dropped: dict[str, Counter] = defaultdict(Counter)
        self.repaired: dict[str, Counter] = defaultdict(Counter)
        self.examples: dict[str, list[dict]] = defaultdict(list)  # reason -> first dropped records
        self.images: dict[str, _ImageTask | ImageCheck] = {}
        self.keys: set[bytes] = set()
        self.memo: dict[str, list | None] = {}  # what to remember of each verdict
        self.reused = 0
        self.writer: pq.ParquetWriter | None = None
        self.buffer: list[pa.Table] = []
        self.buffered = 0
        self.seen = 0
        self.started = time.monotonic()
        self.last_log = self.started

    def receive(self, result: samples.BatchResult, pool, check, pending: deque) -> None:
        """Count a batch's drops, mark duplicates, and ask for the images it names for the first time."""
        for source, reason, rid, image in zip(result.sources, result.reasons, result.ids, result.images):
            self.totals[source] += 1
            if reason is not None:
                self._drop(source, reason, rid, image)
        for source, name in result.repairs:
            self.repaired[source][name] += 1
        table = result.candidates
        waiting = _Waiting(table.drop_columns(["key"]), table.column("source").to_pylist(),
                           table.column("image").to_pylist(), [])
        ids = table.column("id").to_pylist()
        for key, source, rid, image in zip(table.column("key").to_pylist(), waiting.sources, ids, waiting.paths):
            waiting.fresh.append(key not in self.keys)
            if key in self.keys:
                self._drop(source, "duplicate", rid, image)
            self.keys.add(key)
        new = [p for p, fresh in zip(waiting.paths, waiting.fresh) if p and fresh and p not in self.images]
        new = list(dict.fromkeys(new))
        for i in range(0, len(new), IMAGE_TASK):
            chunk = new[i: i + IMAGE_TASK]
            task = _ImageTask(pool.submit(check, chunk), chunk)
            for path in chunk:
                self.images[path] = task
        pending.append(waiting)
        self.seen += len(result.sources)
        self.flush(pending, wait=False)

    def flush(self, pending: deque, *, wait: bool) -> None:
        """Write the oldest batches whose images are all checked (all of them when ``wait``)."""
        while pending:
            w = pending[0]
            if not wait and any(fresh and p and self._checking(p) for p, fresh in zip(w.paths, w.fresh)):
                break
            pending.popleft()
            keep, converted = [], []
            ids = w.table.column("id").to_pylist()
            for path, source, fresh, rid in zip(w.paths, w.sources, w.fresh, ids):
                verdict = self._verdict(path) if path and fresh else ImageCheck()
                keep.append(fresh and verdict.problem is None)
                converted.append(verdict.converted)
                if verdict.problem is not None:
                    self._drop(source, verdict.problem, rid, path)
                elif verdict.converted:
                    self.repaired[source]["image_converted"] += 1
            table = w.table.append_column("converted", pa.array(converted, pa.bool_()))
            self._write(table if all(keep) else table.filter(pa.array(keep, pa.bool_())))
        if wait:
            self._write(None)
        now = time.monotonic()
        if wait or now - self.last_log > 15:
            self.last_log = now
            self.log(f"{self.seen} records read, {self.kept} kept, {len(self.images)} distinct images "
                     f"({self.seen / max(now - self.started, 1e-9):.0f} records/s)")

    def _drop(self, source: str, reason: str, rid: str, image: str | None) -> None:
        self.dropped[source][reason] += 1
        if len(self.examples[reason]) < EXAMPLES:
            self.examples[reason].append({"id": rid, "image": image, "source": source})

    def _checking(self, path: str) -> bool:
        task = self.images[path]
        return isinstance(task, _ImageTask) and not task.future.done()

    def _verdict(self, path: str) -> ImageCheck:
        verdict = self.images[path]
        if isinstance(verdict, _ImageTask):
            for p, (v, memo, reused) in zip(verdict.paths, verdict.future.result()):  # the whole task at once
                self.images[p] = v
                self.memo[p] = memo
                self.reused += reused
            verdict = self.images[path]
        return verdict

    @property
    def kept(self) -> int:
        return sum(self.totals.values()) - sum(sum(c.values()) for c in self.dropped.values())

    def _write(self, table: pa.Table | None) -> None:
        if table is not None and table.num_rows:
            self.buffer.append(table)
            self.buffered += table.num_rows
        if self.buffer and (table is None or self.buffered >= ROW_GROUP):
            self.writer.write_table(pa.concat_tables(self.buffer).cast(SCHEMA), row_group_size=max(self.buffered, 1))
            self.buffer, self.buffered = [], 0

    def report(self, max_drop_fraction: float, image_check: str) -> dict:
        sources = {}
        for source, total in sorted(self.totals.items()):
            lost = sum(self.dropped[source].values())
            sources[source] = {"total": total, "kept": total - lost, "kept_fraction": (total - lost) / total,
                               "dropped": dict(self.dropped[source].most_common()),
                               "repaired": dict(self.repaired[source].most_common())}
        verdicts = [v for v in self.images.values() if isinstance(v, ImageCheck)]
        problems = Counter(v.problem for v in verdicts if v.problem)
        return {"total": sum(self.totals.values()), "kept": self.kept, "max_drop_fraction": max_drop_fraction,
                "sources": sources,
                "images": {"distinct": len(verdicts), "converted": sum(v.converted for v in verdicts),
                           "unusable": dict(problems.most_common()), "check": image_check,
                           "remembered_from_earlier_run": self.reused},
                "dropped_examples": {reason: self.examples[reason] for reason in sorted(self.examples)}}


def _fail_if_too_many_dropped(report: dict, max_drop_fraction: float, records_path: Path, image_root: Path,
                              default_source: str, origin: Origin) -> None:
    for source, stats in report["sources"].items():
        lost = stats["total"] - stats["kept"]
        # Records with no readable source are judged against the whole file: a handful of broken
        # elements must not fail a stage that a 100%-loss pseudo-source would otherwise fail.
        share = lost / (report["total"] if source == UNKNOWN_SOURCE else stats["total"])
        if share > max_drop_fraction:
            reasons = ", ".join(f"{r} ({n})" for r, n in list(stats["dropped"].items())[:3])
            if source in (UNKNOWN_SOURCE, TEXT_ONLY_SOURCE):
                fix = origin.fix_records(records_path)
            else:
                fix = origin.fix_images(image_root if source == default_source else image_root / source)
            raise TooManyDropped(
                f"source {source!r} of {records_path.name} lost {share:.1%} of its records "
                f"(more than data.max_drop_fraction = {max_drop_fraction:.0%}); top reasons: {reasons}; "
                f"to fix it, {fix}, or raise data.max_drop_fraction.")


@dataclass
class _Waiting:
    """A batch's candidate rows, waiting for their images' verdicts before they are written."""

    table: pa.Table
    sources: list[str]
    paths: list[str | None]
    fresh: list[bool]  # False: a duplicate of an earlier row (filtered out, like a bad image)


class _ImageTask:
    """Image checks under way for a chunk of distinct paths."""

    def __init__(self, future: Future, paths: list[str]):
        self.future, self.paths = future, paths


class _InProcess:
    """The executor interface, run synchronously here (one worker, tests, small files)."""

    def __init__(self, spec: SampleSpec):
        samples.init_worker(spec, in_process=True)

    def submit(self, fn, *args) -> Future:
        future: Future = Future()
        future.set_result(fn(*args))
        return future

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


class _Pool:
    """Worker processes for batches and image checks."""

    def __init__(self, workers: int, spec: SampleSpec):
        # fork: workers inherit the tokenizer instead of unpickling a 256k-entry vocabulary each.
        context = multiprocessing.get_context("fork")
        # Said explicitly, so tokenizers does not warn at the fork that it turns its threads off.
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        self.pool = ProcessPoolExecutor(workers, mp_context=context, initializer=samples.init_worker,
                                        initargs=(spec,))

    def submit(self, fn, *args) -> Future:
        return self.pool.submit(fn, *args)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.pool.shutdown(cancel_futures=exc[0] is not None)
        return False


def _executor(workers: int, spec: SampleSpec) -> _InProcess | _Pool:
    return _InProcess(spec) if workers <= 1 else _Pool(workers, spec)


def _stderr_log(message: str) -> None:
    print(f"[prepare] {message}", file=sys.stderr, flush=True)
