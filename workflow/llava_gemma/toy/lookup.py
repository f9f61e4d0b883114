"""In-context look-up for the toy LMs: questions answered only by an earlier caption.

Real Gemma arrives at LLaVA able to answer a question from something said earlier in its
context; LLaVA's connector then only has to make image features look like what the LM already
reads. The toy LMs must arrive with the same skill, or no toy cell can learn to see in minutes
(measured in ../shared/research/toy-lookup.md: stuck at 0.500 without it).

A look-up example is a chat turn whose caption stands where ``<image>`` will stand in the
instruction data, followed by a question about it:

    <start_of_turn>user\\n<caption>\\nIs there a star in the image?\\nAnswer ...<end_of_turn>\\n
    <start_of_turn>model\\nNo<end_of_turn>

Only the answer carries a loss. Existence questions are balanced per shape (every shape is
answered "Yes" and "No" equally often), so the question alone gives nothing away and the
caption must be read. Captions to be repeated ("describe") and attribute questions (colour,
shape) come in the same batches. One caption in ten is held out of pretraining and scores it.
"""

from __future__ import annotations

import random
import zlib
from dataclasses import dataclass

import torch

from llava_gemma.model.chat import END_OF_TURN, IMAGE_TOKEN, turn_prefix

from . import formats
from . import scenes as sc
from .slots import N_SLOTS, embed_with_slots
from .world import PRETRAIN_PROMPTS, SHORT_ANSWER

IGNORE_INDEX = -100


@dataclass(frozen=True)
class LookupExample:
    prompt: str  # everything before the answer (bos excluded)
    answer: str  # "Yes" / "No" / a colour / a shape / the caption, supervised with the turn's end
    caption: str  # the context the answer is read from
    # Set for a slot example (``toy/slots.py``): the prompt holds IMAGE_TOKEN where the caption would,
    # and the scene's 9 cell vectors stand there instead of the caption's words.
    scene: sc.Scene | None = None


def held_out(caption: str) -> bool:
    """One caption in ten never appears in pretraining: the look-up is scored on those alone."""
    return zlib.crc32(caption.encode()) % 10 == 0


# Slot examples recolour each object with a uniform colour this often, so a shape's typical colour
# (TYPICAL_COLOR_PROB) answers a colour question far less often than reading the slot does.
FREE_COLOUR_PROB = 0.5


def _scene(rng: random.Random, heldout: bool, shape: str | None = None, present: bool = True,
           slots: bool = False) -> sc.Scene:
    """A random scene as the toy world draws them, from the training or the held-out captions,
    holding ``shape`` (or not) if one is named; for a slot example with freer colours."""
    while True:
        scene = sc.random_scene(rng)
        if slots:
            scene = sc.recolour(scene, rng, FREE_COLOUR_PROB)
        if held_out(sc.caption(scene)) == heldout and (shape is None or (shape in scene.shapes) == present):
            return scene


def existence_example(rng: random.Random, heldout: bool = False, slots: bool = False) -> LookupExample:
    """A balanced existence question: the shape is uniform, present or absent by a fair coin."""
    shape, present = rng.choice(sc.SHAPES), rng.random() < 0.5
    scene = _scene(rng, heldout, shape, present, slots)
    answer = "Yes" if present else "No"
    return chat_example(scene, f"Is there a {shape} in the image?{SHORT_ANSWER}", answer, slots)


def attribute_example(rng: random.Random, slots: bool = False) -> LookupExample:
    """A colour or shape question about a unique object of a random scene (answer in the caption)."""
    scene = _scene(rng, heldout=False, slots=slots)
    qa = sc.color_question(scene, rng) if rng.random() < 0.5 else sc.shape_question(scene, rng)
    if qa is None:
        return existence_example(rng, slots=slots)
    return chat_example(scene, qa.question + SHORT_ANSWER, qa.answer, slots)


