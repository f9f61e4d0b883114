"""Toy MME, MM-Vet, VQAv2, MMVP and ScienceQA-IMG, written in the real distributions' file formats.

Under ``<root>/benchmarks/`` (``root`` is normally ``data/raw``)::

    mme/data/test-00000-of-00001.parquet           lmms-lab/MME: question_id, image, question, answer, category
    mmvet/mm-vet.json, mmvet/images/v1_<i>.png     the MM-Vet release
    vqav2/v2_OpenEnded_mscoco_val2014_questions.json, v2_mscoco_val2014_annotations.json (10 answers each),
    vqav2/val2014/COCO_val2014_<image_id:012d>.jpg
    mmvp/Questions.csv, mmvp/MMVP Images/<Index>.jpg   pairs of images that differ in one attribute
    scienceqa_img/problems.json, pid_splits.json, test/<pid>/image.png   (text-only problems too)

Scenes come from ``toy.scenes`` and never repeat a scene in ``seen`` (the training scenes), so
benchmark images stay out of training. Every answer is correct by construction.
"""

from __future__ import annotations

import csv
import io
import json
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from . import scenes as sc
from .scenes import CELL_NAMES, CELL_PHRASES, COLORS, NUMBERS, SHAPES, SIDES, WORDS, Scene

YES_NO = " Please answer yes or no."


@dataclass
class ExtraBenchmarkSpec:
    image_size: int = 96
    jpeg_quality: int = 90
    mme_images_per_subtask: int = 8  # x 14 subtasks x 2 questions
    mmvet_questions: int = 100
    vqav2_questions: int = 300
    vqav2_questions_per_image: int = 3
    mmvp_pairs: int = 75
    scienceqa_image_questions: int = 200
    scienceqa_text_questions: int = 60  # text-only problems (train, val and test): not part of -IMG


def _image(scene: Scene, spec: ExtraBenchmarkSpec, fmt: str) -> bytes:
    buf = io.BytesIO()
    img = sc.render(scene, spec.image_size)
    img.save(buf, fmt, **({"quality": spec.jpeg_quality} if fmt == "JPEG" else {}))
    return buf.getvalue()


def _write(path: Path, data: bytes | str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)


def _fresh(rng: random.Random, seen: set[Any], make: Callable[[], Scene | None]) -> Scene:
    while (scene := make()) is None or scene.signature() in seen:
        pass
    seen.add(scene.signature())
    return scene


def _other(rng: random.Random, pool: Any, value: Any) -> Any:
    return rng.choice([x for x in pool if x != value])


def _unique_shape(scene: Scene, rng: random.Random) -> sc.Obj | None:
    cands = sc.unique_by(scene, "shape")
    return rng.choice(cands) if cands else None


# ------------------------------------------------------------------------------------------ MME

MmeItem = tuple[Scene, str, str] | None  # scene, the "Yes" question, the "No" question


