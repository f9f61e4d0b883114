"""The answer formats the benchmarks ask, taught to the toy LMs before they meet an image.

Real Gemma-it arrives at LLaVA able to answer a lettered multiple-choice question with its
letter and a yes/no question about an attribute with "Yes" or "No"; a toy LM that only learned
existence look-ups answered lettered questions with "No" or "Square" and MME's attribute
questions with a shape name (issue 27), and stage 2's LM rate of 1e-4 is too low to teach a
format that is a small share of the mix. These examples are chat turns whose caption stands where
``<image>`` will stand, as in ``toy/lookup.py``:

- lettered multiple choice: 2-4 options (any attribute a caption states), "A. ..." lines, the
  LLaVA-1.5 letter instruction, the letter alone as the answer; sometimes a "Context:" line first;
- attribute yes/no: count, colour, position, size and the written word, "Yes" and "No" equally
  often, so the caption must be read;
- one-word answers about the same attributes.

The wording is the toy world's own (``toy/scenes.py`` and the mix's instructions); the toy
benchmark files are never read. ``lookup.format_accuracy`` scores held-out captions only.
"""

from __future__ import annotations

import random

from . import scenes as sc
from .scenes import CELL_NAMES, CELL_PHRASES, COLORS, NUMBERS, SHAPES, SIZES, WORDS, Scene

SHORT_ANSWER = "\nAnswer the question using a single word or phrase."
LETTER_ANSWER = "\nAnswer with the option's letter from the given choices directly."
LETTERS = "ABCD"

Item = tuple[str, str, tuple[str, ...]]  # question, right answer, the answer vocabulary it is drawn from


def _choice_items(scene: Scene, rng: random.Random) -> list[Item]:
    """Questions with a one-word answer the caption states, each with the vocabulary of its kind."""
    items: list[Item] = [("How many objects are there?", NUMBERS[len(scene.objects)], NUMBERS[1:5])]
    for o in sc.unique_by(scene, "shape"):
        items += [(f"What color is the {o.shape}?", o.color, tuple(COLORS)),
                  (f"Is the {o.shape} large or small?", o.size, SIZES),
                  (f"Where is the {o.shape}?", CELL_NAMES[o.cell], CELL_NAMES)]
        if o.cell % 3 != 1:
            items.append((f"Is the {o.shape} on the left or on the right?",
                          "left" if o.cell % 3 == 0 else "right", ("left", "right")))
    for o in sc.unique_by(scene, "color"):
        items.append((f"What shape is the {o.color} object?", o.shape, SHAPES))
    if len(scene.objects) == 1:
        items.append(("Which shape is in the picture?", scene.objects[0].shape, SHAPES))
    if scene.text:
        items.append(("What word is written in the image?", scene.text, WORDS))
    shown = rng.choice(sorted(scene.shapes))  # the other options are absent shapes
    items.append(("Which of these shapes is in the image?", shown,
                  (shown, *(s for s in SHAPES if s not in scene.shapes))))
    return items


def _case(word: str, upper: bool) -> str:
    """Options come capitalised (A-OKVQA, MMVP) or as written (ScienceQA); words on signs stay upper-case."""
    return word.capitalize() if upper and not word.isupper() else word


def _lettered_options(answer: str, vocabulary: list[str], rng: random.Random, max_options: int = 4
                      ) -> tuple[str, str]:
    """(the option lines "A. ..." with ``answer`` among 1 to ``max_options`` - 1 wrong ones, its letter)."""
    wrong = [w for w in vocabulary if w != answer]
    options = [answer, *rng.sample(wrong, min(len(wrong), rng.randint(1, max_options - 1)))]
    rng.shuffle(options)
    upper = rng.random() < 0.5
    return "\n".join(f"{LETTERS[i]}. {_case(o, upper)}" for i, o in enumerate(options)), LETTERS[options.index(answer)]


def multiple_choice(scene: Scene, rng: random.Random, max_options: int = 4, pick: bool = False) -> tuple[str, str]:
    """A lettered question about the scene and its letter; ``pick`` asks only which listed shape is shown."""
    items = _choice_items(scene, rng)
    question, answer, vocabulary = items[-1] if pick else rng.choice(items)
    lines, letter = _lettered_options(answer, vocabulary, rng, max_options)
    context = f"Context: {rng.choice(sc.FACTS)[1]}\n" if rng.random() < 0.25 else ""
    return f"{context}{question}\n{lines}{LETTER_ANSWER}", letter


