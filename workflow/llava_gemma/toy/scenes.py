"""Synthetic scenes of coloured shapes on a 3x3 grid, their rendering and their descriptions.

Every fact about a scene (shapes, colours, sizes, cells, an optional word) is known, so captions,
question/answer pairs and benchmark labels are correct by construction.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Self

import numpy as np
from PIL import Image, ImageDraw, ImageFont

# Shape frequencies are deliberately skewed and shapes come in "partner" pairs that tend to
# co-occur, so POPE's popular and adversarial negative sampling differ from random sampling.
SHAPE_WEIGHTS: dict[str, int] = {
    "circle": 8, "square": 6, "triangle": 5, "star": 4, "cross": 3, "diamond": 3, "hexagon": 2, "heart": 2,
}
SHAPES: tuple[str, ...] = tuple(SHAPE_WEIGHTS)
PARTNER: dict[str, str] = {
    "circle": "square", "square": "circle", "triangle": "diamond", "diamond": "triangle",
    "star": "heart", "heart": "star", "cross": "hexagon", "hexagon": "cross",
}
PARTNER_PROB = 0.45
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (230, 30, 30), "green": (30, 200, 60), "blue": (40, 90, 245), "yellow": (250, 225, 30),
    "purple": (165, 50, 225), "orange": (255, 140, 0), "white": (245, 245, 245), "pink": (255, 110, 190),
}
# Like real object categories (bananas are yellow), each shape has a typical colour that it
# mostly wears. The tiny toy towers see colour far more easily than outline, so this gives them
# the cue real towers have in abundance; the other colours still occur, so colour questions
# are not answerable from the shape alone.
TYPICAL_COLOR: dict[str, str] = {
    "circle": "red", "square": "blue", "triangle": "green", "star": "yellow", "cross": "white",
    "diamond": "purple", "hexagon": "orange", "heart": "pink",
}
TYPICAL_COLOR_PROB = 0.8
SIZES: tuple[str, ...] = ("small", "large")
CELL_NAMES: tuple[str, ...] = (
    "top left", "top", "top right", "left", "center", "right", "bottom left", "bottom", "bottom right",
)
CELL_PHRASES: tuple[str, ...] = (
    "at the top left", "at the top", "at the top right", "on the left", "in the center", "on the right",
    "at the bottom left", "at the bottom", "at the bottom right",
)
WORDS: tuple[str, ...] = (
    "SUN", "CAT", "BOX", "TOY", "MAP", "OWL", "FOX", "JAM", "KEY", "CUP", "DOG", "HAT", "PEN", "SKY",
    "TEA", "VAN", "WEB", "STOP", "OPEN", "MILK", "FISH", "BOOK", "LAMP", "KITE", "MOON", "ZOO",
)
NUMBERS: tuple[str, ...] = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
SIDES = {"triangle": 3, "square": 4, "hexagon": 6}
MIXES = (("red", "blue", "purple"), ("red", "yellow", "orange"), ("blue", "yellow", "green"))
# General facts of the toy world, for text-only (ShareGPT-like) conversations and the text corpus.
FACTS: tuple[tuple[str, str], ...] = (
    *((f"What colour do you get by mixing {a} and {b}?", f"Mixing {a} and {b} gives {c}.")
      for a, b, c in MIXES),
    *((f"How many sides does a {s} have?", f"A {s} has {NUMBERS[n]} sides.") for s, n in SIDES.items()),
    *((f"What shape has {NUMBERS[n]} sides?", f"A {s} has {NUMBERS[n]} sides.") for s, n in SIDES.items()),
    ("How many points does a star have?", "A star has five points."),
    ("How many arms does a cross have?", "A cross has four arms."),
    ("Does a circle have corners?", "No, a circle is round and has no corners."),
    ("How is a diamond different from a square?", "A diamond is narrower than a square and stands on a tip."),
    ("What shape is a symbol of love?", "The heart is a symbol of love."),
    ("How many cells does a three by three grid have?", "A three by three grid has nine cells."),
    ("Which cell is in the middle of the grid?", "The center cell is in the middle of the grid."),
    ("What is the opposite of top left?", "The opposite of top left is bottom right."),
    ("What is the opposite of top right?", "The opposite of top right is bottom left."),
    ("Which is brighter, white or purple?", "White is brighter than purple."),
    ("What colours do the shapes have?", "They are red, green, blue, yellow, purple, orange or white."),
)
TEXT_PROB = 0.25
# Half-extent of an object as a fraction of the cell side: large objects nearly fill their cell so
# they stay recognisable at 48 px (a 16 px cell, two ViT patches of 8 px).
RADIUS = {"small": 0.32, "large": 0.46}
SUPERSAMPLE = 3


@dataclass(frozen=True)
class Obj:
    shape: str
    color: str
    size: str
    cell: int  # 0..8, row-major over the 3x3 grid

    @property
    def name(self) -> str:
        return f"{self.color} {self.shape}"


@dataclass
class Scene:
    objects: list[Obj]
    text: str | None = None
    text_cell: int | None = None
    background: tuple[int, int, int] = (40, 40, 40)
    seed: int = 0  # drives pixel noise and in-cell jitter, so rendering is a pure function
    shapes: frozenset[str] = field(init=False)

    def __post_init__(self) -> None:
        self.shapes = frozenset(o.shape for o in self.objects)

    def signature(self) -> tuple[object, ...]:
        """Content identity (ignores noise), used to keep benchmark scenes out of training."""
        return (tuple(sorted((o.cell, o.shape, o.color, o.size) for o in self.objects)), self.text)


def _pick_shape(rng: random.Random, chosen: list[str]) -> str:
    if chosen and rng.random() < PARTNER_PROB:
        return PARTNER[rng.choice(chosen)]
    return rng.choices(SHAPES, weights=list(SHAPE_WEIGHTS.values()))[0]


def recolour(scene: Scene, rng: random.Random, share: float) -> Scene:
    """The scene with each object, with probability ``share``, wearing a uniformly drawn colour instead."""
    objects = [replace(o, color=rng.choice(tuple(COLORS))) if rng.random() < share else o for o in scene.objects]
    return replace(scene, objects=objects)


def _pick_color(rng: random.Random, shape: str) -> str:
    if rng.random() < TYPICAL_COLOR_PROB:
        return TYPICAL_COLOR[shape]
    return rng.choice(tuple(COLORS))


def random_scene(
    rng: random.Random, n_objects: int | None = None, distinct_shapes: bool = False, text: bool | None = None
) -> Scene:
    """A random scene of 1-3 objects (or ``n_objects``) in distinct grid cells."""
    n = n_objects if n_objects is not None else rng.randint(1, 3)
    with_text = rng.random() < TEXT_PROB if text is None else text
    if n + with_text > 9 or (distinct_shapes and n > len(SHAPES)):
        raise ValueError(f"cannot place {n} objects (distinct shapes: {distinct_shapes}, text: {with_text})")
    cells = rng.sample(range(9), n + (1 if with_text else 0))
    shapes: list[str] = []
    while len(shapes) < n:
        s = _pick_shape(rng, shapes)
        if not (distinct_shapes and s in shapes):
            shapes.append(s)
    objects = [Obj(s, _pick_color(rng, s), rng.choice(SIZES), c) for s, c in zip(shapes, cells)]
    grey = rng.randint(25, 80)
    background = (grey + rng.randint(-6, 6), grey + rng.randint(-6, 6), grey + rng.randint(-6, 6))
    return Scene(
        objects=objects,
        text=rng.choice(WORDS) if with_text else None,
        text_cell=cells[-1] if with_text else None,
        background=background,
        seed=rng.getrandbits(32),
    )


# ---------------------------------------------------------------- geometry and rendering


def _centers(scene: Scene) -> list[tuple[float, float, float]]:
    """(cx, cy, r) of each object in unit coordinates; the jitter keeps objects inside their cell."""
    jit = random.Random(scene.seed)
    out = []
    for o in scene.objects:
        r = RADIUS[o.size] / 3
        slack = max(0.0, 1 / 6 - r - 0.01)
        cx = (o.cell % 3 + 0.5) / 3 + jit.uniform(-slack, slack)
        cy = (o.cell // 3 + 0.5) / 3 + jit.uniform(-slack, slack)
        out.append((cx, cy, r))
    return out


def object_boxes(scene: Scene) -> list[tuple[float, float, float, float]]:
    """Normalised [x1, y1, x2, y2] box of each object, as in LLaVA's Visual Genome region data."""
    return [(cx - r, cy - r, cx + r, cy + r) for cx, cy, r in _centers(scene)]


