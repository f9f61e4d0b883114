"""VQAv2 test-dev: answers for EvalAI, which alone holds the answers (the number the paper reports).

Source
    The official VQAv2 test release, read from a local root::

        <root>/v2_OpenEnded_mscoco_test-dev2015_questions.json  # {"questions": [{"image_id", "question",
                                                                #   "question_id"}], ...}
        <root>/v2_OpenEnded_mscoco_test2015_questions.json      # optional: the whole test2015 set
        <root>/test2015/COCO_test2015_<image_id:012d>.jpg

    ``limit`` takes a seeded subset (then the submission scores as if the rest were answered "").

Prompt
    As ``vqav2``: ``question`` + ``SHORT_ANSWER_SUFFIX``.

Output
    No score here: ``metrics.json`` says ``"scored": false`` with a note, and the records hold the
    processed answer. ``submission.json`` beside them is the EvalAI upload: a JSON list of
    ``{"question_id": int, "answer": str}``, each answer through ``EvalAIAnswerProcessor`` (see
    ``vqav2.normalize_answer``), as LLaVA's ``convert_vqav2_for_submission.py`` writes it. When the
    test2015 question file is present, every test2015 question the run did not answer gets "" (as
    LLaVA pads it, for the server's full-set check); otherwise the list holds the answered questions.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

from .base import SHORT_ANSWER_SUFFIX, Benchmark, Question, finish_loading, require_path
from .vqav2 import _load_json, normalize_answer

QUESTIONS_FILE = "v2_OpenEnded_mscoco_test-dev2015_questions.json"
FULL_TEST_FILE = "v2_OpenEnded_mscoco_test2015_questions.json"
SUBMISSION_FILE = "submission.json"
NOTE = ("VQAv2 test-dev answers are not public: upload submission.json to the VQA Challenge on EvalAI "
        "(test-dev phase) for the official accuracy.")


def submission_entries(records: list[dict[str, Any]], full_ids: list[int] | None) -> list[dict[str, Any]]:
    """The EvalAI list: every answered question, then "" for the rest of ``full_ids`` (if given)."""
    answered = {int(r["id"]): r["parsed"] for r in records}
    ids = full_ids if full_ids is not None else list(answered)
    missing = set(answered) - set(ids)
    if missing:
        raise ValueError(f"VQAv2 test-dev: {len(missing)} answered questions (first: {min(missing)}) are not "
                         f"in {FULL_TEST_FILE}; the two question files come from different releases.")
    return [{"question_id": qid, "answer": answered.get(qid, "")} for qid in ids]


class VQAv2TestDevBenchmark(Benchmark):
    name: ClassVar[str] = "vqav2_testdev"
    max_new_tokens: ClassVar[int] = 128  # LLaVA's model_vqa_loader.py default
    scored: ClassVar[bool] = False  # no per-question score: the factor-effect models leave it out

    def load(self, root: Path, limit: int | None = None, seed: int = 0) -> list[Question]:
        root = Path(root)
        qpath = require_path(root / QUESTIONS_FILE, "VQAv2 test-dev")
        image_dir = require_path(root / "test2015", "VQAv2 test-dev", is_dir=True)
        raw = _load_json(qpath, "questions")
        questions = [
            Question(qid=str(q["question_id"]), image_path=image_dir / f"COCO_test2015_{q['image_id']:012d}.jpg",
                     prompt=q["question"] + SHORT_ANSWER_SUFFIX, target=None)
            for q in raw
            if isinstance(q, dict) and isinstance(q.get("question"), str) and isinstance(q.get("image_id"), int)
            and isinstance(q.get("question_id"), int)
        ]
        return finish_loading(questions, benchmark="VQAv2 test-dev", source=qpath, skipped=len(raw) - len(questions),
                              total=len(raw), what="questions", nothing="valid questions", limit=limit, seed=seed)

    def score(self, question: Question, prediction: str) -> dict[str, Any]:
        return {"parsed": normalize_answer(prediction)}

    def aggregate(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        if not records:
            raise ValueError("VQAv2 test-dev: there are no records to aggregate.")
        return {"scored": False, "note": NOTE, "submission": SUBMISSION_FILE}

    def write_extra_outputs(self, out_dir: Path, data_root: Path, records: list[dict[str, Any]]) -> None:
        full = Path(data_root) / FULL_TEST_FILE
        full_ids = ([q["question_id"] for q in _load_json(full, "questions")
                     if isinstance(q, dict) and isinstance(q.get("question_id"), int)] if full.is_file() else None)
        entries = submission_entries(records, full_ids)
        (Path(out_dir) / SUBMISSION_FILE).write_text(json.dumps(entries) + "\n")
