"""GQA test-dev (balanced) compositional question answering.

Source
    The official GQA release files, read from a local root::

        <root>/testdev_balanced_questions.json   # {qid: {"imageId", "question", "answer",
                                                 #        "types": {"structural", ...},
                                                 #        "isBalanced", ...}}
        <root>/images/<imageId>.jpg
        (or, if absent, <root>/../../llava_instruct/images/gqa/images/: GQA's images.zip holds the
        test-dev images too, and the paper config unpacks it once, for the 665k mix)

    Only questions with ``isBalanced`` true are loaded, as the official ``eval.py`` scores only
    those (the test-dev balanced file holds nothing else). ``limit`` takes a seeded subset.

Prompt
    ``question`` followed by ``SHORT_ANSWER_SUFFIX`` ("Answer the question using a single word
    or phrase."), as in LLaVA-1.5's ``llava_gqa_testdev_balanced.jsonl``. Target: ``answer``.

Metric
    Matches LLaVA's ``scripts/convert_gqa_for_eval.py`` (haotian-liu/LLaVA) followed by GQA's
    official ``eval.py`` (the evaluation script from gqadataset.org, which LLaVA's GQA folder
    holds as ``eval/eval.py``; testdev_balanced tier), as LLaVA-1.5's ``scripts/v1_5/eval/gqa.sh``
    runs them. The answer is
    the text LLaVA's generation loop leaves (``model_vqa_loader.py`` strips it; ``generate.py``
    does the same); convert_gqa_for_eval.py removes trailing periods (``rstrip('.')``) and
    lower-cases, nothing more: no stripping of spaces, no removal of articles or inner
    punctuation. eval.py then counts it right only if it equals the gold answer exactly, so
    "Yes." and "YES" match "yes", but "the dog" != "dog", "yes, it is" != "yes" and "2" != "two".
    Reported as fractions in [0, 1] (eval.py prints percent): ``accuracy`` over all questions;
    ``binary/accuracy`` and ``open/accuracy``, where "open" is structural type "query" and
    "binary" every other type (0.0 for an empty group, as eval.py's ``avg``); and
    ``structural/<type>/accuracy`` per structural type present (eval.py's
    "accuracyPerStructuralType"). Consistency, validity, plausibility, grounding and
    distribution need extra files and are not computed (LLaVA reports accuracy only).
    ``accuracy_ci_low``/``accuracy_ci_high``: bootstrap 95% interval over images (GQA asks many questions of each image;
    they are resampled together; each record names its ``image``). lmms-eval's
    ``gqa`` task differs (exact match ignoring case and punctuation); LLaVA's is used because
    the paper ran LLaVA's scripts. Generation cap: 128 new tokens, ``model_vqa_loader.py``'s default.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

from llava_gemma.eval.bootstrap import interval_keys, mean_interval

from .base import (
    SHORT_ANSWER_SUFFIX,
    Benchmark,
    Question,
    finish_loading,
    image_key,
    require_path,
)

QUESTIONS_FILE = "testdev_balanced_questions.json"
# <data/raw>/benchmarks/gqa -> <data/raw>/llava_instruct/images/gqa/images: where config.yaml unpacks images.zip.
SHARED_IMAGES = Path("..", "..", "llava_instruct", "images", "gqa", "images")


def normalize_prediction(prediction: str) -> str:
    """LLaVA's convert_gqa_for_eval.py: trailing periods dropped, lower-cased (nothing else)."""
    return prediction.rstrip(".").lower()


def _is_valid(entry: Any) -> bool:
    if not isinstance(entry, dict) or not isinstance(entry.get("isBalanced"), bool):
        return False
    types = entry.get("types")
    fields = (entry.get("imageId"), entry.get("question"), entry.get("answer"))
    return (
        all(isinstance(f, str) and f.strip() for f in fields)
        and isinstance(types, dict)
        and isinstance(types.get("structural"), str)
        and bool(types["structural"])
    )


def _mean(values: list[bool]) -> float:
    return sum(values) / len(values) if values else 0.0


class GQABenchmark(Benchmark):
    name: ClassVar[str] = "gqa"
    max_new_tokens: ClassVar[int] = 128  # LLaVA's model_vqa_loader.py default

    def load(self, root: Path, limit: int | None = None, seed: int = 0) -> list[Question]:
        root = Path(root)
        path = require_path(root / QUESTIONS_FILE, "GQA")
        shared = root / SHARED_IMAGES
        image_dir = shared if shared.is_dir() and not (root / "images").is_dir() else require_path(
            root / "images", "GQA", is_dir=True)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise ValueError(
                f"GQA: {path} is not valid JSON ({err.msg} at line {err.lineno}); "
                "run the download rule for GQA again."
            ) from err
        if not isinstance(data, dict):
            raise TypeError(f"GQA: {path} must hold a JSON object mapping question ids to questions.")

        questions: list[Question] = []
        skipped = 0
        for qid, entry in data.items():
            if not _is_valid(entry):
                skipped += 1
                continue
            if not entry["isBalanced"]:
                continue
            questions.append(
                Question(
                    qid=str(qid),
                    image_path=image_dir / f"{entry['imageId']}.jpg",
                    prompt=entry["question"] + SHORT_ANSWER_SUFFIX,
                    target=entry["answer"],
                    meta={
                        "structural": entry["types"]["structural"],
                        "semantic": entry["types"].get("semantic"),
                        "image_id": entry["imageId"],
                    },
                )
            )
        return finish_loading(questions, benchmark="GQA", source=path, skipped=skipped, total=len(data),
                              what="questions", nothing="valid balanced questions", limit=limit, seed=seed)

    def score(self, question: Question, prediction: str) -> dict[str, Any]:
        parsed = normalize_prediction(prediction)
        return {
            "correct": parsed == question.target,
            "parsed": parsed,
            "structural": question.meta["structural"],
            "image": image_key(question),
        }

    def aggregate(self, records: list[dict[str, Any]]) -> dict[str, float]:
        if not records:
            raise ValueError("GQA: there are no records to aggregate.")
        by_type: dict[str, list[bool]] = {}
        for rec in records:
            by_type.setdefault(rec["structural"], []).append(bool(rec["correct"]))
        out = {
            "accuracy": _mean([bool(r["correct"]) for r in records]),
            "binary/accuracy": _mean([bool(r["correct"]) for r in records if r["structural"] != "query"]),
            "open/accuracy": _mean([bool(r["correct"]) for r in records if r["structural"] == "query"]),
        }
        out.update({f"structural/{t}/accuracy": _mean(v) for t, v in sorted(by_type.items())})
        images = [r.get("image", i) for i, r in enumerate(records)]  # older records: one question, one cluster
        out.update(interval_keys("accuracy", mean_interval([bool(r["correct"]) for r in records], clusters=images)))
        return out