def _verify_items(scene: Scene, rng: random.Random, yes: bool) -> list[str]:
    """Yes/no questions about the scene's attributes whose answer is ``yes``."""
    n = len(scene.objects)
    count = n if yes else rng.choice([k for k in range(1, 5) if k != n])
    out = [rng.choice(("Are there {} objects in the image?", "Is the number of objects {}?",
                       "Does the image show {} objects?")).format(NUMBERS[count])]
    for o in sc.unique_by(scene, "shape"):
        color = o.color if yes else rng.choice([c for c in COLORS if c != o.color])
        cell = o.cell if yes else rng.choice([c for c in range(9) if c != o.cell])
        size = o.size if yes else next(s for s in SIZES if s != o.size)
        out += [rng.choice(("Is the {} {}?", "Is the color of the {} {}?")).format(o.shape, color),
                f"Is the {o.shape} {CELL_PHRASES[cell]}?", f"Is the {o.shape} {size}?"]
    for o in sc.unique_by(scene, "color"):
        shape = o.shape if yes else rng.choice([s for s in SHAPES if s != o.shape])
        out.append(f"Is the {o.color} object a {shape}?")
    if scene.text:
        word = scene.text if yes else rng.choice([w for w in WORDS if w != scene.text])
        out.append(rng.choice(('Is the word "{}" written in the image?', 'Does the image say "{}"?')).format(word))
    return out


def verify_question(scene: Scene, rng: random.Random) -> tuple[str, str]:
    """An attribute yes/no question, "Yes" and "No" by a fair coin."""
    yes = rng.random() < 0.5
    return rng.choice(_verify_items(scene, rng, yes)), "Yes" if yes else "No"


def one_word(scene: Scene, rng: random.Random) -> tuple[str, str]:
    """A question answered with one word the caption states, capitalised as the mix's answers."""
    question, answer, _ = rng.choice(_choice_items(scene, rng))
    return question, answer if answer.isupper() else answer.capitalize()


KINDS = {"choice": multiple_choice, "verify": verify_question, "word": one_word}


def letter_of(scene: Scene, rng: random.Random) -> tuple[str, str]:
    """Which letter an option named in the question has: the option-to-letter step alone, no caption needed.

    A letter comes before its option's text, so a model must carry each letter forward to its option
    and find the option by content; the full question adds the caption match on top of this."""
    _, answer, vocabulary = rng.choice(_choice_items(scene, rng))
    lines, letter = _lettered_options(answer, vocabulary, rng)
    return f"Which option is {answer}?\n{lines}{LETTER_ANSWER}", letter


def option_text(scene: Scene, rng: random.Random) -> tuple[str, str]:
    """A lettered question answered with the right option's text instead of its letter.

    The first rung of the curriculum: finding the option the caption supports is learned while the
    answer is the option's own word; the letter, which stands before that word, comes after."""
    question, letter = multiple_choice(scene, rng)
    text = next(line[3:] for line in question.split("\n") if line.startswith(f"{letter}. "))
    return question, text


def size_or_side(scene: Scene, rng: random.Random) -> tuple[str, str]:
    """A two-option lettered question about an object's size or side, the kinds a toy LM reading a
    perfect caption still answered at chance (tools/probe_lm_ceiling.py)."""
    items = [it for it in _choice_items(scene, rng) if it[2] in (SIZES, ("left", "right"))]
    if not items:  # no shape is unique in the scene
        return multiple_choice(scene, rng, max_options=2)
    question, answer, vocabulary = rng.choice(items)
    lines, letter = _lettered_options(answer, vocabulary, rng, max_options=2)
    return f"{question}\n{lines}{LETTER_ANSWER}", letter


# Drills for a curriculum (the lettered step alone): which listed shape is shown, two options only,
# and size or side with two options.
DRILLS = {"pick": lambda scene, rng: multiple_choice(scene, rng, max_options=2, pick=True),
          "choice2": lambda scene, rng: multiple_choice(scene, rng, max_options=2), "letter": letter_of,
          "option_text": option_text, "size_or_side": size_or_side}


def format_example(kind: str, scene: Scene, rng: random.Random) -> tuple[str, str]:
    """(question with its instruction, answer) of one of ``KINDS`` or ``DRILLS``."""
    question, answer = (KINDS | DRILLS)[kind](scene, rng)
    return (question if question.endswith(LETTER_ANSWER) else question + SHORT_ANSWER), answer
