"""Tiny stand-ins of every data source config.yaml names, in the real layouts, under the real names.

``build_sources`` generates a small toy world (``toy.world``, ``toy.benchmarks_extra``) and repacks
it as the real distributions publish it, for each ``downloads`` entry of the config, keyed by the
entry's destination under data/raw (the URL or hub file itself comes from the config):

- hub dataset repos: LLaVA-CC3M-Pretrain-595K (chat.json, images.zip of flat ``GCC_train_*.jpg``),
  LLaVA-Instruct-150K (llava_v1_5_mix665k.json), lmms-lab/MME (the four parquet shards under the
  names config.yaml lists), MMVP/MMVP (Questions.csv, ``MMVP Images/<i>.jpg``);
- URL files: COCO train2017.zip (``train2017/``) and val2014.zip (``val2014/``), GQA images.zip
  (``images/``: the mix's and test-dev's) and questions1.2.zip (``testdev_balanced_questions.json`` at
  the top, beside another question file the ``members`` filter must skip), TextVQA (``train_images/``),
  the two Visual Genome zips (``VG_100K/``, ``VG_100K_2/``), the VQAv2 question and annotation zips
  (one JSON each at the top; half the val2014 images also in train2017, as COCO 2017 moved most of them), the
  VQAv2 test questions zip (test-dev and test2015 JSON at the top) and COCO test2015.zip (``test2015/``),
  POPE's three JSON-lines files, mm-vet.zip (``mm-vet/mm-vet.json``,
  ``mm-vet/images/``), ScienceQA's problems.json, pid_splits.json and test.zip (``test/<pid>/image.png``);
- OCR-VQA: the hub mirror's zip (``images/<book id>.jpg``) when config.yaml names it (``source: hub``);
  with ``source: urls``, ``dataset.json`` (book id -> ``imageURL`` on Amazon's image host, title, questions,
  answers; the file a user places by hand) and the covers at those URLs. One cover is a GIF as many real ones are.

Layouts not known here, and so assumed (the code follows the config's ``extract`` entries): that
questions1.2.zip keeps its JSON files at the top level and that the VQAv2 zips hold one JSON file
each at the top level. Counts are tiny (a few to a few dozen questions per benchmark; MMVP keeps all
300 images config.yaml downloads but only ``MMVP_ROWS`` questions).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import random
import shutil
import zipfile
from collections.abc import Callable, Iterable
from pathlib import Path
from urllib.parse import urlsplit

from PIL import Image

from llava_gemma.errors import UserError

MMVP_ROWS = 12  # questions kept of the 300 MMVP images (6 pairs)
ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # fixed: the archives are byte-identical between builds


class NoStandIn(UserError, KeyError):
    pass


def _zip(dest: Path, members: Iterable[tuple[str, Path | bytes]]) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(dest, "w", zipfile.ZIP_STORED) as zf:
        for name, src in sorted(members, key=lambda m: m[0]):
            info = zipfile.ZipInfo(name, date_time=ZIP_DATE)
            info.external_attr = 0o644 << 16
            zf.writestr(info, src if isinstance(src, bytes) else src.read_bytes())


def _tree(folder: Path, prefix: str) -> list[tuple[str, Path]]:
    """Every file under ``folder`` as (``prefix`` + its path below ``folder``, path)."""
    return [(prefix + p.relative_to(folder).as_posix(), p) for p in sorted(folder.rglob("*")) if p.is_file()]


class World:
    """The generated toy world the stand-ins are cut from, and the question counts they end up holding."""

    def __init__(self, root: Path, seed: int):
        from llava_gemma.toy.benchmarks_extra import ExtraBenchmarkSpec, generate_extra_benchmarks
        from llava_gemma.toy.world import ToyWorldSpec, generate_toy_world

        self.root = root
        generate_toy_world(root / "main", ToyWorldSpec(seed=seed, image_size=64, n_pretrain=64, n_instruct=120,
                                                       n_pope_images=2, n_gqa_questions=9))
        generate_extra_benchmarks(root / "extra", random.Random(seed + 1), ExtraBenchmarkSpec(
            image_size=64, mme_images_per_subtask=1, mmvet_questions=6, vqav2_questions=6, vqav2_questions_per_image=2,
            mmvp_pairs=150, scienceqa_image_questions=6, scienceqa_text_questions=3))
        self.main, self.bench = root / "main", root / "extra" / "benchmarks"
        self.images = self.main / "llava_instruct" / "images"
        self.questions: dict[str, int] = {}

    def count(self, benchmark: str, n: int) -> None:
        self.questions[benchmark] = n


# --- one builder per downloads entry (keyed by its path under data/raw) ----------------------------------------

def _copy(src: Callable[[World], Path]) -> Callable[[World, Path], None]:
    def build(world: World, dest: Path) -> None:
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src(world), dest)
    return build


def _zipped(members: Callable[[World], list[tuple[str, Path | bytes]]]) -> Callable[[World, Path], None]:
    return lambda world, dest: _zip(dest, members(world))


def _pope_split(split: str) -> Callable[[World, Path], None]:
    def build(world: World, dest: Path) -> None:
        text = (world.main / "benchmarks" / "pope" / f"coco_pope_{split}.json").read_text()
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(text)
        world.count("pope", world.questions.get("pope", 0) + len(text.splitlines()))
    return build


def _gqa_questions(world: World) -> list[tuple[str, Path | bytes]]:
    path = world.main / "benchmarks" / "gqa" / "testdev_balanced_questions.json"
    world.count("gqa", len(json.loads(path.read_text())))
    return [("testdev_balanced_questions.json", path), ("testdev_all_questions.json", path)]


def _mme_shard(index: int) -> Callable[[World, Path], None]:
    def build(world: World, dest: Path) -> None:
        import pyarrow.parquet as pq

        table = pq.read_table(next((world.bench / "mme" / "data").glob("*.parquet")))
        images = sorted(set(table.column("question_id").to_pylist()))
        mine = set(images[index::4])  # both questions of an image stay in one shard
        rows = table.filter([q in mine for q in table.column("question_id").to_pylist()])
        dest.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(rows, dest)
        world.count("mme", world.questions.get("mme", 0) + rows.num_rows)
    return build


def _mmvet(world: World) -> list[tuple[str, Path | bytes]]:
    world.count("mmvet", len(json.loads((world.bench / "mmvet" / "mm-vet.json").read_text())))
    return _tree(world.bench / "mmvet", "mm-vet/")


def _vqav2(name: str) -> Callable[[World], list[tuple[str, Path | bytes]]]:
    def members(world: World) -> list[tuple[str, Path | bytes]]:
        path = world.bench / "vqav2" / name
        if "questions" in name:  # the val2017 split leaves out the questions on images also in train2017
            questions = json.loads(path.read_text())["questions"]
            train2017 = _vqav2_in_train2017(world) | {int(p.stem) for p in (world.images / "coco").rglob("*.jpg")}
            world.count("vqav2", sum(q["image_id"] not in train2017 for q in questions))
        return [(name, path)]
    return members


def _vqav2_in_train2017(world: World) -> set[int]:
    """Half the stand-in val2014 images are also in train2017, as 35,504 of the real 40,504 are."""
    questions = json.loads((world.bench / "vqav2" / "v2_OpenEnded_mscoco_val2014_questions.json").read_text())
    return set(sorted({q["image_id"] for q in questions["questions"]})[::2])


def _coco_train2017(world: World) -> list[tuple[str, Path | bytes]]:
    """The mix's train2017 images, and the val2014 images COCO 2017 moved into train (named by their id)."""
    val2014 = world.bench / "vqav2" / "val2014"
    return _tree(world.images / "coco", "") + [
        (f"train2017/{i:012d}.jpg", val2014 / f"COCO_val2014_{i:012d}.jpg") for i in sorted(_vqav2_in_train2017(world))]


