"""ScienceQA-IMG: the image questions of the ScienceQA test split, multiple choice.

Source
    The official ScienceQA release, read from a local root::

        <root>/problems.json      # {pid: {"question", "choices": [...], "answer": index, "hint",
                                  #        "image": "image.png" | null, "subject", "grade", ...}}
        <root>/pid_splits.json    # {"train": [pid, ...], "val": [...], "test": [...], ...}
        <root>/test/<pid>/image.png   (or <root>/images/test/<pid>/image.png)

    Only test problems with an image are loaded (the IMG subset, 2,017 questions). ``limit``
    takes a seeded subset.

Prompt
    "Context: {hint}\\n" when the hint is not empty, then the question, "\\n", the lettered choices
    ("A. ...\\nB. ..."), and ``LETTER_SUFFIX``, as LLaVA-1.5's ``llava_test_CQM-A.json`` and
    lmms-eval's ``scienceqa_img``. Target: the letter of ``answer``.

Metric
    Matches LLaVA's ``llava/eval/eval_science_qa.py`` (haotian-liu/LLaVA), which LLaVA-1.5's
    ``scripts/v1_5/eval/sqa.sh`` runs, on the answer text as LLaVA's generation loop leaves it
    (``model_vqa_science.py`` strips it; ``generate.py`` does the same). The parse reads that text
    as it is, with no further stripping and no treatment of newlines, in this order:

    1. the whole text is one of "A".."E": that letter ("B" is B; " B" or "b" is not);
    2. the text has at least 3 characters, its first is one of "A".."E" and the next two are ". "
       (a period and a space): the first character ("B. cat" is B; "B." and "B.\\ncat" are not);
    3. ``re.findall(r"The answer is ([A-Z]).", text)``: exactly one match gives its letter. The
       regular expression needs some character (not a newline) after the letter, so "The answer
       is B." and "The answer is Bob" give B but a text ending in "The answer is B" fails; two
       matches fail (``findall``, not ``search``); the phrase is case-sensitive.

    Anything else is "FAILED". The letter counts only if it names one of the question's choices
    (``get_pred_idx``: "E", or "F" from rule 3, is wrong for a 4-choice question). lmms-eval's
    ``scienceqa_img`` differs (it strips, compares case-insensitively and takes "X." without the
    space); LLaVA's rule is used because the paper ran LLaVA's scripts.
    ``accuracy``: fraction right; ``<subject>/accuracy`` per subject; ``accuracy_ci_*``:
    bootstrap 95% interval over questions. Generation cap: 1024 new tokens, as
    ``model_vqa_science.py``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, ClassVar

from llava_gemma.eval.bootstrap import interval_keys, mean_interval

from .base import LETTER_SUFFIX, Benchmark, Question, finish_loading, mean_by_group, require_path

OPTIONS = ("A", "B", "C", "D", "E")
# eval_science_qa.py's pattern, unescaped dot included: "The answer is", a capital, any one character.
_ANSWER_IS = re.compile(r"The answer is ([A-Z]).")
FAILED = "FAILED"


def parse_letter(prediction: str) -> str:
    """The letter LLaVA's eval_science_qa.py reads from ``prediction`` (taken as is), or "FAILED"."""
    if prediction in OPTIONS:
        return prediction
    if len(prediction) >= 3 and prediction[0] in OPTIONS and prediction[1:3] == ". ":
        return prediction[0]
    found = _ANSWER_IS.findall(prediction)
    return found[0] if len(found) == 1 else FAILED


def make_prompt(problem: dict[str, Any]) -> str:
    hint = (problem.get("hint") or "").strip()
    context = f"Context: {hint}\n" if hint else ""
    choices = "\n".join(f"{OPTIONS[i]}. {c}" for i, c in enumerate(problem["choices"]))
    return f"{context}{problem['question']}\n{choices}{LETTER_SUFFIX}"


def _read(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"ScienceQA: {path} is not valid JSON ({err.msg}); run the download rule again.") from err


def _valid(problem: Any) -> bool:
    if not isinstance(problem, dict):
        return False
    choices, answer = problem.get("choices"), problem.get("answer")
    return (isinstance(problem.get("question"), str) and isinstance(choices, list)
            and 2 <= len(choices) <= len(OPTIONS) and all(isinstance(c, str) for c in choices)
            and isinstance(answer, int) and not isinstance(answer, bool) and 0 <= answer < len(choices))


class ScienceQAImgBenchmark(Benchmark):
    name: ClassVar[str] = "scienceqa_img"
    max_new_tokens: ClassVar[int] = 1024  # LLaVA's model_vqa_science.py

    def load(self, root: Path, limit: int | None = None, seed: int = 0) -> list[Question]:
        root = Path(root)
        problems = _read(require_path(root / "problems.json", "ScienceQA"))
        splits = _read(require_path(root / "pid_splits.json", "ScienceQA"))
        if not isinstance(problems, dict) or not isinstance(splits, dict) or not isinstance(splits.get("test"), list):
            raise ValueError(f"ScienceQA: {root} must hold problems.json (an object) and pid_splits.json "
                             "with a 'test' list; run the download rule again.")
        image_root = root / "images" / "test" if (root / "images" / "test").is_dir() else root / "test"
        questions: list[Question] = []
        skipped = 0
        for pid in map(str, splits["test"]):
            problem = problems.get(pid)
            if not _valid(problem):
                skipped += 1
                continue
            if not problem.get("image"):
                continue  # text-only problem: not part of ScienceQA-IMG
            questions.append(Question(
                qid=pid, image_path=image_root / pid / str(problem["image"]), prompt=make_prompt(problem),
                target=OPTIONS[problem["answer"]],
                meta={"n_choices": len(problem["choices"]), "subject": problem.get("subject", "unknown")},
            ))
        return finish_loading(questions, benchmark="ScienceQA", source=root / "problems.json", skipped=skipped,
                              total=len(splits["test"]), what="test problems",
                              nothing="test problems with an image", limit=limit, seed=seed)

    def score(self, question: Question, prediction: str) -> dict[str, Any]:
        parsed = parse_letter(prediction)
        valid = parsed in OPTIONS[: question.meta["n_choices"]]
        return {"correct": valid and parsed == question.target, "parsed": parsed,
                "subject": question.meta["subject"]}

    def aggregate(self, records: list[dict[str, Any]]) -> dict[str, float]:
        if not records:
            raise ValueError("ScienceQA: there are no records to aggregate.")
        out = mean_by_group(records, "correct", "subject")
        out.update(interval_keys("accuracy", mean_interval([bool(r["correct"]) for r in records])))
        return out