def describe_example(rng: random.Random, slots: bool = False) -> LookupExample:
    """Say again what the caption says, asked as the pretraining data asks for a caption.

    Stage 1 trains the connector alone to make the frozen LM write an image's caption. An LM that
    has learned to repeat a caption from its context gives the connector the shortest route:
    make the image tokens read like the caption's words, the same words look-up questions match.
    """
    scene = _scene(rng, heldout=False, slots=slots)
    caption, context = sc.caption(scene), _context(scene, slots)
    prompt = rng.choice(PRETRAIN_PROMPTS)
    # Both orders occur in LLaVA's pretraining records (prompt before or after <image>).
    user = f"{context}\n{prompt}" if rng.random() < 0.5 else f"{prompt}\n{context}"
    return LookupExample(f"{turn_prefix('user')}{user}{END_OF_TURN}\n{turn_prefix('model')}", caption, caption,
                         scene if slots else None)


def _context(scene: sc.Scene, slots: bool) -> str:
    """What stands where ``<image>`` will: the caption, or the placeholder of the scene's slots."""
    return IMAGE_TOKEN if slots else sc.caption(scene)


def chat_example(scene: sc.Scene, question: str, answer: str, slots: bool = False) -> LookupExample:
    """One user turn (the scene's caption, or its slots, where the image will stand, then ``question``)
    and the model turn's ``answer``."""
    return LookupExample(f"{turn_prefix('user')}{_context(scene, slots)}\n{question}{END_OF_TURN}\n"
                         f"{turn_prefix('model')}", answer, sc.caption(scene), scene if slots else None)


def format_example(rng: random.Random, kind: str, slots: bool = False) -> LookupExample:
    """A lettered, attribute yes/no or one-word question about a caption (``toy/formats.py``)."""
    scene = _scene(rng, heldout=False, slots=slots)
    question, answer = formats.format_example(kind, scene, rng)
    return chat_example(scene, question, answer, slots)


# Shares of each kind of example; existence questions take the rest (the shipped LMs' mix).
MIX = {"attribute": 0.2, "describe": 0.3}
# With the formats of toy/formats.py (lettered choice, attribute yes/no, one word) that the benchmarks
# ask (issue 27, in progress: at 2,000 steps the LMs wrote letters but chose them at chance, and the
# existence look-up fell from 0.995 to 0.81-0.91; docs/toy-study.md). tools/pretrain_toy_lms.py --formats.
FORMATS_MIX = {"attribute": 0.1, "describe": 0.2, "choice": 0.25, "verify": 0.2, "word": 0.05}
# Continuing the shipped look-up LMs (tools/pretrain_toy_lms.py --from): the lettered step is learned first
# on "which of these shapes is shown" (the drill "pick", which reuses the existence look-up) beside the
# full lettered questions. 2,500 steps of it took the shipped 2B's letters from 0.00 to 0.54 (pick 0.98,
# existence 0.99, n=200); tools/diag_toy_letters.py and docs/toy-study.md (run G) have the curves.
CONTINUE_MIX = {"pick": 0.2, "choice": 0.5, "verify": 0.1, "describe": 0.05}
# A kind prefixed "slot_" (e.g. "slot_verify") asks the same question about the scene's slots
# (toy/slots.py) instead of its caption.
SLOT_PREFIX = "slot_"


def draw_examples(rng: random.Random, n: int, mix: dict[str, float] | None = None) -> list[LookupExample]:
    out = []
    for _ in range(n):
        kind, u = "existence", rng.random()
        for name, share in (mix or MIX).items():
            if u < share:
                kind = name
                break
            u -= share
        out.append(draw_example(rng, kind))
    return out


