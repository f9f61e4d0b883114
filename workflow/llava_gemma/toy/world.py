"""The toy world: a seeded stand-in for LLaVA-1.5's data, written in the real upstream formats.

Pretraining pairs (LLaVA-CC3M-Pretrain-595K), the instruction mix (llava_v1_5_mix665k), POPE and
GQA testdev-balanced land in the same files and directories as the real downloads, so every loader
in the pipeline reads toy and real data alike. One ``random.Random(spec.seed)`` drives everything
in a fixed order, so a spec always yields byte-identical files.
"""

from __future__ import annotations

import dataclasses
import io
import json
import random
import zipfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from itertools import combinations
from pathlib import Path
from typing import Any, NamedTuple

from . import formats
from . import scenes as sc
from .benchmarks_extra import ExtraBenchmarkSpec, generate_extra_benchmarks
from .scenes import FACTS, NUMBERS, SHAPES, Scene
from .spoiled import add_spoiled_records

SHORT_ANSWER = "\nAnswer the question using a single word or phrase."
# A-OKVQA's multiple-choice turns in the 665k mix: lettered options, a one-letter answer.
LETTER_ANSWER = "\nAnswer with the option's letter from the given choices directly."
# The brief-description instructions of LLaVA's pretraining data.
PRETRAIN_PROMPTS = (
    "Describe the image concisely.", "Provide a brief description of the given image.",
    "Offer a succinct explanation of the picture presented.", "Summarize the visual content of the image.",
    "Give a short and clear explanation of the subsequent image.",
    "Share a concise interpretation of the image provided.",
    "Present a compact description of the photo's key features.",
    "Relay a brief, clear account of the picture shown.", "Render a clear and concise summary of the photo.",
    "Write a terse but informative summary of the picture.",
    "Create a compact narrative representing the image presented.", "Give a brief description of the image.",
)
# The detailed-description instructions of LLaVA-Instruct (detail_23k).
DESCRIBE_PROMPTS = (
    "Describe the following image.", "What do you see happening in this image?",
    "Can you describe the main features of this image for me?", "What is this photo about?",
    "Explain the visual content of the image in great detail.", "Describe the image.",
    "Can you elaborate on the elements of the picture provided?",
)
ALNUM = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"  # ShareGPT-like ids
VG_BOX = "Please provide the bounding box coordinate of the region this sentence describes: "
VG_REGION = "Please provide a short description for this region: "
# The six image roots of the mix: share of records (roughly the real mix), folder, file-stem pattern.
IMAGE_ROOTS: dict[str, tuple[float, str, Callable[[random.Random], str]]] = {
    "coco": (0.55, "coco/train2017/", lambda r: f"{r.randrange(1, 581_930):012d}"),
    "gqa": (0.12, "gqa/images/", lambda r: str(r.randrange(1, 2_417_998))),
    "ocr_vqa": (0.12, "ocr_vqa/images/", lambda r: str(r.randrange(10**9, 10**10))),
    "textvqa": (0.05, "textvqa/train_images/", lambda r: f"{r.getrandbits(64):016x}"),
    "vg100k": (0.10, "vg/VG_100K/", lambda r: str(r.randrange(1, 2_417_998))),
    "vg100k2": (0.06, "vg/VG_100K_2/", lambda r: str(r.randrange(1, 2_417_998))),
}