def _mme_item(task: str, rng: random.Random) -> MmeItem:
    text = task in ("posters", "OCR", "text_translation", "code_reasoning")
    scene = sc.random_scene(rng, n_objects=rng.choice((1, 3)) if task == "scene" else None, text=text)
    n, shapes, word = len(scene.objects), sorted(scene.shapes), scene.text or ""
    o = _unique_shape(scene, rng)
    if task == "existence":
        absent = rng.choice([s for s in SHAPES if s not in shapes])
        return scene, f"Is there a {rng.choice(shapes)} in this image?", f"Is there a {absent} in this image?"
    if task in ("count", "numerical_calculation"):
        wrong = _other(rng, range(1, 4), n)
        if task == "count":
            q = "Is the number of objects in this image {}?"
            return scene, q.format(NUMBERS[n]), q.format(NUMBERS[wrong])
        q = "Is the number of objects in this image plus two equal to {}?"
        return scene, q.format(NUMBERS[n + 2]), q.format(NUMBERS[wrong + 2])
    if task == "position" and o:
        return scene, f"Is the {o.shape} {CELL_PHRASES[o.cell]} of the image?", \
            f"Is the {o.shape} {_other(rng, CELL_PHRASES, CELL_PHRASES[o.cell])} of the image?"
    if task == "color" and o:
        return scene, f"Is the {o.shape} {o.color}?", f"Is the {o.shape} {_other(rng, COLORS, o.color)}?"
    if task in ("celebrity", "landmark", "commonsense_reasoning"):
        first = scene.objects[0]
        shape = rng.choice(tuple(SIDES)) if task == "commonsense_reasoning" else first.shape
        scene = replace(scene, objects=[replace(first, shape=shape, size="large")], text=None, text_cell=None)
        if task == "commonsense_reasoning":
            q, k = "Does the shape in this image have {} sides?", SIDES[shape]
            return scene, q.format(NUMBERS[k]), q.format(NUMBERS[_other(rng, (3, 4, 5, 6), k)])
        q = "Is this the famous {} {}?" if task == "celebrity" else "Is this a photo of the great {1} monument?"
        return scene, q.format(first.color, shape), q.format(first.color, _other(rng, SHAPES, shape))
    if task == "scene":
        kind, other = ("crowded", "sparse") if n == 3 else ("sparse", "crowded")
        return scene, f"Is this a {kind} scene?", f"Is this a {other} scene?"
    if task == "artwork":
        color = rng.choice(tuple(COLORS))
        scene = replace(scene, objects=[replace(x, color=color) for x in scene.objects])
        q = "Is this artwork painted mainly in {}?"
        return scene, q.format(color), q.format(_other(rng, COLORS, color))
    if task in ("posters", "OCR"):
        q = 'Is the title of this poster "{}"?' if task == "posters" else 'Is the word "{}" written in this image?'
        return scene, q.format(word), q.format(_other(rng, WORDS, word))
    if task == "text_translation":
        q = 'Written backwards, is the word in this image "{}"?'
        return scene, q.format(word[::-1]), q.format(_other(rng, WORDS, word)[::-1])
    if task == "code_reasoning":
        q = "The image shows a word w. Does print(len(w)) output {}?"
        return scene, q.format(len(word)), q.format(len(word) + rng.choice((-1, 1)))
    return None


def _mme(out: Path, spec: ExtraBenchmarkSpec, rng: random.Random, seen: set[Any]) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from llava_gemma.eval.benchmarks.mme import SUBTASKS

    rows: list[dict[str, Any]] = []
    for task in SUBTASKS:
        for i in range(spec.mme_images_per_subtask):
            item: MmeItem = None
            while item is None or item[0].signature() in seen:
                item = _mme_item(task, rng)
            scene, yes_q, no_q = item
            seen.add(scene.signature())
            name = f"{i:04d}.png"
            image = {"bytes": _image(scene, spec, "PNG"), "path": name}
            for q, a in ((yes_q, "Yes"), (no_q, "No")):  # the released order: the "Yes" question first
                rows.append({"question_id": f"{task}/{name}", "image": image, "question": q + YES_NO, "answer": a,
                             "category": task})
    features = {k: {"dtype": "string", "_type": "Value"} for k in ("question_id", "question", "answer", "category")}
    features["image"] = {"_type": "Image"}
    table = pa.Table.from_pylist(rows).replace_schema_metadata(
        {"huggingface": json.dumps({"info": {"features": features}})})
    (out / "data").mkdir(parents=True, exist_ok=True)
    pq.write_table(table, out / "data" / "test-00000-of-00001.parquet")
    return len(rows)


# ---------------------------------------------------------------------------------------- MM-Vet


def _mmvet_item(scene: Scene, rng: random.Random) -> tuple[str, str, list[str]] | None:
    o, n, kind = _unique_shape(scene, rng), len(scene.objects), rng.randrange(9)
    if kind == 0 and len(scene.shapes) == n:
        return "What shapes can be seen in the image?", "<AND>".join(sorted(scene.shapes)), ["rec"]
    if kind == 1 and scene.text:
        return "What word is written in the image?", scene.text, ["ocr"]
    if kind == 2:
        q = "How many objects would there be if one more were added?"
        return q, f"{n + 1}<OR>{NUMBERS[n + 1]}", ["rec", "math"]
    if kind == 3 and o:
        return f"Where is the {o.shape} in the image?", CELL_NAMES[o.cell], ["rec", "spat"]
    if kind == 4 and o and o.shape in SIDES:
        k = SIDES[o.shape]
        return f"How many sides does the {o.shape} in the image have?", f"{k}<OR>{NUMBERS[k]}", ["rec", "know"]
    if kind == 5:
        return "Describe the image in detail.", sc.describe(scene), ["rec", "gen"]
    if kind == 6 and scene.text and scene.text_cell is not None:
        return "Where is the word written in the image?", CELL_NAMES[scene.text_cell], ["ocr", "spat"]
    if kind == 7 and o:
        return f"What color is the {o.shape}?", o.color, ["rec"]
    if kind == 8 and scene.text:
        k = len(scene.text)
        return "How many letters does the written word have?", f"{k}<OR>{NUMBERS[k]}", ["ocr", "math"]
    return None


