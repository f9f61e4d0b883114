"""The toy world writes the real upstream formats, deterministically, with labels true to its scenes.

The generator's JPEG encoder is wrapped so every image byte string maps back to the scene it was
rendered from; the tests then check captions, answers and benchmark labels against those scenes
with an oracle written independently of the generator's templates.
"""

from __future__ import annotations

import io
import json
import os
import random
import re
import subprocess
import sys
import zipfile
from collections import Counter
from dataclasses import replace
from itertools import combinations
from pathlib import Path
from typing import Any

import pytest
from llava_gemma.toy import scenes as sc
from llava_gemma.toy import world
from llava_gemma.toy.world import ToyWorldSpec, generate_toy_world
from PIL import Image

# attribute_questions and choice_questions on: the mix's attribute yes/no turns and extra lettered
# turns (issue 27) are checked by _oracle too.
SPEC = ToyWorldSpec(seed=7, n_pretrain=40, n_instruct=40, n_pope_images=5, n_gqa_questions=20,
                    attribute_questions=True, choice_questions=True)
SUFFIX = "\nAnswer the question using a single word or phrase."
LETTER = "\nAnswer with the option's letter from the given choices directly."
IMAGE_PATTERNS = [
    r"coco/train2017/\d{12}\.jpg", r"gqa/images/\d+\.jpg", r"ocr_vqa/images/\d+\.jpg",
    r"textvqa/train_images/[0-9a-f]{16}\.jpg", r"vg/VG_100K/\d+\.jpg", r"vg/VG_100K_2/\d+\.jpg",
]
GQA_KEYS = {
    "imageId", "question", "answer", "fullAnswer", "isBalanced", "types", "semantic", "annotations", "groups",
    "entailed", "equivalent",
}


