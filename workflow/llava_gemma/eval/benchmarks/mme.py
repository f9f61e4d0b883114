"""MME: yes/no perception and cognition questions, two per image, over 14 subtasks.

Source
    Either distribution, read from a local root (see ``mme_files``): the lmms-lab/MME hub snapshot
    (the ``test`` split as parquet, 2,374 questions) or the official release folders
    (``MME_Benchmark_release_version/<subtask>/``, images with per-image ``question<TAB>answer``
    files). ``limit`` takes a seeded subset of images within each subtask (both questions of an
    image are kept, and every subtask keeps at least one image), about ``limit`` questions in all.

Prompt
    ``question`` with its " Please answer yes or no." replaced by ``SHORT_ANSWER_SUFFIX``, as
    LLaVA-1.5's ``llava_mme.jsonl`` and lmms-eval's ``mme`` task (default post_prompt) do.

Metric
    Matches MME's official ``eval_tool/calculation.py`` (BradyFU/Awesome-Multimodal-Large-
    Language-Models, branch Evaluation, ``tools/eval_tool.zip``), which LLaVA-1.5's
    ``scripts/v1_5/eval/mme.sh`` runs after ``convert_answer_to_mme.py``. The answer is the
    text LLaVA's generation loop leaves (``model_vqa_loader.py`` strips it; ``generate.py`` does
    the same). calculation.py lower-cases it and takes "yes"/"no" as is, else "yes" if "yes"
    occurs in its first 4 characters, else "no" if "no" does, else "other" (wrong whichever the
    truth). No further stripping and no removal of periods: "Yes." is yes (prefix "yes."),
    "Not sure" is no (prefix "not "), "There is no dog" is other, " yes" is yes but "  yes" is
    other. (calculation.py reads the answer with the line's newline still attached; that changes
    nothing, as a newline can complete neither "yes" nor "no". An answer containing a tab or a
    newline stops calculation.py, whose file holds one tab-separated line per question; here it
    is parsed like any other text.)

    Per subtask: ``acc`` = 100 x correct questions / questions, ``acc_plus`` = 100 x images
    with both questions right / images, ``score`` = acc + acc_plus (max 200). ``perception`` =
    sum of the 10 perception subtask scores (max 2000), ``cognition`` = sum of the 4 cognition
    ones (max 800), ``total`` = both; a subtask not evaluated adds nothing.
    ``perception_ci_*``/``cognition_ci_*``: bootstrap 95% intervals resampling images within
    each subtask. lmms-eval's ``mme`` task differs: it strips, deletes periods, and reads a lone
    "y"/"n" as yes/no; calculation.py's rule is used because the paper ran LLaVA's scripts.
    Generation cap: 128 new tokens, ``model_vqa_loader.py``'s default.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from llava_gemma.eval.bootstrap import bootstrap_interval, interval_keys, ratio

from .base import SHORT_ANSWER_SUFFIX, Benchmark, Question, require_images, warn_skipped
from .mme_files import read_mme

PERCEPTION = ("existence", "count", "position", "color", "posters", "celebrity", "scene", "landmark",
              "artwork", "OCR")
COGNITION = ("commonsense_reasoning", "numerical_calculation", "text_translation", "code_reasoning")
SUBTASKS = PERCEPTION + COGNITION
MME_SUFFIX = " Please answer yes or no."


def parse_yes_no(prediction: str) -> str:
    """MME calculation.py's parse: exact yes/no, else 'yes'/'no' within the first 4 characters."""
    text = prediction.lower()
    if text in ("yes", "no"):
        return text
    prefix = text[:4]
    if "yes" in prefix:
        return "yes"
    if "no" in prefix:
        return "no"
    return "other"


def make_prompt(question: str) -> str:
    return question.strip().replace(MME_SUFFIX, "") + SHORT_ANSWER_SUFFIX