def _vqav2_test_questions(world: World) -> list[tuple[str, Path | bytes]]:
    """test-dev (counted) and the whole test2015 set (test-dev plus questions the run leaves unanswered)."""
    questions = json.loads((world.bench / "vqav2" / "v2_OpenEnded_mscoco_val2014_questions.json").read_text())
    questions = questions["questions"]
    head = {"info": {"description": "stand-in VQAv2 test"}, "task_type": "Open-Ended", "data_type": "mscoco"}
    dev = [{**q, "question_id": q["question_id"] + 1} for q in questions]
    full = dev + [{**q, "question_id": q["question_id"] + 2} for q in questions]
    world.count("vqav2_testdev", len(dev))
    return [("v2_OpenEnded_mscoco_test-dev2015_questions.json",
             json.dumps({**head, "data_subtype": "test-dev2015", "questions": dev}).encode()),
            ("v2_OpenEnded_mscoco_test2015_questions.json",
             json.dumps({**head, "data_subtype": "test2015", "questions": full}).encode())]


def _coco_test2015(world: World) -> list[tuple[str, Path | bytes]]:
    return [(f"test2015/{p.name.replace('val2014', 'test2015')}", p)
            for p in sorted((world.bench / "vqav2" / "val2014").glob("*.jpg"))]


