"""The small interface every benchmark implements (modelled on lmms-eval task declarations).

A benchmark is a declaration (name, generation limit, prompt suffix) plus three functions:
``load`` turns the benchmark's files into questions, ``score`` turns one prediction into a
per-question record, ``aggregate`` turns all records into the benchmark's metrics, exactly as
the benchmark's official scorer computes them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

SHORT_ANSWER_SUFFIX = "\nAnswer the question using a single word or phrase."
LETTER_SUFFIX = "\nAnswer with the option's letter from the given choices directly."


@dataclass(frozen=True)
class Question:
    """One question as the model sees it.

    ``prompt`` is the full user text (question plus the benchmark's instruction suffix),
    without the ``<image>`` placeholder: the runner puts the image before the text as LLaVA does.
    """

    qid: str
    image_path: Path | None
    prompt: str
    target: Any
    meta: dict[str, Any] = field(default_factory=dict)


class Benchmark:
    """Base class: subclasses set the class attributes and implement the three functions."""

    name: ClassVar[str]
    # LLaVA's model_vqa_loader.py default; a benchmark whose reference script allows more says so.
    max_new_tokens: ClassVar[int] = 128

    def with_options(self, **options: Any) -> Benchmark:
        """This benchmark with its own config options (``eval.benchmarks.<name>``) applied; none by default."""
        if options:
            from llava_gemma.errors import UserError

            raise UserError(f"eval.benchmarks.{self.name} has options {sorted(options)} that {self.name} does not "
                            "take; remove them from the config.")
        return self

    def load(self, root: Path, limit: int | None = None, seed: int = 0) -> list[Question]:
        raise NotImplementedError

    def score(self, question: Question, prediction: str) -> dict[str, Any]:
        """Per-question record; must contain ``correct`` (bool) or ``score`` (float in [0, 1])."""
        raise NotImplementedError

    def aggregate(self, records: list[dict[str, Any]]) -> dict[str, float]:
        raise NotImplementedError

    def write_extra_outputs(self, out_dir: Path, data_root: Path, records: list[dict[str, Any]]) -> None:
        """Files beside ``samples.jsonl`` that a benchmark needs (e.g. a submission file); none by default."""


def image_key(question: Question) -> str:
    """The question's image (its id in ``meta["image_id"]``, else its file name; the question id if it
    has none): the unit whose questions share answers, which the effect model and the bootstrap resample."""
    if "image_id" in question.meta:
        return str(question.meta["image_id"])
    return question.image_path.name if question.image_path is not None else question.qid


def seeded_subset(items: list, limit: int | None, seed: int) -> list:
    """A fixed, seeded subset of ``limit`` items in their original order (all items if no limit)."""
    import random

    if limit is None or limit >= len(items):
        return list(items)
    keep = sorted(random.Random(seed).sample(range(len(items)), limit))
    return [items[i] for i in keep]


def stratified_subset(items: list, limit: int | None, seed: int, key: Callable[[Any], Any]) -> list:
    """``seeded_subset`` within each stratum of ``key`` (POPE's yes and no), each stratum keeping its
    share of ``limit`` (largest remainder), so a limited run keeps the full set's balance."""
    import random

    if limit is None or limit >= len(items):
        return list(items)
    strata: dict[Any, list[int]] = {}
    for i, item in enumerate(items):
        strata.setdefault(key(item), []).append(i)
    exact = {k: limit * len(v) / len(items) for k, v in strata.items()}
    quota = {k: int(q) for k, q in exact.items()}
    for k in sorted(exact, key=lambda k: quota[k] - exact[k])[: limit - sum(quota.values())]:
        quota[k] += 1
    rng = random.Random(seed)
    keep = sorted(i for k in sorted(strata, key=str) for i in rng.sample(strata[k], quota[k]))
    return [items[i] for i in keep]


# --- small helpers shared by the loaders of local benchmark files ---------------------------


def require_path(path: Path, benchmark: str, *, is_dir: bool = False) -> Path:
    """Return ``path`` if it exists, else raise a one-sentence FileNotFoundError saying how to fix it."""
    exists = path.is_dir() if is_dir else path.is_file()
    if exists:
        return path
    kind = "directory" if is_dir else "file"
    raise FileNotFoundError(
        f"{benchmark}: required {kind} {path} is missing; run the download rule for {benchmark} "
        f"or check the {benchmark} root in the config."
    )


def warn_skipped(benchmark: str, path: Path, skipped: int, total: int, what: str = "entries") -> None:
    """Warn once, with the count, that ``skipped`` of ``total`` malformed ``what`` were left out."""
    if skipped:
        import warnings

        warnings.warn(
            f"{benchmark}: skipped {skipped} malformed {what} out of {total} in {path}.",
            stacklevel=3,
        )


def require_images(questions: list[Question], benchmark: str) -> None:
    """Raise a one-sentence FileNotFoundError if any question's image file is missing."""
    missing = [q.image_path for q in questions if q.image_path is not None and not q.image_path.is_file()]
    if missing:
        raise FileNotFoundError(
            f"{benchmark}: {len(missing)} of {len(questions)} image files are missing (first: {missing[0]}); "
            f"run the download rule for {benchmark} or check the {benchmark} root in the config."
        )


def finish_loading(questions: list[Question], *, benchmark: str, source: Path, skipped: int, total: int,
                   what: str, nothing: str, limit: int | None, seed: int) -> list[Question]:
    """The common end of ``load``: report skipped entries, refuse an empty set, take the seeded
    subset and check that its images exist. ``nothing`` names what was expected ("valid questions")."""
    warn_skipped(benchmark, source, skipped, total, what)
    if not questions:
        raise ValueError(f"{benchmark}: {source} holds no {nothing}; run the download rule again.")
    questions = seeded_subset(questions, limit, seed)
    require_images(questions, benchmark)
    return questions


def mean_by_group(records: list[dict[str, Any]], value: str, group: str, scale: float = 1.0) -> dict[str, float]:
    """``accuracy`` over all records and ``<group>/accuracy`` per value of ``records[i][group]``."""
    groups: dict[str, list[float]] = {}
    for rec in records:
        groups.setdefault(rec[group], []).append(float(rec[value]))
    out = {"accuracy": scale * sum(float(r[value]) for r in records) / len(records)}
    out.update({f"{g}/accuracy": scale * sum(v) / len(v) for g, v in sorted(groups.items())})
    return out
