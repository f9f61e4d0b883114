"""MM-Vet: 218 open-ended questions over six integrated capabilities, graded by an LLM judge.

Source
    The official release (mm-vet.zip), read from a local root::

        <root>/mm-vet.json   # {"v1_0": {"imagename": "v1_0.png", "capability": ["ocr", "math"],
                             #           "question": "What is x in the equation?", "answer": "-1<AND>-5"}}
        <root>/images/<imagename>

    ``limit`` takes a seeded subset.

Prompt
    ``question`` as is, with no suffix, as LLaVA-1.5's ``llava-mm-vet.jsonl``. Answers may be
    long (explanations, "gen" questions): the generation cap is 1024 new tokens, as LLaVA's
    ``llava/eval/model_vqa.py`` (which ``scripts/v1_5/eval/mmvet.sh`` runs).

Metric
    Matches MM-Vet's ``mm-vet_evaluator.py`` (yuweihao/MM-Vet; one run, the default
    ``--num_run``): each answer gets a judge score in [0, 1] (see ``eval.judge``: the official
    few-shot GPT grader prompt and re-ask rule over an OpenAI-compatible endpoint when
    ``LLAVA_GEMMA_JUDGE_BASE_URL`` is set, else the offline <AND>/<OR> scorer; config
    ``eval.benchmarks.mmvet.judge: offline|endpoint`` fixes the choice, as the toy study does
    with ``offline``). MM-Vet has no official offline scorer: the offline judge is this
    project's deterministic stand-in, and ``judge`` says which one produced the scores.
    ``score`` = 100 x the mean over questions; ``<cap>/score`` = 100 x the mean over the
    questions needing capability ``cap`` (rec, ocr, know, gen, spat, math), as the evaluator's
    per-capability columns (it rounds them to 1 decimal; these are unrounded).
    ``judge`` names the judge model, or "offline-and-or"; ``score_ci_*``: bootstrap 95% interval
    over images (questions sharing an image are resampled together). Judged answers are cached in
    ``<root>/judge_cache.jsonl`` (or ``LLAVA_GEMMA_JUDGE_CACHE``), so a rerun never pays twice.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any, ClassVar

from llava_gemma.eval.bootstrap import interval_keys, mean_interval
from llava_gemma.eval.judge import Judge, check_judge_choice, make_judge

from .base import Benchmark, Question, finish_loading, image_key, require_path

CAPABILITIES = ("rec", "ocr", "know", "gen", "spat", "math")
CACHE_FILE = "judge_cache.jsonl"


def _valid(entry: Any) -> bool:
    if not isinstance(entry, dict):
        return False
    caps = entry.get("capability")
    return (all(isinstance(entry.get(k), str) and entry[k].strip() for k in ("imagename", "question", "answer"))
            and isinstance(caps, list) and bool(caps) and all(isinstance(c, str) for c in caps))


class MMVetBenchmark(Benchmark):
    name: ClassVar[str] = "mmvet"
    max_new_tokens: ClassVar[int] = 1024  # LLaVA's model_vqa.py

    def __init__(self, judge: str | None = None) -> None:
        self.judge = judge  # config choice: "offline", "endpoint", or None (the environment decides)
        self._judges: dict[str, Judge] = {}

    def with_options(self, *, judge: str | None = None, **others: Any) -> MMVetBenchmark:
        super().with_options(**others)
        return MMVetBenchmark(judge=check_judge_choice(judge))

    def judge_for(self, cache_path: Path) -> Judge:
        """One judge per cache file, built on first use (the environment is read then, not at import)."""
        key = str(cache_path)
        if key not in self._judges:
            self._judges[key] = make_judge(cache_path, choice=self.judge)
        return self._judges[key]

    def load(self, root: Path, limit: int | None = None, seed: int = 0) -> list[Question]:
        root = Path(root)
        path = require_path(root / "mm-vet.json", "MM-Vet")
        image_dir = require_path(root / "images", "MM-Vet", is_dir=True)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise ValueError(f"MM-Vet: {path} is not valid JSON ({err.msg}); run the download rule again.") from err
        if not isinstance(data, dict):
            raise TypeError(f"MM-Vet: {path} must hold a JSON object mapping question ids to questions.")
        questions: list[Question] = []
        for qid, entry in data.items():
            if _valid(entry):
                questions.append(Question(
                    qid=str(qid), image_path=image_dir / entry["imagename"], prompt=entry["question"],
                    target=entry["answer"],
                    meta={"capability": list(entry["capability"]), "question": entry["question"],
                          "judge_cache": str(root / CACHE_FILE)},
                ))
        return finish_loading(questions, benchmark="MM-Vet", source=path, skipped=len(data) - len(questions),
                              total=len(data), what="questions", nothing="valid questions", limit=limit, seed=seed)

    def score(self, question: Question, prediction: str) -> dict[str, Any]:
        judge = self.judge_for(Path(question.meta.get("judge_cache", CACHE_FILE)))
        if not prediction.strip():  # a failed question (or an empty answer): nothing to grade, no judge call
            return {"score": 0.0, "capability": question.meta["capability"], "judge": judge.name,
                    "image": image_key(question), "judge_reply": "", "judge_tries": 0}
        grade = judge.grade(question.qid, question.meta.get("question", question.prompt), question.target,
                            prediction)
        return {"score": grade.score, "capability": question.meta["capability"], "judge": grade.judge,
                "image": image_key(question),
                "judge_reply": grade.content, "judge_tries": grade.tries}

    def aggregate(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        if not records:
            raise ValueError("MM-Vet: there are no records to aggregate.")
        scores = [float(r["score"]) for r in records]
        by_cap: dict[str, list[float]] = defaultdict(list)
        for rec in records:
            for cap in set(rec["capability"]):
                by_cap[cap].append(float(rec["score"]))
        out: dict[str, Any] = {"score": 100 * sum(scores) / len(scores)}
        ordered = [c for c in CAPABILITIES if c in by_cap] + sorted(set(by_cap) - set(CAPABILITIES))
        out.update({f"{c}/score": 100 * sum(by_cap[c]) / len(by_cap[c]) for c in ordered})
        out.update(interval_keys("score", mean_interval(scores, scale=100.0,
                                                     clusters=[r.get("image", i) for i, r in enumerate(records)])))
        out["judge"] = ",".join(sorted({str(r.get("judge", "unknown")) for r in records}))
        return out