def _scienceqa_problems(world: World, dest: Path) -> None:
    _copy(lambda w: w.bench / "scienceqa_img" / "problems.json")(world, dest)
    problems = json.loads(dest.read_text())
    world.count("scienceqa_img", sum(1 for p in problems.values() if p["split"] == "test" and p["image"]))


def _mmvp_questions(world: World, dest: Path) -> None:
    with (world.bench / "mmvp" / "Questions.csv").open(newline="") as f:
        rows = list(csv.reader(f))
    dest.parent.mkdir(parents=True, exist_ok=True)
    with dest.open("w", newline="") as f:
        csv.writer(f, lineterminator="\n").writerows(rows[: MMVP_ROWS + 1])
    world.count("mmvp", MMVP_ROWS)


def _val2014(world: World) -> list[tuple[str, Path | bytes]]:
    return (_tree(world.main / "benchmarks" / "pope" / "val2014", "val2014/")
            + _tree(world.bench / "vqav2" / "val2014", "val2014/"))


BUILDERS: dict[str, Callable[[World, Path], None]] = {
    "llava_pretrain/chat.json": _copy(lambda w: w.main / "llava_pretrain" / "chat.json"),
    "llava_pretrain/images.zip": _copy(lambda w: w.main / "llava_pretrain" / "images.zip"),
    "llava_instruct/llava_v1_5_mix665k.json": _copy(lambda w: w.main / "llava_instruct" / "llava_v1_5_mix665k.json"),
    "archives/coco_train2017.zip": _zipped(_coco_train2017),
    "archives/gqa_images.zip": _zipped(lambda w: _tree(w.images / "gqa" / "images", "images/")
                                       + _tree(w.main / "benchmarks" / "gqa" / "images", "images/")),
    "archives/textvqa_train_val_images.zip": _zipped(lambda w: _tree(w.images / "textvqa", "")),
    "archives/vg_images_part1.zip": _zipped(lambda w: _tree(w.images / "vg" / "VG_100K", "VG_100K/")),
    "archives/vg_images_part2.zip": _zipped(lambda w: _tree(w.images / "vg" / "VG_100K_2", "VG_100K_2/")),
    "archives/coco_val2014.zip": _zipped(_val2014),
    "archives/gqa_testdev_questions.zip": _zipped(_gqa_questions),
    **{f"benchmarks/pope/coco_pope_{s}.json": _pope_split(s) for s in ("random", "popular", "adversarial")},
    "archives/mm-vet.zip": _zipped(_mmvet),
    "archives/vqav2_val_questions.zip": _zipped(_vqav2("v2_OpenEnded_mscoco_val2014_questions.json")),
    "archives/vqav2_val_annotations.zip": _zipped(_vqav2("v2_mscoco_val2014_annotations.json")),
    "archives/vqav2_test_questions.zip": _zipped(_vqav2_test_questions),
    "archives/coco_test2015.zip": _zipped(_coco_test2015),
    "benchmarks/scienceqa_img/problems.json": _scienceqa_problems,
    "benchmarks/scienceqa_img/pid_splits.json": _copy(lambda w: w.bench / "scienceqa_img" / "pid_splits.json"),
    "archives/scienceqa_test_images.zip": _zipped(lambda w: _tree(w.bench / "scienceqa_img" / "test", "test/")),
    "benchmarks/mmvp/Questions.csv": _mmvp_questions,
    # OCR-VQA's hub mirror (weizhiwang/llava_v15_instruction_images): images/<book id>.jpg.
    "archives/ocr_vqa_images.zip": _zipped(lambda w: _ocr_vqa_covers(w)),
}