def draw_example(rng: random.Random, kind: str) -> LookupExample:
    """One example of ``kind``: existence, attribute, describe or a kind of ``toy/formats.py``, each
    optionally ``SLOT_PREFIX``-ed."""
    slots = kind.startswith(SLOT_PREFIX)
    kind = kind.removeprefix(SLOT_PREFIX)
    if kind == "existence":
        return existence_example(rng, slots=slots)
    if kind == "attribute":
        return attribute_example(rng, slots)
    if kind == "describe":
        return describe_example(rng, slots)
    return format_example(rng, kind, slots)


def _prompt_ids(tokenizer, ex: LookupExample) -> list[int]:
    """<bos> and the prompt's ids; a slot example's one IMAGE_TOKEN becomes the 9 slot placeholders."""
    ids = [tokenizer.bos_token_id, *tokenizer.encode(ex.prompt, add_special_tokens=False)]
    if ex.scene is None:
        return ids
    at = ids.index(tokenizer.convert_tokens_to_ids(IMAGE_TOKEN))
    return ids[:at] + ids[at:at + 1] * N_SLOTS + ids[at + 1:]


def encode_examples(tokenizer, examples: list[LookupExample], end_token: str) -> dict:
    """Right-padded ids with labels on the answer and its end token only (see ``answer_loss``), and
    each example's scene for its slots ("scenes", None for a caption example; ``model_inputs``)."""
    rows, labels = [], []
    for ex in examples:
        prompt = _prompt_ids(tokenizer, ex)
        answer = tokenizer.encode(ex.answer + end_token, add_special_tokens=False)
        rows.append(prompt + answer)
        labels.append([IGNORE_INDEX] * len(prompt) + answer)
    width = max(map(len, rows))
    pad = tokenizer.pad_token_id
    return {
        "input_ids": torch.tensor([r + [pad] * (width - len(r)) for r in rows]),
        "attention_mask": torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows]),
        "labels": torch.tensor([r + [IGNORE_INDEX] * (width - len(r)) for r in labels]),
        "scenes": [ex.scene for ex in examples],
    }


def model_inputs(model, tokenizer, encoded: dict) -> dict[str, torch.Tensor]:
    """The forward's keyword arguments: ids, or embeddings with the slots in place if any example has them."""
    if all(scene is None for scene in encoded["scenes"]):
        return {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}
    embeds = embed_with_slots(model, tokenizer, encoded["input_ids"], encoded["scenes"],
                              tokenizer.convert_tokens_to_ids(IMAGE_TOKEN))
    return {"inputs_embeds": embeds, "attention_mask": encoded["attention_mask"]}


@torch.no_grad()
def existence_accuracy(model, tokenizer, n: int = 400, seed: int = 12345) -> float:
    """Share of balanced existence questions about held-out captions answered right (Yes vs No logit)."""
    rng = random.Random(seed)
    examples = [existence_example(rng, heldout=True) for _ in range(n)]
    yes, no = (tokenizer.encode(w, add_special_tokens=False)[0] for w in ("Yes", "No"))
    was_training = model.training
    model.eval()
    right = 0
    for start in range(0, n, 100):
        chunk = examples[start:start + 100]
        prompts = [[tokenizer.bos_token_id, *tokenizer.encode(e.prompt, add_special_tokens=False)] for e in chunk]
        width = max(map(len, prompts))
        pad = tokenizer.pad_token_id
        ids = torch.tensor([p + [pad] * (width - len(p)) for p in prompts])
        mask = torch.tensor([[1] * len(p) + [0] * (width - len(p)) for p in prompts])
        logits = model(input_ids=ids, attention_mask=mask).logits
        last = torch.tensor([len(p) - 1 for p in prompts])
        at = logits[torch.arange(len(chunk)), last]
        says_yes = at[:, yes] > at[:, no]
        right += sum(int(bool(s) == (e.answer == "Yes")) for s, e in zip(says_yes, chunk))
    model.train(was_training)
    return right / n


