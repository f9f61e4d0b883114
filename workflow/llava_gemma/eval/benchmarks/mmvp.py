"""MMVP (Multimodal Visual Patterns): 150 "CLIP-blind" image pairs, one two-option question each.

Source
    The MMVP/MMVP release, read from a local root::

        <root>/Questions.csv       # Index,Question,Options,Correct Answer
                                   # 1,Are the butterfly's wings closer to being open or closed?,(a) Open (b) Closed,(a)
        <root>/MMVP Images/<Index>.jpg   (or <root>/images/<Index>.jpg: the paper config's download
                                   path, which avoids the space in shell commands)

    Questions 2k-1 and 2k ask the same question of the two images of pair k. The released ground
    truth of questions 99/100 and 279/280 is swapped; as lmms-eval does, it is corrected here
    (B, A, B, A), only where those rows hold the known questions (tusks; sitting/standing).
    ``limit`` takes a seeded subset of whole pairs (``limit // 2`` of them, at least one).

Prompt
    ``Question`` + "\\n" + lettered options ("A. Open\\nB. Closed") + ``LETTER_SUFFIX``, as in
    lmms-eval's ``mmvp`` task. Target: "A" or "B".

Metric
    The official scorer (tsb0601/MMVP ``scripts/gpt_grader.py``, after ``evaluate_mllm.py`` asked
    "Question (a) x (b) y" and generated up to 1024 tokens) has GPT-4 judge each free-form answer
    against the correct option and counts a pair right when both of its questions (rows 2k-1,
    2k) are judged right; ``pair_accuracy`` is that count over the pairs. LLaVA has no MMVP
    script, so the deterministic letter rule of lmms-eval's ``tasks/mmvp/utils.py`` stands in for
    the judge: the answer is stripped, then the first of these (case-insensitive) gives the
    letter: the whole answer is a letter with optional parentheses and period ("(B).");
    the answer opens with such a letter followed by a period or a space ("A. Open", "B is");
    "answer is X"; "option X"; any A or B (optionally in parentheses) followed by a space or the
    end ("I think A"; note this also reads the article in "a dog is"); else the first character
    if it is A or B; else nothing (wrong). The gold letter is "A" if the released "Correct
    Answer" contains "(a)" or is "a", "B" likewise, as lmms-eval normalises it.
    ``pair_accuracy``: fraction of complete pairs with both questions right (the MMVP paper's
    number; 0.0 if no pair is complete); ``question_accuracy`` (also ``accuracy``): fraction
    of questions right. Fractions in [0, 1]; ``*_ci_*``: bootstrap 95% intervals resampling
    pairs. Generation cap: 128 new tokens, as LLaVA's ``model_vqa_loader.py`` (lmms-eval
    allows 16, MMVP's own script 1024).
"""

from __future__ import annotations

import csv
import re
from collections import defaultdict
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from llava_gemma.eval.bootstrap import bootstrap_interval, interval_keys, ratio

from .base import LETTER_SUFFIX, Benchmark, Question, require_images, require_path, seeded_subset, warn_skipped

QUESTIONS_FILE = "Questions.csv"
IMAGE_DIR = "MMVP Images"
PLAIN_IMAGE_DIR = "images"  # the same images under a name without a space
# 1-based question index -> corrected letter, and a word the real row's options contain.
CORRECTIONS: dict[int, tuple[str, str]] = {99: ("B", "tusks"), 100: ("A", "tusks"), 279: ("B", "sitting"),
                                           280: ("A", "sitting")}
_OPTION = re.compile(r"\(([a-z])\)\s*(.+?)(?=\s*\([a-z]\)|$)", re.IGNORECASE)
_LETTER_PATTERNS = tuple(re.compile(p, re.IGNORECASE) for p in (
    r"^\s*\(?([AB])\)?\.?\s*$", r"^\s*\(?([AB])\)?[\.\s]", r"answer\s+is\s+\(?([AB])\)?", r"option\s+\(?([AB])\)?",
    r"\(?([AB])\)?(?:\s|$)",
))


def parse_options(options: str) -> list[str]:
    """'(a) Open (b) Closed' -> ['Open', 'Closed']."""
    return [text.strip() for _, text in _OPTION.findall(options)]