def _ocr_vqa_covers(world: World) -> list[tuple[str, Path | bytes]]:
    covers = _tree(world.images / "ocr_vqa" / "images", "images/")
    if covers:  # many real covers are GIFs under a .jpg name
        buf = io.BytesIO()
        Image.open(covers[0][1]).convert("RGB").save(buf, "GIF")
        covers[0] = (covers[0][0], buf.getvalue())
    return covers


def _builder(key: str) -> Callable[[World, Path], None]:
    if key in BUILDERS:
        return BUILDERS[key]
    if key.startswith("benchmarks/mme/data/test-") and key.endswith(".parquet"):
        return _mme_shard(int(key.split("test-")[1][:5]))
    if key.startswith("benchmarks/mmvp/images/") and key.endswith(".jpg"):  # one entry per image
        index = key.rsplit("/", 1)[1]
        return _copy(lambda w: w.bench / "mmvp" / "MMVP Images" / index)
    if key == "benchmarks/mmvp/images":  # the whole folder in one entry
        return lambda w, dest: shutil.copytree(w.bench / "mmvp" / "MMVP Images", dest, dirs_exist_ok=True)
    raise NoStandIn(f"the rehearsal has no stand-in for downloads entry {key!r}; add a builder for it in "
                    "workflow/llava_gemma/rehearsal/sources.py.")


def hub_path(root: Path, spec: dict) -> Path:
    """Where a hub download's file (or folder) lives in the mirror: ``hub/<model|dataset>/<repo>/<file>``."""
    return root / "hub" / spec.get("repo_type", "dataset") / spec["hub"] / spec.get("file", spec.get("folder"))


def url_path(root: Path, url: str) -> Path:
    """Where a URL's file lives in the mirror: ``urls/<host>/<path>`` (LLAVA_GEMMA_URL_MIRROR's mapping)."""
    parts = urlsplit(url)
    return root / "urls" / parts.netloc / parts.path.lstrip("/")


def build_sources(root: Path, config: dict, seed: int = 0) -> tuple[dict[str, int], list[str]]:
    """Every ``downloads`` entry and OCR-VQA's covers under ``root``; returns the questions per benchmark
    and the toy world's text corpus (the stand-in tokenizers are trained on it)."""
    root = Path(root)
    work = root / ".work"
    shutil.rmtree(work, ignore_errors=True)
    world = World(work, seed)
    for key, spec in config.get("downloads", {}).items():
        _builder(key)(world, url_path(root, spec["url"]) if "url" in spec else hub_path(root, spec))
    if config.get("ocr_vqa", {}).get("source") == "urls":
        _ocr_vqa(world, root, config["ocr_vqa"]["dataset_json"])
    corpus = (world.main / "toy_text" / "corpus.txt").read_text().splitlines()
    shutil.rmtree(work)
    return dict(sorted(world.questions.items())), corpus


def _ocr_vqa(world: World, root: Path, dataset_json: str) -> None:
    """dataset.json (under ``manual/``: a user places it by hand) and the covers at its imageURLs."""
    mix = json.loads((world.main / "llava_instruct" / "llava_v1_5_mix665k.json").read_text())
    books = {}
    for n, record in enumerate(r for r in mix if str(r.get("image", "")).startswith("ocr_vqa/images/")):
        book_id = record["image"].rsplit("/", 1)[1].rsplit(".", 1)[0]
        name = hashlib.sha1(book_id.encode()).hexdigest()[:11]
        url = f"http://ecx.images-amazon.com/images/I/{name}.jpg"
        dest = url_path(root, url)
        dest.parent.mkdir(parents=True, exist_ok=True)
        cover = world.images / record["image"]
        if n == 0:  # many real covers are GIFs under a .jpg name
            buf = io.BytesIO()
            Image.open(cover).convert("RGB").save(buf, "GIF")
            dest.write_bytes(buf.getvalue())
        else:
            shutil.copyfile(cover, dest)
        turns = record["conversations"]
        books[book_id] = {"imageURL": url, "title": f"Book {book_id}", "authorName": "A. Author", "genre": "Toy",
                          "questions": [t["value"].replace("<image>", "").strip() for t in turns[::2]],
                          "answers": [t["value"] for t in turns[1::2]], "split": 1}
    dest = root / "manual" / dataset_json
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps(books))