def answer_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy per example (mean over its labelled tokens), then the mean over examples.

    A repeated caption has twenty labelled tokens and a "Yes" one; a plain token mean would let
    captions outweigh look-up answers twenty to one.
    """
    shifted, targets = logits[:, :-1].float(), labels[:, 1:]
    per_token = torch.nn.functional.cross_entropy(shifted.transpose(1, 2), targets, ignore_index=IGNORE_INDEX,
                                                  reduction="none")
    counts = (targets != IGNORE_INDEX).sum(1).clamp(min=1)
    return (per_token.sum(1) / counts).mean()


@torch.no_grad()
def format_accuracy(model, tokenizer, kind: str, n: int = 300, seed: int = 54321) -> float:
    """Greedy answers to ``kind`` questions (``toy/formats.py``) about held-out captions: the share exactly right."""
    rng = random.Random(seed)
    end = tokenizer.convert_tokens_to_ids(END_OF_TURN)
    was_training = model.training
    model.eval()
    right = 0
    for _ in range(n):
        scene = _scene(rng, heldout=True)
        ex = chat_example(scene, *formats.format_example(kind, scene, rng))
        ids = torch.tensor([[tokenizer.bos_token_id, *tokenizer.encode(ex.prompt, add_special_tokens=False)]])
        out = model.generate(ids, max_new_tokens=6, do_sample=False, eos_token_id=end, pad_token_id=end)
        text = tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True).strip()
        right += text == ex.answer
    model.train(was_training)
    return right / n


@torch.no_grad()
def first_token_hits(model, tokenizer, kind: str, n: int = 300, seed: int = 54321) -> list[tuple[str, bool]]:
    """(question, whether the answer's first token is the argmax) for ``n`` held-out ``kind`` questions
    (``existence`` or a kind of ``toy/formats.py``, either ``SLOT_PREFIX``-ed), in batches. Letters and
    "Yes"/"No" are one token each, so for those formats this is the greedy answer's first token, at a
    fraction of ``format_accuracy``'s cost."""
    rng = random.Random(seed)
    slots = kind.startswith(SLOT_PREFIX)
    kind = kind.removeprefix(SLOT_PREFIX)
    examples, targets, questions = [], [], []
    for _ in range(n):
        if kind == "existence":
            ex = existence_example(rng, heldout=True, slots=slots)
        else:
            scene = _scene(rng, heldout=True, slots=slots)
            ex = chat_example(scene, *formats.format_example(kind, scene, rng), slots)
        questions.append(ex.prompt.split("\n", 2)[2])
        examples.append(ex)
        targets.append(tokenizer.encode(ex.answer, add_special_tokens=False)[0])
    best = next_token_argmax(model, tokenizer, examples)
    return list(zip(questions, (b == t for b, t in zip(best, targets))))


@torch.no_grad()
def next_token_argmax(model, tokenizer, examples: list[LookupExample], batch: int = 100) -> list[int]:
    """The most likely token after each example's prompt (the first answer token), in right-padded batches."""
    rows = [_prompt_ids(tokenizer, ex) for ex in examples]
    was_training = model.training
    model.eval()
    best: list[int] = []
    for start in range(0, len(rows), batch):
        chunk = rows[start:start + batch]
        width = max(map(len, chunk))
        ids = torch.tensor([r + [tokenizer.pad_token_id] * (width - len(r)) for r in chunk])
        mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in chunk])
        scenes = [ex.scene for ex in examples[start:start + batch]]
        encoded = {"input_ids": ids, "attention_mask": mask, "scenes": scenes}
        logits = model(**model_inputs(model, tokenizer, encoded)).logits
        best += logits[torch.arange(len(chunk)), torch.tensor([len(r) - 1 for r in chunk])].argmax(-1).tolist()
    model.train(was_training)
    return best


def first_token_accuracy(model, tokenizer, kind: str, n: int = 300, seed: int = 54321) -> float:
    """The share of ``first_token_hits`` that are right."""
    return sum(hit for _, hit in first_token_hits(model, tokenizer, kind, n, seed)) / n