def _mmvet(out: Path, spec: ExtraBenchmarkSpec, rng: random.Random, seen: set[Any]) -> int:
    data: dict[str, dict[str, Any]] = {}
    while len(data) < spec.mmvet_questions:
        scene = _fresh(rng, seen, lambda: sc.random_scene(rng, text=rng.random() < 0.4))
        item = None
        while item is None:
            item = _mmvet_item(scene, rng)
        question, answer, caps = item
        qid = f"v1_{len(data)}"
        _write(out / "images" / f"{qid}.png", _image(scene, spec, "PNG"))
        data[qid] = {"imagename": f"{qid}.png", "capability": caps, "question": question, "answer": answer}
    _write(out / "mm-vet.json", json.dumps(data, indent=2))
    return len(data)


# ----------------------------------------------------------------------------------------- VQAv2

_VQA_TYPES = {"existence": ("is there a", "yes/no"), "color": ("what color is the", "other"),
              "count": ("how many", "number"), "position": ("where is the", "other"),
              "shape": ("what shape is the", "other"), "size": ("is the", "other"), "text": ("what", "other")}


def _vqa_answers(qa: sc.QA, rng: random.Random) -> list[str]:
    gold = str(NUMBERS.index(qa.answer.lower())) if qa.kind == "count" else qa.answer.lower()
    pools = {"existence": ("yes", "no"), "color": tuple(COLORS), "count": ("1", "2", "3", "4"),
             "position": CELL_NAMES, "shape": SHAPES, "size": sc.SIZES}
    out = []
    for _ in range(10):  # ten annotators: most agree, some err, a few write a raw variant
        r = rng.random()
        if r < 0.12 and qa.kind in pools:
            out.append(_other(rng, pools[qa.kind], gold))
        elif r < 0.17:
            out.append(NUMBERS[int(gold)] if qa.kind == "count" else f"the {gold}")
        else:
            out.append(gold)
    return out


def _vqav2(out: Path, spec: ExtraBenchmarkSpec, rng: random.Random, seen: set[Any]) -> tuple[int, int]:
    questions: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    used: set[int] = set()
    while len(questions) < spec.vqav2_questions:
        scene = _fresh(rng, seen, lambda: sc.random_scene(rng))
        while (image_id := rng.randrange(1, 581_930)) in used:
            pass
        used.add(image_id)
        _write(out / "val2014" / f"COCO_val2014_{image_id:012d}.jpg", _image(scene, spec, "JPEG"))
        for j, qa in enumerate(sc.questions(scene, rng)[: spec.vqav2_questions_per_image]):
            answers = _vqa_answers(qa, rng)
            qid = image_id * 1000 + j
            questions.append({"image_id": image_id, "question": qa.question, "question_id": qid})
            qtype, atype = _VQA_TYPES[qa.kind]
            annotations.append({
                "question_type": qtype, "multiple_choice_answer": Counter(answers).most_common(1)[0][0],
                "answers": [{"answer": a, "answer_confidence": "yes", "answer_id": k + 1}
                            for k, a in enumerate(answers)],
                "image_id": image_id, "answer_type": atype, "question_id": qid,
            })
            if len(questions) == spec.vqav2_questions:
                break
    head = {"info": {"description": "toy VQAv2"}, "license": {"name": "toy"}, "data_subtype": "val2014"}
    _write(out / "v2_OpenEnded_mscoco_val2014_questions.json",
           json.dumps({**head, "task_type": "Open-Ended", "data_type": "mscoco", "questions": questions}))
    _write(out / "v2_mscoco_val2014_annotations.json", json.dumps({**head, "annotations": annotations}))
    return len(questions), len(used)


# ------------------------------------------------------------------------------------------ MMVP