def parse_letter(prediction: str) -> str:
    """The option letter an answer names, by lmms-eval's MMVP rules ('' if none)."""
    text = prediction.strip()
    for pattern in _LETTER_PATTERNS:
        if match := pattern.search(text):
            return match.group(1).upper()
    return text[0].upper() if text and text[0].upper() in "AB" else ""


def make_prompt(question: str, options: list[str]) -> str:
    """The question, its options as "A. Open\\nB. Closed" lines, and the letter instruction."""
    lettered = "\n".join(f"{chr(65 + i)}. {opt}" for i, opt in enumerate(options))
    return f"{question}\n{lettered}{LETTER_SUFFIX}"


def gold_letter(correct_answer: str) -> str | None:
    """lmms-eval's reading of a "Correct Answer" cell: "(a)" inside, or just "a", is A; B likewise."""
    raw = correct_answer.strip().lower()
    if "(a)" in raw or raw == "a":
        return "A"
    if "(b)" in raw or raw == "b":
        return "B"
    return None


def _gold(row: dict[str, str], index: int) -> str | None:
    letter = gold_letter(row.get("Correct Answer") or "")
    if index in CORRECTIONS and CORRECTIONS[index][1] in (row.get("Options") or "").lower():
        return CORRECTIONS[index][0]
    return letter


class MMVPBenchmark(Benchmark):
    name: ClassVar[str] = "mmvp"
    max_new_tokens: ClassVar[int] = 128  # LLaVA's model_vqa_loader.py default

    def load(self, root: Path, limit: int | None = None, seed: int = 0) -> list[Question]:
        root = Path(root)
        path = require_path(root / QUESTIONS_FILE, "MMVP")
        plain = root / PLAIN_IMAGE_DIR
        image_dir = plain if plain.is_dir() and not (root / IMAGE_DIR).is_dir() else require_path(
            root / IMAGE_DIR, "MMVP", is_dir=True)
        with path.open(encoding="utf-8-sig", newline="") as fh:
            rows = list(csv.DictReader(fh))
        pairs: dict[int, list[Question]] = defaultdict(list)
        skipped = 0
        for row in rows:
            index_text = (row.get("Index") or row.get("lndex") or "").strip()
            options = parse_options(row.get("Options") or "")
            gold = _gold(row, int(index_text)) if index_text.isdigit() else None
            question = (row.get("Question") or "").strip()
            if gold is None or len(options) != 2 or not question:
                skipped += 1
                continue
            index = int(index_text)
            pairs[(index - 1) // 2].append(Question(
                qid=str(index), image_path=image_dir / f"{index}.jpg",
                prompt=make_prompt(question, options), target=gold,
                meta={"pair": (index - 1) // 2, "options": options},
            ))
        warn_skipped("MMVP", path, skipped, len(rows), "rows")
        if not pairs:
            raise ValueError(f"MMVP: {path} holds no valid questions; run the download rule for MMVP again.")
        keys = sorted(pairs)
        keep = seeded_subset(keys, None if limit is None else max(1, limit // 2), seed)
        questions = [q for k in keep for q in pairs[k]]
        require_images(questions, "MMVP")
        return questions

    def score(self, question: Question, prediction: str) -> dict[str, Any]:
        parsed = parse_letter(prediction)
        return {"correct": parsed == question.target, "parsed": parsed, "pair": question.meta["pair"]}

    def aggregate(self, records: list[dict[str, Any]]) -> dict[str, float]:
        if not records:
            raise ValueError("MMVP: there are no records to aggregate.")
        pairs: dict[Any, list[bool]] = defaultdict(list)
        for rec in records:
            pairs[rec["pair"]].append(bool(rec["correct"]))
        # Per pair: [both right, complete, questions right, questions]; as in lmms-eval, a pair that
        # lost a question (a malformed row) counts for question accuracy only.
        comps = np.array([[len(m) == 2 and all(m), len(m) == 2, sum(m), len(m)] for m in pairs.values()],
                         dtype=float)
        total = comps.sum(axis=0)
        out = {"pair_accuracy": float(ratio(total[0], total[1])), "question_accuracy": float(total[2] / total[3])}
        out["accuracy"] = out["question_accuracy"]
        out["pairs"] = float(total[1])
        out.update(interval_keys("pair_accuracy", bootstrap_interval(comps, lambda s: ratio(s[:, 0], s[:, 1]))))
        out.update(interval_keys("question_accuracy", bootstrap_interval(comps, lambda s: ratio(s[:, 2], s[:, 3]))))
        return out