def _polygon(shape: str, cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    def ring(n: int, radius: float, phase: float) -> list[tuple[float, float]]:
        return [
            (cx + radius * np.cos(phase + 2 * np.pi * k / n), cy + radius * np.sin(phase + 2 * np.pi * k / n))
            for k in range(n)
        ]

    if shape == "triangle":
        return [(cx, cy - r), (cx + r, cy + 0.8 * r), (cx - r, cy + 0.8 * r)]
    if shape == "diamond":  # narrower than a square so the two never look alike
        return [(cx, cy - r), (cx + 0.62 * r, cy), (cx, cy + r), (cx - 0.62 * r, cy)]
    if shape == "hexagon":
        return ring(6, r, 0.0)
    if shape == "star":
        outer, inner = ring(5, r, -np.pi / 2), ring(5, 0.42 * r, -np.pi / 2 + np.pi / 5)
        return [p for pair in zip(outer, inner) for p in pair]
    if shape == "cross":
        w = 0.34 * r
        return [
            (cx - w, cy - r), (cx + w, cy - r), (cx + w, cy - w), (cx + r, cy - w), (cx + r, cy + w),
            (cx + w, cy + w), (cx + w, cy + r), (cx - w, cy + r), (cx - w, cy + w), (cx - r, cy + w),
            (cx - r, cy - w), (cx - w, cy - w),
        ]
    raise ValueError(shape)


def _draw(d: ImageDraw.ImageDraw, shape: str, cx: float, cy: float, r: float, fill: tuple[int, ...]) -> None:
    if shape == "circle":
        d.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill)
    elif shape == "square":
        s = 0.85 * r
        d.rectangle((cx - s, cy - s, cx + s, cy + s), fill=fill)
    elif shape == "heart":
        lobe, top = 0.5 * r, cy - 0.35 * r  # two round lobes over a downward triangle
        for x in (cx - 0.48 * r, cx + 0.48 * r):
            d.ellipse((x - lobe, top - lobe, x + lobe, top + lobe), fill=fill)
        d.polygon([(cx - 0.97 * r, top + 0.13 * r), (cx + 0.97 * r, top + 0.13 * r), (cx, cy + r)], fill=fill)
    else:
        d.polygon(_polygon(shape, cx, cy, r), fill=fill)