@pytest.fixture(scope="module")
def toy(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("raw")
    by_bytes: dict[bytes, sc.Scene] = {}
    original = world._jpeg

    def recording_jpeg(scene: sc.Scene, spec: ToyWorldSpec) -> bytes:
        data = original(scene, spec)
        by_bytes[data] = scene
        return data

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(world, "_jpeg", recording_jpeg)
        counts = generate_toy_world(root, SPEC)
    return {"root": root, "counts": counts, "scene": by_bytes}


def _load(path: Path) -> Any:
    return json.loads(path.read_text())


def _jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _open(data: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    assert img.format == "JPEG"
    img = img.convert("RGB")
    assert img.size == (SPEC.image_size, SPEC.image_size)
    return img


def _only(scene: sc.Scene, **attrs: str) -> sc.Obj:
    found = [o for o in scene.objects if all(getattr(o, k) == v for k, v in attrs.items())]
    assert len(found) == 1, (attrs, scene)  # questions must name an unambiguous object
    return found[0]


def _oracle(question: str, scene: sc.Scene) -> str | None:
    """Lower-case answer of a templated question, computed from the scene; None if not templated."""
    q = question.replace(SUFFIX, "")
    shapes = scene.shapes
    yn = {True: "yes", False: "no"}
    if m := re.fullmatch(r"Is there a (\w+) in the image\?", q):
        return yn[m[1] in shapes]
    if m := re.fullmatch(r"Is there a (\w+) or a (\w+) in the image\?", q):
        return yn[m[1] in shapes or m[2] in shapes]
    if m := re.fullmatch(r"Are there both a (\w+) and a (\w+) in the image\?", q):
        return yn[m[1] in shapes and m[2] in shapes]
    if m := re.fullmatch(r"What colou?r is the (\w+)\?", q):
        return _only(scene, shape=m[1]).color
    if m := re.fullmatch(r"Is the (\w+) large or small\?", q):
        return _only(scene, shape=m[1]).size
    # Attribute yes/no questions (toy/formats.py): count, size, position, colour, shape and word.
    count = r"(?:Are there|Is the number of objects|Does the image show) (\w+)(?: objects)?(?: in the image)?\?"
    if m := re.fullmatch(count, q):
        return yn[sc.NUMBERS.index(m[1]) == len(scene.objects)]
    if m := re.fullmatch(r"Is the (\w+) (large|small)\?", q):
        return yn[_only(scene, shape=m[1]).size == m[2]]
    if (m := re.fullmatch(r"Is the (\w+) ((?:at|on|in) the [\w ]+)\?", q)) and m[2] in sc.CELL_PHRASES:
        return yn[sc.CELL_PHRASES[_only(scene, shape=m[1]).cell] == m[2]]
    if m := re.fullmatch(r"Is the color of the (\w+) (\w+)\?", q):
        return yn[_only(scene, shape=m[1]).color == m[2]]
    if m := re.fullmatch(r"Is the (\w+) object a (\w+)\?", q):
        return yn[_only(scene, color=m[1]).shape == m[2]]
    if m := re.fullmatch(r'(?:Is the word "(\w+)" written in the image|Does the image say "(\w+)")\?', q):
        return yn[scene.text == (m[1] or m[2])]
    if m := re.fullmatch(r"Is the (\w+) (\w+) or (\w+)\?", q):
        color = _only(scene, shape=m[1]).color
        return color if color in (m[2], m[3]) else None
    if m := re.fullmatch(r"Is the (\w+) (\w+)\?", q):
        return yn[_only(scene, shape=m[1]).color == m[2]]
    if m := re.fullmatch(r"What shape is the (\w+) object\?", q):
        return _only(scene, color=m[1]).shape
    if m := re.fullmatch(r"Where is the (\w+) (\w+)\?", q):
        return sc.CELL_NAMES[_only(scene, color=m[1], shape=m[2]).cell]
    if m := re.fullmatch(r"On which side of the image is the (\w+)\?", q):
        return {0: "left", 2: "right"}[_only(scene, shape=m[1]).cell % 3]
    if m := re.fullmatch(r"Are the (\w+) and the (\w+) the same color\?", q):
        return yn[_only(scene, shape=m[1]).color == _only(scene, shape=m[2]).color]
    if q == "How many objects are there?":
        return sc.NUMBERS[len(scene.objects)]
    # The lettered questions of toy/formats.py (choice_questions).
    if m := re.fullmatch(r"Where is the (\w+)\?", q):
        return sc.CELL_NAMES[_only(scene, shape=m[1]).cell]
    if m := re.fullmatch(r"Is the (\w+) on the left or on the right\?", q):
        return {0: "left", 2: "right"}[_only(scene, shape=m[1]).cell % 3]
    if q == "Which shape is in the picture?":
        return _only(scene).shape
    if q == "Which of these shapes is in the image?":
        return "shown"  # any listed shape the scene holds; the caller checks membership
    if q == "What word is written in the image?":
        return (scene.text or "").lower()
    return None


def test_determinism_and_seed(toy: dict[str, Any], tmp_path: Path) -> None:
    # A second run in a fresh interpreter with another hash seed: set iteration order must not leak.
    code = "import sys; from llava_gemma.toy.world import *; generate_toy_world(sys.argv[1], ToyWorldSpec(**%r))"
    env = {**os.environ, "PYTHONHASHSEED": "12345", "PYTHONPATH": os.pathsep.join(sys.path)}
    cmd = [sys.executable, "-c", code % SPEC.__dict__, str(tmp_path / "again")]
    subprocess.run(cmd, env=env, check=True)
    files = sorted(p.relative_to(toy["root"]) for p in toy["root"].rglob("*") if p.is_file())
    c = toy["counts"]
    # + 8 data files of the pretraining/instruct/POPE/GQA sets; the extra benchmarks add theirs
    assert len(files) > c["instruct_images"] + c["pope_images"] + c["gqa_images"] + 8
    for rel in files:  # JSON, JSONL, corpus, zip and every JPEG
        assert (tmp_path / "again" / rel).read_bytes() == (toy["root"] / rel).read_bytes(), rel
    other = ToyWorldSpec(**{**SPEC.__dict__, "seed": 8})
    generate_toy_world(tmp_path / "other", other)
    chat = "llava_pretrain/chat.json"
    assert (tmp_path / "other" / chat).read_bytes() != (toy["root"] / chat).read_bytes()


def test_pretrain_format_and_zip(toy: dict[str, Any]) -> None:
    out = toy["root"] / "llava_pretrain"
    records = _load(out / "chat.json")
    assert isinstance(records, list) and len(records) == SPEC.n_pretrain == toy["counts"]["pretrain"]
    with zipfile.ZipFile(out / "images.zip") as zf:
        assert sorted(zf.namelist()) == sorted(r["image"] for r in records)
        assert all("/" not in name for name in zf.namelist())  # flat archive
        for r in records:
            assert set(r) == {"id", "image", "conversations"}
            assert re.fullmatch(r"GCC_train_\d{9}", r["id"]) and r["image"] == r["id"] + ".jpg"
            human, gpt = r["conversations"]
            assert (human["from"], gpt["from"]) == ("human", "gpt")
            assert human["value"].count("<image>") == 1
            assert human["value"].startswith("<image>\n") or human["value"].endswith("\n<image>")
            data = zf.read(r["image"])
            _open(data)
            assert gpt["value"] == sc.caption(toy["scene"][data])
    starts = sum(r["conversations"][0]["value"].startswith("<image>") for r in records)
    assert 0 < starts < len(records)  # both placements of the image token occur, as in the real data
    assert len({r["id"] for r in records}) == len(records)


def test_instruct_mix_format_and_answers(toy: dict[str, Any]) -> None:
    base = toy["root"] / "llava_instruct"
    records = _load(base / "llava_v1_5_mix665k.json")
    # n_instruct conversations are drawn; a VQA-style image's questions are one record each
    assert len(records) == toy["counts"]["instruct"] > SPEC.n_instruct
    images = [r for r in records if "image" in r]
    assert len({r["image"] for r in images}) == SPEC.n_instruct - round(SPEC.n_instruct * SPEC.text_only_fraction)
    single = [r for r in images if len(r["conversations"]) == 2]
    assert single and all("<image>\n" in r["conversations"][0]["value"] for r in single)
    assert all(isinstance(r["id"], str) for r in records) and len({r["id"] for r in records}) == len(records)
    text_only = [r for r in records if "image" not in r]
    assert len(text_only) == round(SPEC.n_instruct * SPEC.text_only_fraction) == toy["counts"]["instruct_text_only"]
    short = long = 0
    for r in records:
        conv = r["conversations"]
        assert [t["from"] for t in conv] == ["human", "gpt"] * (len(conv) // 2) and len(conv) % 2 == 0
        if "image" not in r:
            assert set(r) == {"id", "conversations"}
            assert not any("<image>" in t["value"] for t in conv)
            continue
        # A VQA-style question alone, or a conversation of 2-4 turns (a description and 3 questions).
        assert set(r) == {"id", "image", "conversations"} and 1 <= len(conv) // 2 <= 4
        if len(conv) == 2:
            assert conv[0]["value"].endswith((SUFFIX, LETTER)) or "bounding box" in conv[0]["value"] or \
                "region" in conv[0]["value"]
        assert any(re.fullmatch(p, r["image"]) for p in IMAGE_PATTERNS), r["image"]
        assert conv[0]["value"].startswith("<image>\n")
        assert sum(t["value"].count("<image>") for t in conv) == 1
        data = (base / "images" / r["image"]).read_bytes()
        _open(data)
        scene = toy["scene"][data]
        for q, a in zip(conv[0::2], conv[1::2]):
            question, answer = q["value"].replace("<image>\n", ""), a["value"]
            if question.endswith(LETTER):  # multiple choice: the lettered option is the templated answer
                lines = question.removesuffix(LETTER).split("\n")
                if lines[0].startswith("Context: "):  # a fact first, as ScienceQA's hints
                    lines = lines[1:]
                first, *options = lines
                chosen = dict(o.split(". ", 1) for o in options)[answer].lower()
                wanted = _oracle(first, scene)
                if wanted == "shown":  # exactly one listed shape is in the scene: the answer
                    listed = [o.split(". ", 1)[1].lower() for o in options]
                    assert [x for x in listed if x in scene.shapes] == [chosen], (question, answer)
                else:
                    assert wanted == chosen, (question, answer)
            elif question.endswith(SUFFIX):
                short += 1
                assert len(answer.split()) <= 2 and answer[0].isupper()
                assert _oracle(question, scene) == answer.lower(), (question, answer)
            elif len(answer.split()) > 4:
                long += 1
    assert short > 0 and long > 0  # both short-answer VQA turns and free-form sentence answers


def _benchmark_scenes(toy: dict[str, Any], folder: Path) -> dict[str, sc.Scene]:
    return {p.name: toy["scene"][p.read_bytes()] for p in folder.iterdir()}


def _training_scenes(toy: dict[str, Any]) -> list[sc.Scene]:
    root = toy["root"]
    with zipfile.ZipFile(root / "llava_pretrain" / "images.zip") as zf:
        out = [toy["scene"][zf.read(n)] for n in zf.namelist()]
    return out + [toy["scene"][p.read_bytes()] for p in (root / "llava_instruct" / "images").rglob("*.jpg")]


def test_pope_balanced_and_true_to_scenes(toy: dict[str, Any]) -> None:
    base = toy["root"] / "benchmarks" / "pope"
    images = _benchmark_scenes(toy, base / "val2014")
    assert len(images) == SPEC.n_pope_images
    train = _training_scenes(toy)
    assert not {s.signature() for s in images.values()} & {s.signature() for s in train}  # new scenes
    freq = Counter(s for scene in train for s in scene.shapes)
    cooc = Counter(p for scene in train for p in combinations(sorted(scene.shapes), 2))
    per_split_yes: dict[str, dict[str, list[str]]] = {}
    for split in ("random", "popular", "adversarial"):
        rows = _jsonl(base / f"coco_pope_{split}.json")
        assert len(rows) == 2 * SPEC.pope_yes_per_image * SPEC.n_pope_images
        assert [r["question_id"] for r in rows] == list(range(1, len(rows) + 1))
        by_image: dict[str, dict[str, list[str]]] = {}
        for r in rows:
            assert set(r) == {"question_id", "image", "text", "label"}
            assert re.fullmatch(r"COCO_val2014_\d{12}\.jpg", r["image"])
            shape = re.fullmatch(r"Is there a (\w+) in the image\?", r["text"])[1]  # type: ignore[index]
            assert r["label"] == ("yes" if shape in images[r["image"]].shapes else "no")
            by_image.setdefault(r["image"], {"yes": [], "no": []})[r["label"]].append(shape)
        assert set(by_image) == set(images)
        for name, qs in by_image.items():
            assert len(qs["yes"]) == len(qs["no"]) == SPEC.pope_yes_per_image
            assert len(set(qs["no"])) == len(qs["no"])
            absent = [s for s in sc.SHAPES if s not in images[name].shapes]
            if split == "popular":  # the most frequent absent shapes of the training scenes
                assert qs["no"] == sorted(absent, key=lambda s: -freq[s])[: len(qs["no"])]
            if split == "adversarial":  # the absent shapes co-occurring most with the present ones
                score = {s: sum(cooc[min(p, s), max(p, s)] for p in qs["yes"]) for s in absent}
                assert sorted(score[s] for s in qs["no"]) == sorted(score.values())[-len(qs["no"]) :]
        per_split_yes[split] = {k: sorted(v["yes"]) for k, v in by_image.items()}
    assert per_split_yes["random"] == per_split_yes["popular"] == per_split_yes["adversarial"]


def test_gqa_format_and_answers(toy: dict[str, Any]) -> None:
    base = toy["root"] / "benchmarks" / "gqa"
    qs = _load(base / "testdev_balanced_questions.json")
    assert isinstance(qs, dict) and len(qs) == SPEC.n_gqa_questions == toy["counts"]["gqa_questions"]
    images = _benchmark_scenes(toy, base / "images")
    train_sigs = {s.signature() for s in _training_scenes(toy)}
    assert not {s.signature() for s in images.values()} & train_sigs
    structural = Counter()
    for qid, q in qs.items():
        assert set(q) == GQA_KEYS and qid.isdigit() and q["equivalent"] == [qid]
        assert re.fullmatch(r"n\d+", q["imageId"]) and q["isBalanced"] is True
        assert set(q["types"]) == {"structural", "semantic", "detailed"}
        assert set(q["groups"]) == {"global", "local"}
        assert q["answer"] == q["answer"].lower() and q["fullAnswer"].endswith(".")
        structural[q["types"]["structural"]] += 1
        scene = images[q["imageId"] + ".jpg"]
        assert _oracle(q["question"], scene) == q["answer"], q
        assert (q["answer"] in ("yes", "no")) == (q["types"]["structural"] in ("verify", "logical", "compare"))
    assert structural.keys() & {"verify", "logical", "compare"} and structural.keys() & {"query", "choose"}


def test_corpus(toy: dict[str, Any]) -> None:
    lines = (toy["root"] / "toy_text" / "corpus.txt").read_text().splitlines()
    assert len(lines) == toy["counts"]["corpus_lines"] and all(lines)
    text = set(lines)
    assert "Answer the question using a single word or phrase." in text
    captions = {r["conversations"][1]["value"] for r in _load(toy["root"] / "llava_pretrain" / "chat.json")}
    assert captions <= text
    words = set(" ".join(lines).replace(".", " ").replace("?", " ").split())
    assert {"Yes", "No", "Red", "Circle", "Two"} <= words
    assert not any("<image>" in line for line in lines)


def test_fresh_scene_skips_seen_content() -> None:
    first = sc.random_scene(random.Random(3))
    fresh = world._fresh_scene(random.Random(3), seen := {first.signature()})
    assert fresh.signature() != first.signature() and seen == {first.signature(), fresh.signature()}


def test_scene_language_helpers() -> None:
    scene = sc.Scene(
        objects=[sc.Obj("circle", "red", "large", 3), sc.Obj("star", "blue", "small", 8)], seed=1
    )
    assert sc.caption(scene) == "a large red circle on the left and a small blue star at the bottom right."
    question, answer = sc.color_question(scene, random.Random(0)) or ("", "")
    assert (question, answer) in {("What color is the circle?", "Red"), ("What color is the star?", "Blue")}
    assert sc.shape_question(scene, random.Random(0)) in {
        ("What shape is the red object?", "Circle"), ("What shape is the blue object?", "Star")
    }
    assert sc.position_question(scene, random.Random(0)) in {
        ("Where is the red circle?", "Left"), ("Where is the blue star?", "Bottom right")
    }
    assert sc.existence_question(scene, random.Random(0), present=False)[1] == "No"
    assert sc.count_question(scene) == ("How many objects are there?", "Two")
    img = sc.render(scene, 96)
    assert img.mode == "RGB" and img.size == (96, 96)
    # The large red circle really is drawn where the caption says: left-middle cell is mostly red.
    r, g, b = img.crop((8, 40, 24, 56)).resize((1, 1), Image.Resampling.BOX).getpixel((0, 0))  # type: ignore[misc]
    assert r > 150 and g < 90 and b < 90


def _existence_answers(records: list[dict[str, Any]]) -> Counter[tuple[str, str]]:
    counts: Counter[tuple[str, str]] = Counter()
    for r in records:
        for q, a in zip(r["conversations"][0::2], r["conversations"][1::2]):
            if m := re.search(r"Is there a (\w+) in the image\?", q["value"]):
                counts[m[1], a["value"].split(",")[0].split()[0].strip(".")] += 1
    return counts


def test_existence_probes_cannot_be_answered_from_the_shape_name(toy: dict[str, Any]) -> None:
    # Over many scenes every shape is asked about with "yes" and "no" equally often, although
    # common shapes are present far more often: the answer is in the image, not in the question.
    rng, probes, counts = random.Random(5), sc.ExistenceProbes(), Counter[tuple[str, str]]()
    for _ in range(3000):
        scene = sc.random_scene(rng)
        for qa in probes(scene, rng, k=rng.choice((1, 2))):
            assert qa.answer == ("Yes" if qa.question.split()[3] in scene.shapes else "No")
            counts[qa.question.split()[3], qa.answer] += 1
    for shape in sc.SHAPES:
        assert counts[shape, "Yes"] > 100 and abs(counts[shape, "Yes"] - counts[shape, "No"]) <= 3, shape
    # The same holds in the generated instruction mix, short and sentence answers alike.
    mixed = _existence_answers(_load(toy["root"] / "llava_instruct" / "llava_v1_5_mix665k.json"))
    assert sum(mixed.values()) > 0
    for shape in sc.SHAPES:
        assert abs(mixed[shape, "Yes"] - mixed[shape, "No"]) <= 3, (shape, mixed)


def test_mix_options_leave_the_benchmarks_byte_identical(toy: dict[str, Any], tmp_path: Path) -> None:
    """attribute_questions and choice_questions draw from a second generator: the benchmark files (the
    test) are the same with them off, and only the mix gains turns (issue 27)."""
    plain = replace(SPEC, attribute_questions=False, choice_questions=False)
    generate_toy_world(tmp_path, plain)
    on, off = toy["root"] / "benchmarks", tmp_path / "benchmarks"
    files = sorted(p.relative_to(off) for p in off.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(on) for p in on.rglob("*") if p.is_file())
    assert all((on / f).read_bytes() == (off / f).read_bytes() for f in files)

    def lettered(root: Path) -> int:
        records = _load(root / "llava_instruct" / "llava_v1_5_mix665k.json")
        return sum(t["value"].endswith(LETTER) for r in records for t in r["conversations"])

    assert lettered(toy["root"]) > lettered(tmp_path)


def test_free_colours_recolour_training_scenes_only(toy: dict[str, Any], tmp_path: Path) -> None:
    """free_colours (an issue-27 experiment) draws from a third generator: the benchmark files stay the
    same, the pretraining captions wear atypical colours far more often, and the shapes stay put."""
    generate_toy_world(tmp_path, replace(SPEC, free_colours=0.5))
    on, off = tmp_path / "benchmarks", toy["root"] / "benchmarks"
    files = sorted(p.relative_to(off) for p in off.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(on) for p in on.rglob("*") if p.is_file())
    assert all((on / f).read_bytes() == (off / f).read_bytes() for f in files)

    def captions(root: Path) -> list[str]:
        return [r["conversations"][1]["value"] for r in _load(root / "llava_pretrain" / "chat.json")]

    def typical_share(texts: list[str]) -> float:
        pairs = re.findall(r"(\w+) (" + "|".join(sc.SHAPES) + r")\b", " ".join(texts))
        return sum(sc.TYPICAL_COLOR[shape] == colour for colour, shape in pairs) / len(pairs)

    plain, free = captions(toy["root"]), captions(tmp_path)
    assert typical_share(plain) > 0.7 and typical_share(free) < 0.6
    strip = [re.sub(r"\b(" + "|".join(sc.COLORS) + r") ", "", c) for c in plain]
    assert strip == [re.sub(r"\b(" + "|".join(sc.COLORS) + r") ", "", c) for c in free]
