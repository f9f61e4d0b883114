"""VQAv2 open-ended visual question answering, scored locally on val2014.

Source
    The official VQAv2 release files, read from a local root::

        <root>/v2_OpenEnded_mscoco_val2014_questions.json  # {"questions": [{"image_id", "question",
                                                           #   "question_id"}], "data_subtype", ...}
        <root>/v2_mscoco_val2014_annotations.json          # {"annotations": [{"question_id",
                                                           #   "answers": 10 x {"answer", ...},
                                                           #   "answer_type", "question_type", ...}]}
        <root>/val2014/COCO_val2014_<image_id:012d>.jpg
        (or, if absent, <root>/../pope/val2014/: the COCO val2014 images POPE already uses, so one
        download serves both)

    The study reports test-dev, which only EvalAI can score; val2014 has public answers, so the
    same scorer runs locally. ``limit`` takes a seeded subset of questions.

Splits (option ``split``)
    ``val2014`` (default): every val2014 question (214,354). But 35,504 of val2014's 40,504 images
    are in COCO train2017, which the 665k mix trains on (``coco/train2017``), so most of it was seen.
    ``val2017``: only the questions on val2014 images that are not in train2017, i.e. COCO val2017's
    5,000 images (val2017 = val2014 minus train2017), which no stage trains on. The split is found
    without another download: the train2017 folder the mix unpacks
    (``<root>/../../llava_instruct/images/coco/train2017``, files named ``<image_id:012d>.jpg``) is
    listed and its ids left out. ``metrics.json`` names the split.

Prompt
    ``question`` followed by ``SHORT_ANSWER_SUFFIX``, as LLaVA-1.5's ``llava_vqav2_mscoco_test-dev2015``
    questions and lmms-eval's ``vqav2_val``. Target: the 10 human answers.

Metric
    Matches LLaVA's ``scripts/convert_vqav2_for_submission.py`` followed by the official VQA
    accuracy (GT-Vision-Lab/VQA ``PythonEvaluationTools/vqaEvaluation/vqaEval.py``, which EvalAI
    runs for test-dev). The prediction (as LLaVA's generation loop leaves it, stripped) goes
    through ``EvalAIAnswerProcessor`` (``llava/eval/m4c_evaluator.py``): lower-case; drop ',' and
    '?'; "'s" becomes " 's"; newlines and tabs become spaces; punctuation (; / [ ] " { } ( ) = +
    \\ _ - > < @ ` , ? !) is deleted where it touches a space, else replaced by a space; a '.' not
    followed by a digit is deleted (at most 32 of them: both scripts pass ``re.UNICODE`` where
    ``re.sub`` takes its count); number words zero..ten (and "none") become digits; "a", "an",
    "the" are dropped; the official contractions table restores apostrophes ("dont" -> "don't").
    vqaEval.py then compares it with the 10 human answers: when they are not all the same
    string, the answers and the prediction go through its punctuation, digit and article
    processing again (a unanimous answer is taken as written); for each of the 10 leave-one-out
    subsets of 9 answers the accuracy is min(#matches / 3, 1), and the question's accuracy is
    their mean (one match 0.3, two 0.6, three or more 0.9 or 1). ``accuracy`` is 100 x the mean
    over questions (percent, as reported; vqaEval.py rounds it to 2 decimals, this is unrounded);
    ``<answer_type>/accuracy`` per answer type ("yes/no", "number", "other");
    ``accuracy_ci_*``: bootstrap 95% interval over images (each image's
    questions resampled together; each record names its ``image``). Generation cap: 128 new tokens,
    ``model_vqa_loader.py``'s default.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, ClassVar

from llava_gemma.eval.bootstrap import interval_keys, mean_interval

from .base import (
    SHORT_ANSWER_SUFFIX,
    Benchmark,
    Question,
    finish_loading,
    image_key,
    mean_by_group,
    require_path,
)

QUESTIONS_FILE = "v2_OpenEnded_mscoco_val2014_questions.json"
ANNOTATIONS_FILE = "v2_mscoco_val2014_annotations.json"

_NUMBERS = {"none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
            "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10"}
_ARTICLES = {"a", "an", "the"}
_PUNCT = (";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",", "?", "!")
_COMMA_STRIP = re.compile(r"(\d)(,)(\d)")
_PERIOD_STRIP = re.compile(r"(?!<=\d)(\.)(?!\d)")  # as written in the official code: any '.' not before a digit
# The official contraction table maps every spelling that misses one apostrophe back to the full form.
_CONTRACTED = (
    "ain't aren't can't could've couldn't couldn't've didn't doesn't don't hadn't hadn't've hasn't haven't "
    "he'd he'd've he's how'd how'll how's I'd've I'm I've isn't it'd it'd've it'll ma'am mightn't mightn't've "
    "might've mustn't must've needn't not've o'clock oughtn't 'ow's'at shan't she'd've should've shouldn't "
    "shouldn't've somebody'd've somebody'll somebody's someone'd someone'd've someone'll someone's "
    "something'd something'd've something'll that's there'd there'd've there're there's they'd they'd've "
    "they'll they're they've 'twas wasn't we'd've we've weren't what'll what're what's what've when's "
    "where'd where's where've who'd who'd've who'll who's who've why'll why're why's won't would've "
    "wouldn't wouldn't've y'all y'all'll y'all'd've you'd you'd've you'll you're you've"
).split()
CONTRACTIONS: dict[str, str] = {
    form[:i] + form[i + 1:]: form for form in _CONTRACTED for i, ch in enumerate(form) if ch == "'"
}
CONTRACTIONS["somebody'd"] = "somebodyd"  # sic, in the official table


def process_punctuation(text: str) -> str:
    out = text
    for p in _PUNCT:
        if (p + " " in text or " " + p in text) or _COMMA_STRIP.search(text) is not None:
            out = out.replace(p, "")
        else:
            out = out.replace(p, " ")
    # Both reference scripts call PERIOD_STRIP.sub("", text, re.UNICODE): the flag lands in the
    # count argument (re.UNICODE == 32), so only the first 32 such periods are deleted.
    return _PERIOD_STRIP.sub("", out, count=32)


def process_digit_article(text: str) -> str:
    words = [_NUMBERS.get(w, w) for w in text.lower().split()]
    return " ".join(CONTRACTIONS.get(w, w) for w in words if w not in _ARTICLES)


def normalize_answer(answer: str) -> str:
    """EvalAIAnswerProcessor, as LLaVA applies it to every prediction before submission."""
    text = answer.lower().replace(",", "").replace("?", "").replace("'s", " 's").strip()
    text = text.replace("\n", " ").replace("\t", " ").strip()
    return process_digit_article(process_punctuation(text))


def vqa_accuracy(prediction: str, answers: list[str]) -> float:
    """Official VQA accuracy: mean over the 10 leave-one-out subsets of min(#matches / 3, 1).

    An empty prediction (a failed question) scores 0: the normalisation turns an answer such as
    "a" into "" too, and a question never asked must not match it."""
    if not prediction.strip():
        return 0.0
    pred = normalize_answer(prediction)
    gts = [a.replace("\n", " ").replace("\t", " ").strip() for a in answers]
    if len(set(gts)) > 1:
        gts = [process_digit_article(process_punctuation(a)) for a in gts]
        pred = process_digit_article(process_punctuation(pred))
    matches = sum(a == pred for a in gts)
    # Leaving out a matching answer leaves matches - 1 matches, leaving out another leaves all of them.
    accs = [min(1.0, (matches - (a == pred)) / 3) for a in gts]
    return sum(accs) / len(accs)


def _load_json(path: Path, key: str) -> list[Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"VQAv2: {path} is not valid JSON ({err.msg}); run the download rule again.") from err
    if not isinstance(data, dict) or not isinstance(data.get(key), list):
        raise ValueError(f"VQAv2: {path} must hold a JSON object with a {key!r} list.")
    return data[key]


SPLITS = ("val2014", "val2017")
TRAIN2017 = Path("llava_instruct") / "images" / "coco" / "train2017"  # below data/raw, as the mix unpacks it


def train2017_ids(folder: Path) -> set[int]:
    """COCO image ids of the train2017 folder (``000000391895.jpg`` -> 391895)."""
    return {int(p.stem) for p in folder.iterdir() if p.suffix.lower() == ".jpg" and p.stem.isdigit()}


class VQAv2Benchmark(Benchmark):
    name: ClassVar[str] = "vqav2"
    max_new_tokens: ClassVar[int] = 128  # LLaVA's model_vqa_loader.py default

    def __init__(self, split: str = "val2014") -> None:
        self.split = split

    def with_options(self, *, split: str = "val2014", **others: Any) -> VQAv2Benchmark:
        super().with_options(**others)
        if split not in SPLITS:
            from llava_gemma.errors import UserError

            raise UserError(f"eval.benchmarks.vqav2.split is {split!r}; use one of {', '.join(SPLITS)}.")
        return VQAv2Benchmark(split)

    def load(self, root: Path, limit: int | None = None, seed: int = 0) -> list[Question]:
        root = Path(root)
        qpath = require_path(root / QUESTIONS_FILE, "VQAv2")
        apath = require_path(root / ANNOTATIONS_FILE, "VQAv2")
        seen = set()
        if self.split == "val2017":  # leave out every image the instruction mix trains on
            seen = train2017_ids(require_path(root.parent.parent / TRAIN2017, "VQAv2 split val2017 (COCO train2017, "
                                              "to leave out its images)", is_dir=True))
        shared = root.parent / "pope" / "val2014"
        image_dir = shared if shared.is_dir() and not (root / "val2014").is_dir() else require_path(
            root / "val2014", "VQAv2", is_dir=True)
        annotations: dict[str, dict[str, Any]] = {}
        for ann in _load_json(apath, "annotations"):
            if isinstance(ann, dict) and isinstance(ann.get("answers"), list):
                answers = [a.get("answer") for a in ann["answers"] if isinstance(a, dict)]
                if answers and all(isinstance(a, str) for a in answers):
                    annotations[str(ann.get("question_id"))] = {**ann, "answers": answers}
        raw = _load_json(qpath, "questions")
        questions: list[Question] = []
        skipped = 0
        for q in raw:
            ok = isinstance(q, dict) and isinstance(q.get("question"), str) and isinstance(q.get("image_id"), int)
            if ok and q["image_id"] in seen:
                continue  # not a question of this split
            ann = annotations.get(str(q.get("question_id"))) if ok else None
            if ann is None:
                skipped += 1
                continue
            questions.append(Question(
                qid=str(q["question_id"]),
                image_path=image_dir / f"COCO_val2014_{q['image_id']:012d}.jpg",
                prompt=q["question"] + SHORT_ANSWER_SUFFIX,
                target=ann["answers"],
                meta={"answer_type": ann.get("answer_type", "other"), "question_type": ann.get("question_type"),
                      "image_id": str(q["image_id"])},
            ))
        return finish_loading(questions, benchmark="VQAv2", source=qpath, skipped=skipped,
                              total=len(questions) + skipped,
                              what="questions (malformed or without annotation)",
                              nothing="questions with annotations", limit=limit, seed=seed)

    def score(self, question: Question, prediction: str) -> dict[str, Any]:
        return {"score": vqa_accuracy(prediction, list(question.target)), "parsed": normalize_answer(prediction),
                "answer_type": question.meta["answer_type"], "image": image_key(question)}

    def aggregate(self, records: list[dict[str, Any]]) -> dict[str, float]:
        if not records:
            raise ValueError("VQAv2: there are no records to aggregate.")
        out = mean_by_group(records, "score", "answer_type", scale=100)
        out.update(interval_keys("accuracy", mean_interval([float(r["score"]) for r in records], scale=100.0,
                                                        clusters=[r.get("image", i) for i, r in enumerate(records)])))
        return {**out, "split": self.split}