@lru_cache(maxsize=64)
def _font(px: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=px)


def render(scene: Scene, size: int = 96) -> Image.Image:
    """Draw the scene (supersampled, then downscaled for clean edges) with slight pixel noise."""
    big = size * SUPERSAMPLE
    img = Image.new("RGB", (big, big), scene.background)
    draw = ImageDraw.Draw(img)
    for o, (cx, cy, r) in zip(scene.objects, _centers(scene)):
        _draw(draw, o.shape, cx * big, cy * big, r * big, COLORS[o.color])
    if scene.text and scene.text_cell is not None:
        cell = big / 3
        px = int(cell * 0.42)
        while px > 6 and draw.textlength(scene.text, font=_font(px)) > 0.9 * cell:
            px -= 2
        x = (scene.text_cell % 3 + 0.5) * cell
        y = (scene.text_cell // 3 + 0.5) * cell
        draw.text((x, y), scene.text, fill=(235, 235, 235), font=_font(px), anchor="mm")
    img = img.reduce(SUPERSAMPLE)  # box filter: anti-aliased edges, and much faster than LANCZOS
    noise = np.random.default_rng(scene.seed).integers(-6, 7, (size, size, 3), dtype=np.int16)
    arr = np.clip(np.asarray(img, dtype=np.int16) + noise, 0, 255).astype(np.uint8)
    return Image.fromarray(arr, "RGB")


# ---------------------------------------------------------------- language about a scene


def _reading_order(scene: Scene) -> list[Obj]:
    return sorted(scene.objects, key=lambda o: o.cell)


def _join(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def caption(scene: Scene) -> str:
    """Short lower-case caption in the style of CC3M, e.g. 'a large red circle on the left.'"""
    parts = [f"a {o.size} {o.color} {o.shape} {CELL_PHRASES[o.cell]}" for o in _reading_order(scene)]
    if scene.text and scene.text_cell is not None:
        parts.append(f'the word "{scene.text}" {CELL_PHRASES[scene.text_cell]}')
    return _join(parts) + "."


def describe(scene: Scene) -> str:
    """Several-sentence description, the answer style of LLaVA's detailed-description data."""
    n = len(scene.objects)
    noun = "object" if n == 1 else "objects"
    lines = [f"The image shows {NUMBERS[n]} {noun} on a dark grey background."]
    for o in _reading_order(scene):
        lines.append(f"There is a {o.size} {o.color} {o.shape} {CELL_PHRASES[o.cell]}.")
    if scene.text and scene.text_cell is not None:
        lines.append(f'The word "{scene.text}" is written {CELL_PHRASES[scene.text_cell]}.')
    return " ".join(lines)


class QA(tuple[str, str]):
    """A (question, short answer) pair that also carries a full-sentence answer and its kind."""

    full: str
    kind: str

    def __new__(cls, question: str, answer: str, full: str, kind: str) -> Self:
        self = super().__new__(cls, (question, answer))
        self.full, self.kind = full, kind
        return self

    @property
    def question(self) -> str:
        return self[0]

    @property
    def answer(self) -> str:
        return self[1]


def unique_by(scene: Scene, key: str) -> list[Obj]:
    """Objects whose ``key`` attribute (shape, color...) no other object shares: unambiguous referents."""
    values = [getattr(o, key) for o in scene.objects]
    return [o for o in scene.objects if values.count(getattr(o, key)) == 1]


def existence_question(scene: Scene, rng: random.Random, present: bool | None = None) -> QA:
    if present is None:
        present = rng.random() < 0.5
    absent = [s for s in SHAPES if s not in scene.shapes]
    shape = rng.choice(sorted(scene.shapes) if present or not absent else absent)
    return _existence_qa(scene, shape)


def _existence_qa(scene: Scene, shape: str) -> QA:
    yes = shape in scene.shapes
    full = f"Yes, there is a {shape} in the image." if yes else f"No, there is no {shape} in the image."
    return QA(f"Is there a {shape} in the image?", "Yes" if yes else "No", full, "existence")


class ExistenceProbes:
    """Yes/no object probes whose answer cannot be guessed from the shape's name.

    Common shapes are present more often, so probes that ask about a present shape and a uniformly
    drawn absent one teach "circle -> yes, hexagon -> no" (a circle probe was "yes" 70% of the time).
    That prior scored 0.6 on toy POPE while the image went unused. As VQAv2 balances its questions
    with complementary images, each absent shape is the one whose "no" answers lag its "yes" answers
    most, so every shape is answered "yes" and "no" equally often over the set.
    """

    def __init__(self) -> None:
        self.balance: dict[str, int] = dict.fromkeys(SHAPES, 0)  # yes minus no, per shape

    def __call__(self, scene: Scene, rng: random.Random, k: int) -> list[QA]:
        """``k`` probes of distinct shapes, each about a present shape or an absent one by a fair coin.

        The answers within one record are drawn one by one (not k/2 of each), so a record's last
        answer cannot be worked out from its earlier ones. The coin leans 60:40 toward whichever
        answer lags over the whole set, which keeps "yes" and "no" even without making any one
        answer predictable.
        """
        present_pool = sorted(scene.shapes)
        rng.shuffle(present_pool)
        absent_pool = [s for s in SHAPES if s not in scene.shapes]
        rng.shuffle(absent_pool)  # ties go to a random shape
        absent_pool.sort(key=lambda s: -self.balance[s])
        asked: list[str] = []
        for _ in range(k):
            lag = sum(self.balance.values())  # yes minus no over every shape so far
            p_yes = 0.5 if lag == 0 else (0.4 if lag > 0 else 0.6)
            pool = present_pool if rng.random() < p_yes else absent_pool
            if not pool:  # out of present shapes: stop rather than ask the other way, keeping yes and no even
                break
            shape = pool.pop(0)
            self.balance[shape] += 1 if shape in scene.shapes else -1
            asked.append(shape)
        return [_existence_qa(scene, shape) for shape in asked]


def color_question(scene: Scene, rng: random.Random) -> QA | None:
    cands = unique_by(scene, "shape")
    if not cands:
        return None
    o = rng.choice(cands)
    return QA(f"What color is the {o.shape}?", o.color.capitalize(), f"The {o.shape} is {o.color}.", "color")


def count_question(scene: Scene, rng: random.Random | None = None) -> QA:
    n = len(scene.objects)
    full = "There is one object in the image." if n == 1 else f"There are {NUMBERS[n]} objects in the image."
    return QA("How many objects are there?", NUMBERS[n].capitalize(), full, "count")


def position_question(scene: Scene, rng: random.Random) -> QA | None:
    cands = [o for o in scene.objects if sum(p.name == o.name for p in scene.objects) == 1]
    if not cands:
        return None
    o = rng.choice(cands)
    full = f"The {o.name} is {CELL_PHRASES[o.cell]}."
    return QA(f"Where is the {o.name}?", CELL_NAMES[o.cell].capitalize(), full, "position")


def shape_question(scene: Scene, rng: random.Random) -> QA | None:
    cands = unique_by(scene, "color")
    if not cands:
        return None
    o = rng.choice(cands)
    full = f"The {o.color} object is a {o.shape}."
    return QA(f"What shape is the {o.color} object?", o.shape.capitalize(), full, "shape")


def size_question(scene: Scene, rng: random.Random) -> QA | None:
    cands = unique_by(scene, "shape")
    if not cands:
        return None
    o = rng.choice(cands)
    return QA(f"Is the {o.shape} large or small?", o.size.capitalize(), f"The {o.shape} is {o.size}.", "size")


def text_question(scene: Scene, rng: random.Random | None = None) -> QA | None:
    if not scene.text:
        return None
    full = f'The word "{scene.text}" is written in the image.'
    return QA("What word is written in the image?", scene.text, full, "text")


GENERATORS = (
    existence_question, color_question, count_question, position_question, shape_question, size_question,
    text_question,
)


def questions(scene: Scene, rng: random.Random) -> list[QA]:
    """One question of every kind that applies to the scene, in a random order."""
    out = [qa for gen in GENERATORS if (qa := gen(scene, rng)) is not None]
    rng.shuffle(out)
    return out
