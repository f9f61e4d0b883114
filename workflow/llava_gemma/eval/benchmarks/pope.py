"""POPE (Polling-based Object Probing Evaluation) for object hallucination.

Source
    The COCO POPE annotation files in LLaVA's layout, read from a local root::

        <root>/coco_pope_{random,popular,adversarial}.json   # JSON lines, one question each
        <root>/val2014/<image>                                # COCO val2014 images

    Each line is ``{"question_id": 1, "image": "COCO_val2014_000000310196.jpg",
    "text": "Is there a snowboard in the image?", "label": "yes"}``. All three splits are
    loaded; ``limit`` applies per split (a seeded subset balanced between yes and no, see ``stratified_subset``).

Prompt
    ``text`` followed by ``SHORT_ANSWER_SUFFIX`` ("Answer the question using a single word or
    phrase."), as in LLaVA-1.5's ``llava_pope_test.jsonl``. Target: "yes" or "no".

Metric
    Matches LLaVA's ``llava/eval/eval_pope.py``. A prediction is parsed to yes/no by keeping
    only the text before the first '.', deleting commas, splitting on single spaces, and
    answering "no" if one of the words is exactly "No", "not" or "no", else "yes" (so an
    empty or off-topic answer counts as "yes", as in the official script). The prediction is
    whitespace-stripped first, as LLaVA's generation loop strips its outputs. With "yes" as
    the positive class, accuracy, precision, recall, F1 and yes-ratio (share of "yes"
    predictions) are reported per split (``random/accuracy``, ...) and pooled over the
    splits (``all/accuracy``, ..., also as the top-level ``accuracy``, ``f1``, ...).
    All values are fractions in [0, 1]. Where the official script would divide by zero
    (e.g. precision with no "yes" predicted) the value is 0.0. The pooled accuracy and F1 carry
    a bootstrap 95% interval over questions, resampled within each split
    (``accuracy_ci_low``/``_ci_high``, ``f1_ci_low``/``_ci_high``; see ``eval.bootstrap``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from llava_gemma.eval.bootstrap import bootstrap_interval, interval_keys, ratio

from .base import (
    SHORT_ANSWER_SUFFIX,
    Benchmark,
    Question,
    require_images,
    require_path,
    stratified_subset,
    warn_skipped,
)

SPLITS = ("random", "popular", "adversarial")
METRICS = ("accuracy", "precision", "recall", "f1", "yes_ratio")
_NEGATIVE_WORDS = ("No", "not", "no")


def parse_yes_no(prediction: str) -> str:
    """Map a free-form answer to "yes"/"no" with the rule of LLaVA's eval_pope.py."""
    text = prediction.strip()
    if "." in text:
        text = text.split(".")[0]  # only the first sentence
    words = text.replace(",", "").split(" ")
    return "no" if any(w in words for w in _NEGATIVE_WORDS) else "yes"


def _ratio(num: int, den: int) -> float:
    return num / den if den else 0.0


def binary_metrics(parsed: list[str], labels: list[str]) -> dict[str, float]:
    """Accuracy, precision, recall, F1 and yes-ratio with "yes" as the positive class."""
    tp = sum(p == "yes" and g == "yes" for p, g in zip(parsed, labels, strict=True))
    fp = sum(p == "yes" and g == "no" for p, g in zip(parsed, labels, strict=True))
    tn = sum(p == "no" and g == "no" for p, g in zip(parsed, labels, strict=True))
    fn = sum(p == "no" and g == "yes" for p, g in zip(parsed, labels, strict=True))
    precision = _ratio(tp, tp + fp)
    recall = _ratio(tp, tp + fn)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "accuracy": _ratio(tp + tn, len(parsed)),
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "yes_ratio": _ratio(parsed.count("yes"), len(parsed)),
    }


