"""Answering a benchmark's questions batch by batch, resumably, on one rank or several.

The questions are cut into batches once, in generation order (``generate.question_order``), and the
cut depends only on the questions, the processor and the batch size. Each finished batch is
appended, whole and flushed, to ``<work>/answers.rank<r>.jsonl``, one line per question tagged
with its batch number. On start every rank reads what all such files hold: a batch counts as done
only if every one of its questions is there (a kill mid-write leaves a torn batch, which is asked
again), and the batches left are dealt round-robin over the ranks. So a killed job resumes where
it stopped, with any number of ranks, and every answer comes from the very batch a one-rank,
uninterrupted run would have generated it in: merged answers equal that run's.

The work folder lives beside the declared outputs (``results/work/...``): Snakemake deletes a job's
declared outputs before it reruns the job. ``identity.json`` there fingerprints the model, the
questions and the generation settings; partial answers of anything else are discarded.

A question whose image cannot be decoded is answered ``""`` with its ``error``; the job goes on.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from llava_gemma.eval.benchmarks.base import Question
from llava_gemma.eval.gaudi import static_shapes_for
from llava_gemma.eval.generate import PixelCache, answer_rows, question_order

IDENTITY = "identity.json"
PARTIAL_PREFIX = "answers.rank"
UNDECODABLE = "undecodable image"


@dataclass(frozen=True)
class Answer:
    prediction: str
    error: str | None = None  # why the question could not be asked (its prediction is then "")


@dataclass(frozen=True)
class Shard:
    """This process's place among the ranks answering one benchmark."""

    rank: int = 0
    world_size: int = 1

    @classmethod
    def from_env(cls) -> Shard:
        return cls(int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1")))


def plan_batches(processor, questions: Sequence[Question], prompts: Sequence[str], batch_size: int) -> list[list[int]]:
    order = question_order(processor, questions, prompts)
    return [order[start:start + batch_size] for start in range(0, len(order), batch_size)]


def fingerprint(model_dir: Path | None, questions: Sequence[Question], settings: dict) -> str:
    """The model folder's files (names, sizes, mtimes), the question ids and prompts, and the settings."""
    files = []
    if model_dir is not None:
        for path in sorted(Path(model_dir).rglob("*")):
            if path.is_file():
                st = path.stat()
                files.append([str(path.relative_to(model_dir)), st.st_size, st.st_mtime_ns])
    digest = hashlib.sha256(json.dumps({"files": files, "settings": settings}, sort_keys=True, default=str).encode())
    for q in questions:
        digest.update(f"{q.qid}\x00{q.image_path}\x00{q.prompt}\x01".encode())
    return digest.hexdigest()[:16]


def prepare_work(work_dir: Path, identity: str) -> bool:
    """Keep ``work_dir``'s partial answers if they belong to ``identity``, else empty it; True if kept."""
    stamp = work_dir / IDENTITY
    kept = stamp.is_file() and json.loads(stamp.read_text()).get("fingerprint") == identity
    if not kept and work_dir.exists():
        shutil.rmtree(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    if not kept:
        stamp.write_text(json.dumps({"fingerprint": identity}) + "\n")
    return kept


def read_partial(work_dir: Path) -> dict[int, dict[int, Answer]]:
    """Answers found in every rank's file: batch -> question index -> answer (torn lines skipped)."""
    found: dict[int, dict[int, Answer]] = {}
    for path in sorted(work_dir.glob(f"{PARTIAL_PREFIX}*.jsonl")):
        for line in path.read_text().splitlines():
            try:
                row = json.loads(line)
                found.setdefault(int(row["batch"]), {})[int(row["index"])] = Answer(row["prediction"], row["error"])
            except (ValueError, KeyError, TypeError):
                continue  # the torn tail of a killed write
    return found


def completed(plan: Sequence[Sequence[int]], found: dict[int, dict[int, Answer]]) -> dict[int, dict[int, Answer]]:
    """The batches of ``plan`` whose every question is answered."""
    return {k: found[k] for k, rows in enumerate(plan) if k in found and set(rows) <= set(found[k])}


def _open_for_append(path: Path):
    """Append mode after cutting a torn last line (a kill mid-write), so the next line starts clean."""
    if path.exists():
        data = path.read_bytes()
        if data and not data.endswith(b"\n"):
            with path.open("r+b") as f:
                f.truncate(data.rfind(b"\n") + 1)
    return path.open("a")


def decodable_rows(questions: Sequence[Question], rows: Sequence[int], pixels: PixelCache,
                   failed: dict[int, Answer]) -> list[int]:
    """The rows whose image (if any) decodes; the others go to ``failed`` with the reason."""
    good = []
    for i in rows:
        if questions[i].image_path is None:
            good.append(i)
            continue
        try:
            pixels(questions[i])
        except Exception as err:  # PIL raises OSError, SyntaxError, ValueError, DecompressionBombError...
            failed[i] = Answer("", f"{UNDECODABLE}: {type(err).__name__}: {err}")
            print(f"question {questions[i].qid}: {failed[i].error}", file=sys.stderr)
        else:
            good.append(i)
    return good


def answer_shard(model, processor, questions: Sequence[Question], prompts: Sequence[str],
                 plan: Sequence[Sequence[int]], batches: Sequence[int], *, max_new_tokens: int, blind: bool,
                 out_file: Path, prefetch: bool = True) -> None:
    """Generate ``batches`` (numbers into ``plan``) and append each to ``out_file`` once it is whole.

    With ``prefetch``, the next batch's images are decoded and preprocessed on a worker thread while this
    batch generates (PIL's decoders and the image processor's numpy work release the GIL), so the
    generating thread finds them ready; the answers are the same either way."""
    pixels = PixelCache(processor.image_processor, blind)
    static = static_shapes_for(model)

    def decode(k: int) -> tuple[dict[int, Answer], list[int]]:
        failed: dict[int, Answer] = {}
        return failed, decodable_rows(questions, plan[k], pixels, failed)

    with _open_for_append(out_file) as f, ThreadPoolExecutor(1, thread_name_prefix="decode") as pool:
        upcoming = pool.submit(decode, batches[0]) if prefetch and batches else None
        for n, k in enumerate(batches):
            answers, rows = upcoming.result() if upcoming is not None else decode(k)
            upcoming = pool.submit(decode, batches[n + 1]) if prefetch and n + 1 < len(batches) else None
            if rows:
                texts = answer_rows(model, processor, questions, prompts, rows, pixels, max_new_tokens, static)
                answers.update({i: Answer(t) for i, t in texts.items()})
            f.write("".join(json.dumps({"batch": k, "index": i, "id": questions[i].qid, "prediction": a.prediction,
                                        "error": a.error}) + "\n" for i, a in sorted(answers.items())))
            f.flush()
            os.fsync(f.fileno())


def merged_answers(questions: Sequence[Question], plan: Sequence[Sequence[int]], work_dir: Path) -> list[Answer]:
    """Every question's answer, in the questions' order, from the rank files; an error if any is missing."""
    done = completed(plan, read_partial(work_dir))
    missing = [k for k in range(len(plan)) if k not in done]
    if missing:
        raise RuntimeError(f"{len(missing)} of {len(plan)} answer batches are missing from {work_dir} after every "
                           "rank finished; rerun the evaluation (it resumes from what is there).")
    by_index = {i: a for answers in done.values() for i, a in answers.items()}
    return [by_index[i] for i in range(len(questions))]
