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
    Matches LLaVA's ``llava/eval/eval_pope.py`` (haotian-liu/LLaVA), run by LLaVA-1.5's
    ``scripts/v1_5/eval/pope.sh``, on the answer as LLaVA's generation loop leaves it
    (``model_vqa_loader.py`` strips it; ``generate.py`` does the same; the parse itself strips
    nothing). A prediction is parsed to yes/no by keeping only the text before its first '.'
    (if it has one), deleting commas, splitting on single spaces (not on newlines or tabs), and
    answering "no" if one of the words is exactly "No", "not" or "no", else "yes". So "No, there
    is not." is no, "Not sure" and "Nope" are yes (no exact word), "No\\nthere is none" is yes (its
    first word is "No\\nthere"), and an off-topic answer is yes, as in the official script. One
    departure: an empty answer (a failed question, whose image could not be decoded, has
    prediction "") is ``UNANSWERED``, not yes: it counts as wrong in accuracy, as a missed positive
    (false negative) when its label is yes, and never as a "yes" prediction.
    With "yes" as the positive class: accuracy, precision, recall, F1 and yes-ratio (share of
    "yes" predictions), fractions in [0, 1]. Where eval_pope.py would divide by zero (precision
    with no "yes" predicted, recall with no "yes" label) the value is 0.0 here.

    eval_pope.py scores each split (annotation file) on its own: ``random/f1``, ``popular/f1``,
    ``adversarial/f1`` (and the other four metrics). LLaVA-1.5's reported POPE figure is the mean
    over the three splits of each split's F1 (accuracy likewise): its 7B F1 of 85.9 is
    (87.2 + 86.3 + 84.5) / 3 from eval_pope.py's per-split output (haotian-liu/LLaVA issues #626
    and #806). That mean is ``split_mean/<metric>``, the headline Table 1 uses. ``pooled/<metric>``
    counts the three splits as one set of questions (not a number LLaVA reports; kept for
    comparison). ``split_mean/accuracy``, ``split_mean/f1``, ``pooled/accuracy`` and
    ``pooled/f1`` carry bootstrap 95% intervals over questions, resampled within each split
    (``<key>_ci_low``/``<key>_ci_high``; see ``eval.bootstrap``). lmms-eval's ``pope`` task
    differs: it compares the lower-cased, stripped answer with "yes"/"no" exactly (so "No, there
    is not." is neither) and pools the splits; LLaVA's rule is used because the paper ran LLaVA's
    scripts. Generation cap: 128 new tokens, ``model_vqa_loader.py``'s default.
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
UNANSWERED = "none"  # an empty prediction (a failed question): neither yes nor no


def parse_yes_no(prediction: str) -> str:
    """Map a free-form answer to "yes"/"no" with the rule of LLaVA's eval_pope.py (``UNANSWERED`` if empty)."""
    if not prediction.strip():
        return UNANSWERED  # eval_pope.py would say "yes": a question never asked must not score as one
    text = prediction
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
    fn = sum(p != "yes" and g == "yes" for p, g in zip(parsed, labels, strict=True))  # unanswered: missed
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
    max_new_tokens: ClassVar[int] = 128  # LLaVA's model_vqa_loader.py default

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
        per_split = {}
        for split in ordered:
            per_split[split] = binary_metrics([r["parsed"] for r in groups[split]], [r["label"] for r in groups[split]])
            out.update({f"{split}/{k}": v for k, v in per_split[split].items()})
        for k in METRICS:  # LLaVA-1.5's headline: the plain mean of the per-split values
            out[f"split_mean/{k}"] = sum(m[k] for m in per_split.values()) / len(per_split)
        pooled = binary_metrics([r["parsed"] for r in records], [r["label"] for r in records])
        out.update({f"pooled/{k}": v for k, v in pooled.items()})
        out.update(_intervals(records, ordered))
        return out


def _f1(s: np.ndarray) -> np.ndarray:
    """F1 from summed [tp, fp, tn, fn, unanswered no] columns: 2tp / (2tp + fp + fn), 0.0 when undefined."""
    return ratio(2 * s[..., 0], 2 * s[..., 0] + s[..., 1] + s[..., 3])


def _accuracy(s: np.ndarray) -> np.ndarray:
    return ratio(s[..., 0] + s[..., 2], s.sum(axis=-1))


def _intervals(records: list[dict[str, Any]], splits: list[str]) -> dict[str, float]:
    """Bootstrap intervals of the split-mean and pooled accuracy and F1, resampling within splits.

    Each question carries [tp, fp, tn, fn, unanswered with label no] in its split's block of five
    columns, so one resample's sums give every split's confusion counts (their sum over blocks is
    the pooled one); an unanswered question with label yes is a false negative."""
    comps = np.zeros((len(records), 5 * len(splits)))
    for row, r in enumerate(records):
        p, g = r["parsed"], r["label"]
        j = 5 * splits.index(r["split"])
        comps[row, j:j + 5] = (p == "yes" and g == "yes", p == "yes" and g == "no", p == "no" and g == "no",
                               p != "yes" and g == "yes", p == UNANSWERED and g == "no")
    strata = [r["split"] for r in records]

    def blocks(s: np.ndarray) -> np.ndarray:  # (resamples, splits, 5)
        return s.reshape(len(s), len(splits), 5)

    out: dict[str, float] = {}
    for name, metric in (("accuracy", _accuracy), ("f1", _f1)):
        mean = bootstrap_interval(comps, lambda s, m=metric: m(blocks(s)).mean(axis=1), strata=strata)
        pooled = bootstrap_interval(comps, lambda s, m=metric: m(blocks(s).sum(axis=1)), strata=strata)
        out.update({**interval_keys(f"split_mean/{name}", mean), **interval_keys(f"pooled/{name}", pooled)})
    return out