def _mmvp_pair(base: Scene, rng: random.Random) -> tuple[Scene, Scene, str, list[str]] | None:
    """Two scenes differing in one attribute, the question and its two options (scene 1 answers the first)."""
    o = _unique_shape(base, rng)
    kind = rng.choice(("color", "size", "position", "shape", "text"))
    if kind == "text" and base.text:
        other = _other(rng, WORDS, base.text)
        return base, replace(base, text=other), "Which word is written in the image?", [base.text, other]
    if o is None:
        return None
    objs = base.objects
    if kind in ("color", "size"):
        value = getattr(o, kind)
        new = _other(rng, COLORS if kind == "color" else sc.SIZES, value)
        q = f"What color is the {o.shape}?" if kind == "color" else f"Is the {o.shape} large or small?"
        changed = replace(base, objects=[replace(x, **{kind: new}) if x is o else x for x in objs])
        return base, changed, q, [value.capitalize(), new.capitalize()]
    if kind == "position" and o.cell % 3 != 1:
        cell = o.cell + (2 if o.cell % 3 == 0 else -2)  # the mirror cell in the same row
        if any(x.cell == cell for x in objs) or base.text_cell == cell:
            return None
        side = "left" if o.cell % 3 == 0 else "right"
        changed = replace(base, objects=[replace(x, cell=cell) if x is o else x for x in objs])
        q = f"Is the {o.shape} on the left or on the right side of the image?"
        return base, changed, q, [side.capitalize(), ("right" if side == "left" else "left").capitalize()]
    if kind == "shape" and sum(x.color == o.color for x in objs) == 1:
        new = rng.choice([s for s in SHAPES if s not in base.shapes])
        changed = replace(base, objects=[replace(x, shape=new) if x is o else x for x in objs])
        q = f"Is the {o.color} object a {o.shape} or a {new}?"
        return base, changed, q, [o.shape.capitalize(), new.capitalize()]
    return None


def draw_mmvp_pair(rng: random.Random) -> tuple[Scene, Scene, str, list[str]]:
    """A fresh pair made as MMVP's are (its two scenes, the question, the two values; scene 1 answers
    the first), for diagnostics that ask MMVP's questions about other scenes than the benchmark's."""
    while True:
        base = sc.random_scene(rng, n_objects=rng.randint(2, 3), distinct_shapes=True)
        if (pair := _mmvp_pair(base, rng)) is not None:
            return pair


def _mmvp(out: Path, spec: ExtraBenchmarkSpec, rng: random.Random, seen: set[Any]) -> int:
    rows: list[list[str]] = []
    while len(rows) < 2 * spec.mmvp_pairs:
        base = _fresh(rng, seen, lambda: sc.random_scene(rng, n_objects=rng.randint(2, 3), distinct_shapes=True))
        pair = _mmvp_pair(base, rng)
        if pair is None or pair[1].signature() in seen:
            continue
        first, second, question, values = pair
        seen.add(second.signature())
        flip = rng.random() < 0.5  # which option comes first
        options = values[::-1] if flip else values
        opts = f"(a) {options[0]} (b) {options[1]}"
        order = [(first, values[0]), (second, values[1])]
        if rng.random() < 0.5:
            order.reverse()
        for scene, value in order:
            index = len(rows) + 1
            _write(out / "MMVP Images" / f"{index}.jpg", _image(scene, spec, "JPEG"))
            rows.append([str(index), question, opts, "(a)" if options[0] == value else "(b)"])
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows([["Index", "Question", "Options", "Correct Answer"], *rows])
    _write(out / "Questions.csv", buf.getvalue())
    return len(rows)


# ------------------------------------------------------------------------------------- ScienceQA