def _subset_images(by_image: dict[str, list[Question]], limit: int | None, seed: int) -> list[str]:
    """Seeded image subset, per subtask in proportion, at least one image per subtask."""
    images = list(by_image)
    if limit is None:
        return images
    total = sum(len(v) for v in by_image.values())
    by_task: dict[str, list[str]] = defaultdict(list)
    for key in images:
        by_task[by_image[key][0].meta["category"]].append(key)
    rng = np.random.default_rng(seed)
    keep: set[str] = set()
    for task in sorted(by_task):
        keys = by_task[task]
        quota = max(1, round(len(keys) * min(1.0, limit / total)))
        keep.update(keys[i] for i in rng.choice(len(keys), size=min(quota, len(keys)), replace=False))
    return [k for k in images if k in keep]


class MMEBenchmark(Benchmark):
    name: ClassVar[str] = "mme"
    max_new_tokens: ClassVar[int] = 128  # LLaVA's model_vqa_loader.py default

    def load(self, root: Path, limit: int | None = None, seed: int = 0) -> list[Question]:
        source = read_mme(Path(root), SUBTASKS)
        by_image: dict[str, list[Question]] = defaultdict(list)
        for row in source.rows:
            n = len(by_image[row.image_key])
            by_image[row.image_key].append(Question(
                qid=f"{row.image_key}#{n}", image_path=row.image_path, prompt=make_prompt(row.question),
                target=row.answer, meta={"category": row.category, "image": row.image_key},
            ))
        warn_skipped("MME", source.source, source.skipped, source.total, "questions")
        if not by_image:
            raise ValueError(f"MME: {source.source} holds no valid questions; run the download rule for MME again.")
        questions = [q for key in _subset_images(by_image, limit, seed) for q in by_image[key]]
        require_images(questions, "MME")
        return questions

    def score(self, question: Question, prediction: str) -> dict[str, Any]:
        parsed = parse_yes_no(prediction)
        return {"correct": parsed == question.target, "parsed": parsed, "category": question.meta["category"],
                "image": question.meta["image"]}

    def aggregate(self, records: list[dict[str, Any]]) -> dict[str, float]:
        if not records:
            raise ValueError("MME: there are no records to aggregate.")
        images: dict[tuple[str, str], list[bool]] = defaultdict(list)
        for rec in records:
            images[rec["category"], rec["image"]].append(bool(rec["correct"]))
        tasks = [t for t in SUBTASKS if any(c == t for c, _ in images)]
        tasks += sorted({c for c, _ in images} - set(SUBTASKS))
        # Per image: [correct questions, questions, all right, 1] in its subtask's block of columns.
        comps = np.zeros((len(images), 4 * len(tasks)))
        strata = []
        for row, ((task, _), marks) in enumerate(images.items()):
            j = 4 * tasks.index(task)
            comps[row, j:j + 4] = (sum(marks), len(marks), all(marks), 1)
            strata.append(task)

        def scores(sums: np.ndarray) -> np.ndarray:  # (resamples, tasks) subtask scores
            blocks = sums.reshape(len(sums), len(tasks), 4)
            return 100 * ratio(blocks[..., 0], blocks[..., 1]) + 100 * ratio(blocks[..., 2], blocks[..., 3])

        out: dict[str, float] = {}
        sums = comps.sum(axis=0, keepdims=True)
        blocks = sums.reshape(len(tasks), 4)
        for t, task in enumerate(tasks):
            acc, acc_plus = 100 * blocks[t, 0] / blocks[t, 1], 100 * blocks[t, 2] / blocks[t, 3]
            out.update({f"{task}/acc": acc, f"{task}/acc_plus": acc_plus, f"{task}/score": acc + acc_plus})
        for group, members in (("perception", PERCEPTION), ("cognition", COGNITION)):
            cols = [t for t, task in enumerate(tasks) if task in members]
            out[group] = float(scores(sums)[0, cols].sum())
            interval = bootstrap_interval(comps, lambda s, cols=cols: scores(s)[:, cols].sum(axis=1), strata=strata)
            out.update(interval_keys(group, interval))
        out["total"] = out["perception"] + out["cognition"]
        return out