@dataclass
class ToyWorldSpec:
    seed: int = 0
    image_size: int = 96
    n_pretrain: int = 3000
    n_instruct: int = 3000  # conversations drawn; a VQA-style image's questions become one record each
    text_only_fraction: float = 0.1
    n_pope_images: int = 100
    pope_yes_per_image: int = 3  # and as many "no" questions, per image and split
    n_gqa_questions: int = 300
    gqa_questions_per_image: int = 3
    jpeg_quality: int = 90
    # Issue 27 (in progress): 1-2 attribute yes/no turns (count, colour, position, size, word) per
    # VQA-style image, as VQAv2's and GQA's verify questions. Off by default until measured in the
    # whole toy study; the benchmark files are the same either way.
    attribute_questions: bool = False
    # Issue 27: one more lettered multiple-choice turn per VQA-style image of any source (the default
    # mix has one on COCO images only), from the same second generator. Off by default.
    choice_questions: bool = False
    # Issue 27 experiment: the share of training objects (pretraining and mix images) recoloured with a
    # uniform colour, drawn from a third generator, so a caption's colour is less predictable from its
    # shape. At 0.5 it did not make a cell's connector carry colour (docs/toy-study.md, fourth step).
    # Benchmark scenes keep the world's colours; 0 changes nothing.
    free_colours: float = 0.0


def _jpeg(scene: Scene, spec: ToyWorldSpec) -> bytes:
    buf = io.BytesIO()
    sc.render(scene, spec.image_size).save(buf, "JPEG", quality=spec.jpeg_quality)
    return buf.getvalue()


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _dump(obj: Any) -> bytes:
    return (json.dumps(obj, ensure_ascii=False) + "\n").encode()


def _unique(used: set[str], draw: Callable[[], str]) -> str:
    while (key := draw()) in used:
        pass
    used.add(key)
    return key


def _turns(pairs: list[tuple[str, str]], image: bool) -> list[dict[str, str]]:
    conv = []
    for i, (q, a) in enumerate(pairs):
        conv.append({"from": "human", "value": ("<image>\n" + q) if image and i == 0 else q})
        conv.append({"from": "gpt", "value": a})
    return conv


def _fresh_scene(rng: random.Random, seen: set[tuple[object, ...]], **kw: Any) -> Scene:
    """A scene whose content never occurred before: benchmark images stay out of training."""
    while (scene := sc.random_scene(rng, **kw)).signature() in seen:
        pass
    seen.add(scene.signature())
    return scene


class _Recolour:
    """``spec.free_colours`` for training scenes, from its own generator. A recoloured scene never takes
    the content of a benchmark scene (``avoid``): it is drawn again, or left as it was."""

    def __init__(self, spec: ToyWorldSpec, avoid: frozenset = frozenset()) -> None:
        self.share, self.avoid = spec.free_colours, avoid
        self.rng = random.Random(f"toy-colours-{spec.seed}")

    def __call__(self, scene: Scene) -> Scene:
        if not self.share:
            return scene
        for _ in range(100):
            if (new := sc.recolour(scene, self.rng, self.share)).signature() not in self.avoid:
                return new
        return scene