def _sqa_item(scene: Scene, rng: random.Random) -> tuple[str, str, list[str], str, str] | None:
    """(question, hint, choices with the answer first, subject, topic) about an image."""
    o, kind = scene.objects[0], rng.randrange(5)
    nature = "natural science"
    if kind == 0:
        choices = [o.shape, *rng.sample([s for s in SHAPES if s != o.shape], 2)]
        return "Which shape is shown in the picture?", "", choices, nature, "geometry"
    if kind == 1:
        choices = [o.color, *rng.sample([c for c in COLORS if c != o.color], 3)]
        return f"What color is the {o.shape}?", "Look at the picture.", choices, nature, "colors"
    if kind == 2 and o.shape in SIDES:
        k = SIDES[o.shape]
        choices = [NUMBERS[j] for j in (k, *rng.sample([j for j in (3, 4, 5, 6) if j != k], 2))]
        hint = "A side is a straight edge of a shape."
        return "How many sides does the shape in the picture have?", hint, choices, nature, "geometry"
    if kind == 3 and scene.text:
        choices = [scene.text, _other(rng, WORDS, scene.text)]
        return "Which word is written in the picture?", "", choices, "language science", "reading"
    if kind == 4:
        hint = "Compare the shape with its grid cell."
        return f"Is the {o.shape} large or small?", hint, [o.size, _other(rng, sc.SIZES, o.size)], nature, "size"
    return None


def draw_scienceqa_item(rng: random.Random) -> tuple[Scene, str, str, list[str]]:
    """A fresh ScienceQA-IMG item made as the benchmark's are (scene, question, hint, choices with the
    answer first), for diagnostics, like ``draw_mmvp_pair``."""
    scene = sc.random_scene(rng, n_objects=1, text=rng.random() < 0.3)
    while (item := _sqa_item(scene, rng)) is None:
        pass
    question, hint, choices, _, _ = item
    return scene, question, hint, choices


def _scienceqa(out: Path, spec: ExtraBenchmarkSpec, rng: random.Random, seen: set[Any]) -> int:
    problems: dict[str, dict[str, Any]] = {}
    splits: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    total = spec.scienceqa_image_questions + spec.scienceqa_text_questions
    pids = [str(p) for p in rng.sample(range(1, 10 * total + 1), total)]
    for i, pid in enumerate(pids):
        base = {"task": "closed choice", "grade": f"grade{rng.randint(1, 8)}", "category": "toy", "skill": "toy",
                "lecture": "", "solution": ""}
        if i < spec.scienceqa_image_questions:
            scene = _fresh(rng, seen, lambda: sc.random_scene(rng, n_objects=1, text=rng.random() < 0.3))
            item = None
            while item is None:
                item = _sqa_item(scene, rng)
            question, hint, choices, subject, topic = item
            _write(out / "test" / pid / "image.png", _image(scene, spec, "PNG"))
            split, image = "test", "image.png"
        else:
            question, answer = rng.choice(sc.FACTS)
            choices = [answer, *rng.sample([a for _, a in sc.FACTS if a != answer], 2)]
            hint, subject, topic = "", "natural science", "facts"
            split, image = rng.choice(("train", "val", "test")), None
        gold = choices[0]
        rng.shuffle(choices)
        problems[pid] = {**base, "question": question, "choices": choices, "answer": choices.index(gold),
                         "hint": hint, "image": image, "subject": subject, "topic": topic, "split": split}
        splits[split].append(pid)
    full = {**splits, "trainval": splits["train"] + splits["val"], "minival": splits["val"],
            "minitest": splits["test"]}
    _write(out / "problems.json", json.dumps(problems, indent=1))
    _write(out / "pid_splits.json", json.dumps(full))
    return spec.scienceqa_image_questions


def generate_extra_benchmarks(root: Path | str, rng: random.Random, spec: ExtraBenchmarkSpec | None = None,
                              seen: set[Any] | None = None) -> dict[str, int]:
    """Write the five toy benchmarks under ``<root>/benchmarks`` and return what was written.

    ``seen`` holds the signatures of scenes already used (the training scenes, POPE, GQA); it is
    extended with every scene written here, so no two benchmark images repeat a scene.
    """
    spec = spec or ExtraBenchmarkSpec()
    seen = set() if seen is None else seen
    out = Path(root) / "benchmarks"
    n_mme = _mme(out / "mme", spec, rng, seen)
    n_mmvet = _mmvet(out / "mmvet", spec, rng, seen)
    n_vqa, n_vqa_images = _vqav2(out / "vqav2", spec, rng, seen)
    n_mmvp = _mmvp(out / "mmvp", spec, rng, seen)
    n_sqa = _scienceqa(out / "scienceqa_img", spec, rng, seen)
    return {"mme_questions": n_mme, "mmvet_questions": n_mmvet, "vqav2_questions": n_vqa,
            "vqav2_images": n_vqa_images, "mmvp_questions": n_mmvp, "scienceqa_img_questions": n_sqa}