def _parse_line(line: str) -> dict[str, Any] | None:
    """One annotation line as a clean dict (label lower-cased), or None if it is malformed."""
    try:
        row = json.loads(line)
    except json.JSONDecodeError:
        return None
    if not isinstance(row, dict):
        return None
    qid, text, image, label = (row.get(k) for k in ("question_id", "text", "image", "label"))
    if not isinstance(qid, (int, str)) or isinstance(qid, bool) or str(qid) == "":
        return None
    if not (isinstance(text, str) and text.strip() and isinstance(image, str) and image.strip()):
        return None
    if not isinstance(label, str) or label.strip().lower() not in ("yes", "no"):
        return None
    return {"question_id": qid, "text": text, "image": image, "label": label.strip().lower()}


class PopeBenchmark(Benchmark):
    name: ClassVar[str] = "pope"
    max_new_tokens: ClassVar[int] = 4  # "Yes"/"No" and maybe a comma; the rule reads the first words

    def load(self, root: Path, limit: int | None = None, seed: int = 0) -> list[Question]:
        root = Path(root)
        image_dir = require_path(root / "val2014", "POPE", is_dir=True)
        questions: list[Question] = []
        for split in SPLITS:
            path = require_path(root / f"coco_pope_{split}.json", "POPE")
            split_questions = self._read_split(path, split, image_dir)
            # Stratified by label: a limited run keeps POPE's 50/50 yes/no, so answer priors score 0.5.
            questions.extend(stratified_subset(split_questions, limit, seed, key=lambda q: q.target))
        require_images(questions, "POPE")
        return questions

    @staticmethod
    def _read_split(path: Path, split: str, image_dir: Path) -> list[Question]:
        questions: list[Question] = []
        seen: set[str] = set()
        total = skipped = 0
        with path.open(encoding="utf-8") as fh:
            for line in fh:
                if not line.strip():
                    continue
                total += 1
                row = _parse_line(line)
                qid = f"{split}-{row['question_id']}" if row else ""
                if row is None or qid in seen:  # malformed, or a repeated question_id
                    skipped += 1
                    continue
                seen.add(qid)
                questions.append(
                    Question(
                        qid=qid,
                        image_path=image_dir / row["image"],
                        prompt=row["text"] + SHORT_ANSWER_SUFFIX,
                        target=row["label"],
                        meta={"split": split},
                    )
                )
        warn_skipped("POPE", path, skipped, total, "lines")
        if not questions:
            raise ValueError(f"POPE: {path} holds no valid questions; run the download rule for POPE again.")
        return questions

    def score(self, question: Question, prediction: str) -> dict[str, Any]:
        parsed = parse_yes_no(prediction)
        return {
            "correct": parsed == question.target,
            "parsed": parsed,
            "split": question.meta["split"],
            "label": question.target,
        }

    def aggregate(self, records: list[dict[str, Any]]) -> dict[str, float]:
        if not records:
            raise ValueError("POPE: there are no records to aggregate.")
        groups: dict[str, list[dict[str, Any]]] = {}
        for rec in records:
            groups.setdefault(rec["split"], []).append(rec)
        ordered = [s for s in SPLITS if s in groups] + sorted(set(groups) - set(SPLITS))
        out: dict[str, float] = {}
        for split in [*ordered, "all"]:
            recs = records if split == "all" else groups[split]
            metrics = binary_metrics([r["parsed"] for r in recs], [r["label"] for r in recs])
            out.update({f"{split}/{k}": v for k, v in metrics.items()})
            if split == "all":
                out.update(metrics)
        out.update(_intervals(records))
        return out


def _intervals(records: list[dict[str, Any]]) -> dict[str, float]:
    """Bootstrap intervals of the pooled accuracy and F1 from per-question [tp, fp, tn, fn]."""
    cells = [(r["parsed"], r["label"]) for r in records]
    comps = np.array([[p == "yes" and g == "yes", p == "yes" and g == "no", p == "no" and g == "no",
                       p == "no" and g == "yes"] for p, g in cells], dtype=float)
    strata = [r["split"] for r in records]
    acc = bootstrap_interval(comps, lambda s: ratio(s[:, 0] + s[:, 2], s.sum(axis=1)), strata=strata)
    f1 = bootstrap_interval(comps, lambda s: ratio(2 * s[:, 0], 2 * s[:, 0] + s[:, 1] + s[:, 3]), strata=strata)
    return {**interval_keys("accuracy", acc), **interval_keys("f1", f1)}