def _pretrain(root: Path, spec: ToyWorldSpec, rng: random.Random, train: list[Scene], recolour: _Recolour
              ) -> list[str]:
    records, lines, used = list[dict[str, Any]](), list[str](), set[str]()
    out = root / "llava_pretrain"
    out.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(out / "images.zip", "w", zipfile.ZIP_STORED) as zf:
        for _ in range(spec.n_pretrain):
            scene = recolour(sc.random_scene(rng))
            train.append(scene)
            rid = "GCC_train_" + _unique(used, lambda: f"{rng.randrange(3_318_333):09d}")
            prompt, cap = rng.choice(PRETRAIN_PROMPTS), sc.caption(scene)
            human = f"{prompt}\n<image>" if rng.random() < 0.5 else f"<image>\n{prompt}"  # both occur
            conv = [{"from": "human", "value": human}, {"from": "gpt", "value": cap}]
            records.append({"id": rid, "image": rid + ".jpg", "conversations": conv})
            # Fixed timestamps and permissions keep the archive byte-identical between runs.
            info = zipfile.ZipInfo(rid + ".jpg", date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            zf.writestr(info, _jpeg(scene, spec))
            lines += [prompt, cap]
    _write(out / "chat.json", _dump(records))
    return lines


def _box(b: tuple[float, ...]) -> str:
    return "[" + ", ".join(f"{min(max(v, 0.0), 1.0):.2f}" for v in b) + "]"


# The answer vocabulary of each kind of question, for the wrong options of a multiple-choice turn.
_OPTIONS: dict[str, tuple[str, ...]] = {
    "color": tuple(c.capitalize() for c in sc.COLORS), "shape": tuple(s.capitalize() for s in SHAPES),
    "size": tuple(z.capitalize() for z in sc.SIZES), "position": tuple(c.capitalize() for c in sc.CELL_NAMES),
    "count": tuple(n.capitalize() for n in NUMBERS[1:5]),
}


def _multiple_choice(qa: sc.QA, rng: random.Random) -> tuple[str, str] | None:
    """The question with 2-4 lettered options (one right), as A-OKVQA's turns in LLaVA-1.5's mix."""
    if qa.kind not in _OPTIONS:
        return None
    wrong = [o for o in _OPTIONS[qa.kind] if o != qa.answer]
    options = [qa.answer, *rng.sample(wrong, min(len(wrong), rng.randint(1, 3)))]
    rng.shuffle(options)
    letters = "ABCD"
    lines = "\n".join(f"{letters[i]}. {o}" for i, o in enumerate(options))
    return f"{qa.question}\n{lines}{LETTER_ANSWER}", letters[options.index(qa.answer)]


def _image_conversations(
    root: str, scene: Scene, rng: random.Random, probes: sc.ExistenceProbes, extra: random.Random,
    attribute_questions: bool = False, choice_questions: bool = False,
) -> list[list[tuple[str, str]]]:
    """The conversations about one image: one multi-turn conversation, or (VQA style) one per question."""
    n = rng.randint(2, 4)
    if root.startswith("vg"):  # Visual Genome: region grounding and region captioning
        cands: list[tuple[str, str]] = []
        for o, b in zip(scene.objects, sc.object_boxes(scene)):
            phrase = f"{o.size} {o.color} {o.shape}"
            cands += [(VG_BOX + phrase + ".", _box(b)), (VG_REGION + _box(b), phrase.capitalize() + ".")]
        return [rng.sample(cands, min(n, len(cands)))]
    pool = sc.questions(scene, rng)  # always >= 2 (existence and count apply to every scene)
    if root in ("ocr_vqa", "textvqa"):  # the reading question comes first, as in OCR-VQA and TextVQA
        pool.sort(key=lambda qa: qa.kind != "text")
    # COCO images serve VQAv2/A-OKVQA (short answers) and LLaVA-Instruct (conversations, details),
    # about as often as in the real mix: of its COCO records, detail_23k's are 23k of about 360k. A
    # toy description is some 190 tokens: at a 20% share they were 14% of the supervised tokens, now 5%.
    style = rng.choices(("vqa", "conv", "detail"), weights=(0.55, 0.38, 0.07))[0] if root == "coco" else "vqa"
    others = [qa for qa in pool if qa.kind != "existence"]
    if style == "vqa":  # VQAv2/GQA/OCR-VQA/TextVQA records: short-answer prompt on every turn
        # Yes/no object probes are frequent in VQAv2 and GQA. Here they are balanced per shape
        # (ExistenceProbes), so only the image can tell a cell the answer.
        # Several probes per image, as VQAv2 asks several questions of each image: short answers that
        # need the image are a large share of the supervised tokens, as in the real mix.
        chosen = others[: n - 1] + probes(scene, rng, k=rng.randint(4, 7))
        rng.shuffle(chosen)
        pairs = [(qa.question + SHORT_ANSWER, qa.answer) for qa in chosen]
        if root == "coco" and (mc := _multiple_choice(rng.choice(others), rng) if others else None):
            # Anywhere in the record, often first: benchmarks ask their lettered question right after
            # the image, and a model that only met it after other turns answered it with a description.
            pairs.insert(rng.randint(0, len(pairs)), mc)
        for _ in range(extra.randint(1, 2) if attribute_questions else 0):
            # Attribute yes/no questions (count, colour, position, size, word), as VQAv2's and GQA's
            # verify questions; from a second generator so the main draws, and with them every
            # benchmark file, stay as they were (issue 27).
            question, answer = formats.verify_question(scene, extra)
            pairs.insert(extra.randint(0, len(pairs)), (question + SHORT_ANSWER, answer))
        if choice_questions:  # lettered, as A-OKVQA's turns; from the second generator (see above)
            pairs.insert(extra.randint(0, len(pairs)), formats.multiple_choice(scene, extra))
        # One question per record, as VQAv2 and GQA list them (LLaVA-1.5 merges an image's questions
        # into one conversation). In a toy stage 2 of some 200 steps the merged form taught the look-up
        # far less: a 2B/CLIP cell scored toy POPE 0.58 with merged records and 0.86-0.89 with single
        # ones, because a benchmark asks its one question right after the image (issue 15's note).
        return [[pair] for pair in pairs]
    chosen = others[: n - 1] + probes(scene, rng, k=1)
    rng.shuffle(chosen)
    pairs = [(qa.question, qa.full) for qa in chosen]  # LLaVA-Instruct conversations
    if style == "detail":
        pairs = [(rng.choice(DESCRIBE_PROMPTS), sc.describe(scene)), *pairs[: n - 1]]
    return [pairs]


def _instruct(
    root: Path, spec: ToyWorldSpec, rng: random.Random, train: list[Scene], recolour: _Recolour
) -> tuple[list[str], int]:
    n_text = round(spec.n_instruct * spec.text_only_fraction)
    weights = [w for w, _, _ in IMAGE_ROOTS.values()]
    kinds = ["text"] * n_text + rng.choices(list(IMAGE_ROOTS), weights, k=spec.n_instruct - n_text)
    rng.shuffle(kinds)  # the real mix is shuffled across sources
    records: list[dict[str, Any]] = []
    lines: list[str] = []
    used: set[str] = set()
    chats: set[str] = set()  # text-only conversations are distinct, as the real mix is after dedup
    probes = sc.ExistenceProbes()
    extra = random.Random(f"toy-formats-{spec.seed}")
    for kind in kinds:
        if kind == "text":  # ShareGPT-style: no "image" key and no <image> token
            rid = _unique(used, lambda: "".join(rng.choices(ALNUM, k=7)) + "_0")
            pairs = rng.sample(FACTS, rng.randint(1, 3))
            while repr(pairs) in chats:
                pairs = rng.sample(FACTS, rng.randint(2, 3))
            chats.add(repr(pairs))
            records.append({"id": rid, "conversations": _turns(pairs, image=False)})
        else:
            scene = recolour(sc.random_scene(rng, text=True if kind in ("ocr_vqa", "textvqa") else None))
            train.append(scene)
            _, folder, draw = IMAGE_ROOTS[kind]
            rid = _unique(used, partial(draw, rng))  # ids are the file stems, as in the real mix
            image = f"{folder}{rid}.jpg"
            conversations = _image_conversations(kind, scene, rng, probes, extra, spec.attribute_questions,
                                                 spec.choice_questions)
            for i, pairs in enumerate(conversations):  # a second record of an image gets a suffix
                records.append({"id": rid if i == 0 else f"{rid}_{i}", "image": image,
                                "conversations": _turns(pairs, image=True)})
            _write(root / "llava_instruct" / "images" / image, _jpeg(scene, spec))
            pairs = [pair for conversation in conversations for pair in conversation]
        lines += [f"{q} {a}".replace("\n", " ") for q, a in pairs]
    _write(root / "llava_instruct" / "llava_v1_5_mix665k.json", _dump(records))
    return lines, n_text, len(records)


def _pope(root: Path, spec: ToyWorldSpec, rng: random.Random, train: list[Scene], seen: set[Any]) -> int:
    k = spec.pope_yes_per_image
    if not 1 <= k <= len(SHAPES) // 2:
        raise ValueError(f"pope_yes_per_image must be in 1..{len(SHAPES) // 2}")
    # POPE's negative samplers: popular = the most frequent objects of the dataset, adversarial = the
    # objects co-occurring most with the ground-truth ones (both counted over the training scenes).
    freq = Counter(s for scene in train for s in scene.shapes)
    cooc = Counter(p for scene in train for p in combinations(sorted(scene.shapes), 2))

    out, used = root / "benchmarks" / "pope", set[str]()
    splits: dict[str, list[dict[str, Any]]] = {"random": [], "popular": [], "adversarial": []}
    for _ in range(spec.n_pope_images):
        scene = _fresh_scene(rng, seen, n_objects=k, distinct_shapes=True)
        name = _unique(used, lambda: f"COCO_val2014_{rng.randrange(1, 581_929):012d}.jpg")
        _write(out / "val2014" / name, _jpeg(scene, spec))
        yes = [o.shape for o in scene.objects]
        absent = [s for s in SHAPES if s not in scene.shapes]  # stable sorts below break ties by SHAPES order
        together = {s: -sum(cooc[min(p, s), max(p, s)] for p in yes) for s in absent}
        negatives = {
            "random": rng.sample(absent, k),
            "popular": sorted(absent, key=lambda s: -freq[s])[:k],
            "adversarial": sorted(absent, key=together.__getitem__)[:k],
        }
        for split, rows in splits.items():
            for pos, neg in zip(yes, negatives[split]):  # yes and no alternate, as in the released files
                for shape, label in ((pos, "yes"), (neg, "no")):
                    text = f"Is there a {shape} in the image?"
                    rows.append({"question_id": len(rows) + 1, "image": name, "text": text, "label": label})
    for split, rows in splits.items():
        _write(out / f"coco_pope_{split}.json", b"".join(_dump(r) for r in rows))
    return len(splits["random"])


GqaItem = tuple[str, str, str, str, str, str]  # question, answer, fullAnswer, structural, semantic, detailed
Gen = Callable[[Scene, random.Random], GqaItem | None]


def _yn(b: bool) -> str:
    return "yes" if b else "no"


def _from_qa(make: Callable[[Scene, random.Random], sc.QA | None], *types: str) -> Gen:
    """GQA form of a scene question: same wording, lower-case answer as in GQA, sentence as fullAnswer."""

    def gen(scene: Scene, rng: random.Random) -> GqaItem | None:
        qa = make(scene, rng)
        return None if qa is None else (qa.question, qa.answer.lower(), qa.full, types[0], types[1], types[2])

    return gen


def _g_side(scene: Scene, rng: random.Random) -> GqaItem | None:
    if not (c := [o for o in sc.unique_by(scene, "shape") if o.cell % 3 != 1]):
        return None
    o = rng.choice(c)
    side = "left" if o.cell % 3 == 0 else "right"
    q = f"On which side of the image is the {o.shape}?"
    return q, side, f"The {o.shape} is on the {side} of the image.", "query", "rel", "positionQuery"


def _g_choose(scene: Scene, rng: random.Random) -> GqaItem | None:
    if not (c := sc.unique_by(scene, "shape")):
        return None
    o = rng.choice(c)
    a, b = rng.sample([o.color, rng.choice([x for x in sc.COLORS if x != o.color])], 2)
    full = f"The {o.shape} is {o.color}."
    return f"Is the {o.shape} {a} or {b}?", o.color, full, "choose", "attr", "chooseAttr"


def _g_verify(scene: Scene, rng: random.Random) -> GqaItem | None:
    if not (c := sc.unique_by(scene, "shape")):
        return None
    o = rng.choice(c)
    col = o.color if rng.random() < 0.5 else rng.choice([x for x in sc.COLORS if x != o.color])
    full = f"Yes, the {o.shape} is {col}." if col == o.color else f"No, the {o.shape} is {o.color}."
    return f"Is the {o.shape} {col}?", _yn(col == o.color), full, "verify", "attr", "verifyAttr"


def _g_logic(scene: Scene, rng: random.Random) -> GqaItem | None:
    present, absent = sorted(scene.shapes), [x for x in SHAPES if x not in scene.shapes]
    truth = rng.random() < 0.5  # balanced yes/no
    if rng.random() < 0.5:
        a = rng.choice(present)
        if not (others := [x for x in present if x != a] if truth else absent):
            return None
        b = rng.choice(others)
        full = f"Yes, there are both a {a} and a {b}." if truth else f"No, there is no {b}."
        a, b = rng.sample([a, b], 2)
        return f"Are there both a {a} and a {b} in the image?", _yn(truth), full, "logical", "obj", "logicAnd"
    a, b = rng.choice(present if truth else absent), rng.choice(absent)
    if a == b:
        return None
    full = f"Yes, there is a {a}." if truth else f"No, there is neither a {a} nor a {b}."
    a, b = rng.sample([a, b], 2)
    return f"Is there a {a} or a {b} in the image?", _yn(truth), full, "logical", "obj", "logicOr"


def _g_compare(scene: Scene, rng: random.Random) -> GqaItem | None:
    if len(c := sc.unique_by(scene, "shape")) < 2:
        return None
    x, y = rng.sample(c, 2)
    if (same := x.color == y.color) != (rng.random() < 0.5):
        return None  # keeps yes/no balanced although equal colours are rare
    full = f"{_yn(same).capitalize()}, the {x.shape} is {x.color} and the {y.shape} is {y.color}."
    q = f"Are the {x.shape} and the {y.shape} the same color?"
    return q, _yn(same), full, "compare", "attr", "sameColor"


OPEN: tuple[Gen, ...] = (
    _from_qa(sc.color_question, "query", "attr", "queryAttr"),
    _from_qa(sc.shape_question, "query", "cat", "categoryAttr"), _g_side, _g_choose,
)
BINARY: tuple[Gen, ...] = (
    _from_qa(sc.existence_question, "verify", "obj", "exist"), _g_verify, _g_logic, _g_compare,
)


def _gqa(root: Path, spec: ToyWorldSpec, rng: random.Random, seen: set[Any]) -> tuple[int, int]:
    out = root / "benchmarks" / "gqa"
    qs: dict[str, dict[str, Any]] = {}
    used: set[str] = set()
    n_images = 0
    while len(qs) < spec.n_gqa_questions:
        scene = _fresh_scene(rng, seen, n_objects=rng.randint(2, 3))
        image_id = _unique(used, lambda: f"n{rng.randrange(1000, 600_000)}")
        _write(out / "images" / f"{image_id}.jpg", _jpeg(scene, spec))
        n_images += 1
        asked: set[str] = set()
        for _ in range(min(spec.gqa_questions_per_image, spec.n_gqa_questions - len(qs))):
            gens = list(BINARY if rng.random() < 0.5 else OPEN)  # about half binary, as in GQA
            rng.shuffle(gens)
            item = next((it for g in gens if (it := g(scene, rng)) and it[0] not in asked), None)
            if item is None:
                continue
            q, ans, full, structural, semantic, detailed = item
            asked.add(q)
            qid = _unique(used, lambda: str(rng.randrange(10**7, 10**8)))
            qs[qid] = {
                "imageId": image_id, "question": q, "answer": ans, "fullAnswer": full, "isBalanced": True,
                "types": {"structural": structural, "semantic": semantic, "detailed": detailed},
                "semantic": [], "annotations": {"question": {}, "answer": {}, "fullAnswer": {}},
                "groups": {"global": None if ans in ("yes", "no") else semantic, "local": f"{detailed}-{q}"},
                "entailed": [], "equivalent": [qid],
            }
    _write(out / "testdev_balanced_questions.json", _dump(qs))
    return len(qs), n_images


def _statements() -> list[str]:
    """Templated facts covering every shape, colour, size and position, plus the answer vocabulary."""
    combos = ((s, c, z, p) for s in SHAPES for c in sc.COLORS for z in sc.SIZES for p in sc.CELL_PHRASES)
    lines = [f"There is a {z} {c} {s} {p}." for s, c, z, p in combos]
    lines += [f"The {s} is {c}." for s in SHAPES for c in sc.COLORS]
    lines += [*PRETRAIN_PROMPTS, *DESCRIBE_PROMPTS, SHORT_ANSWER.strip()]
    words = ["Yes", "No", *NUMBERS, *sc.COLORS, *SHAPES, *sc.SIZES, *sc.CELL_NAMES]
    return [*lines, " ".join(w.capitalize() for w in words) + "."]


class TrainingDraws(NamedTuple):
    """Where the training data leave the world's generator: what the benchmarks are drawn from."""

    state: Any  # random.Random.getstate()
    signatures: set[Any]  # of the training scenes, which benchmark scenes keep clear of
    scenes: list[Scene]  # POPE's popular and adversarial negatives are counted over them


def generate_toy_world(root: Path | str, spec: ToyWorldSpec) -> dict[str, int]:
    """Write the toy world under ``root`` (normally ``data/raw``) and return what was written.

    With ``free_colours`` the benchmarks stay byte-identical to the default world's: a recoloured scene
    changes which questions its records draw, so the default world is first generated in a scratch
    folder (a few seconds at the toy sizes) for the generator's state after its training data and for
    the benchmark scenes, which the recoloured training scenes then keep clear of."""
    root = Path(root)
    if not spec.free_colours:
        return _generate(root, spec, _Recolour(spec))[0]
    import tempfile

    default_spec = dataclasses.replace(spec, free_colours=0.0)
    with tempfile.TemporaryDirectory() as scratch:
        _, after_training, everything = _generate(Path(scratch), default_spec, _Recolour(default_spec))
    benchmark_scenes = frozenset(everything - after_training.signatures)
    return _generate(root, spec, _Recolour(spec, benchmark_scenes), benchmarks_from=after_training)[0]


def _generate(root: Path, spec: ToyWorldSpec, recolour: _Recolour,
              benchmarks_from: TrainingDraws | None = None) -> tuple[dict[str, int], TrainingDraws, set[Any]]:
    """(what was written, this world's ``TrainingDraws``, every signature used). ``benchmarks_from`` draws
    the benchmarks from another world's ``TrainingDraws`` instead.

    A recoloured record draws other questions, so the training scenes after it are other draws too."""
    rng = random.Random(spec.seed)
    train: list[Scene] = []
    corpus = _pretrain(root, spec, rng, train, recolour)
    instruct_lines, n_text, n_records = _instruct(root, spec, rng, train, recolour)
    seen = {scene.signature() for scene in train}
    after_training = TrainingDraws(rng.getstate(), set(seen), list(train))
    if benchmarks_from is not None:
        rng.setstate(benchmarks_from.state)
        seen, train = set(benchmarks_from.signatures), benchmarks_from.scenes
    # Benchmark text stays out of the corpus: the tiny LMs pretrain on training-side text only.
    corpus += instruct_lines + [f"{q} {a}" for q, a in FACTS] + _statements()
    n_pope = _pope(root, spec, rng, train, seen)
    n_gqa, n_gqa_images = _gqa(root, spec, rng, seen)
    _write(root / "toy_text" / "corpus.txt", ("\n".join(corpus) + "\n").encode())
    counts = {
        "pretrain": spec.n_pretrain, "instruct": n_records, "instruct_text_only": n_text,
        "instruct_images": spec.n_instruct - n_text, "pope_images": spec.n_pope_images,
        "pope_questions_per_split": n_pope, "gqa_questions": n_gqa, "gqa_images": n_gqa_images,
        "corpus_lines": len(corpus),
        **generate_extra_benchmarks(root, rng, ExtraBenchmarkSpec(image_size=spec.image_size,
                                                                  jpeg_quality=spec.jpeg_quality), seen),
        **add_spoiled_records(root),  # one record per kind the filter drops (toy/spoiled.py)
    }
    return counts, after_training, seen
