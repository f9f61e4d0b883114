"""Batched greedy generation for benchmark questions.

Every distinct image is preprocessed once (POPE asks 18 questions of each image, MME two).
Questions are sorted by token length so a batch pads little,
left-padded (decoder-only), run with the KV cache, stopped as soon as every row has emitted
``<end_of_turn>``/EOS (both are eos ids of the checkpoint's generation config), and capped at
the benchmark's ``max_new_tokens``. Answers come back in the questions' order.

The inputs equal what ``processor(text=..., images=...)`` returns for the same batch (a test
checks it), so answers do not depend on this bookkeeping.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence

import torch
from PIL import Image

from llava_gemma.eval.benchmarks.base import Question
from llava_gemma.eval.gaudi import StaticShapes
from llava_gemma.model.images import load_padded, mean_colour


def chat_prompt(processor, question: Question) -> str:
    content = ([{"type": "image"}] if question.image_path else []) + [{"type": "text", "text": question.prompt}]
    return processor.apply_chat_template([{"role": "user", "content": content}], add_generation_prompt=True,
                                         tokenize=False)


BLIND_SIDE = 336  # any square gives the same pixels: a uniform image stays uniform when resized and cropped


def question_image(question: Question, image_processor, blind: bool) -> Image.Image:
    """The question's image, padded to a square; for the blind-image control, a blank square of
    the tower's mean colour instead, so the model gets the same number of image tokens but no content.
    The blind control never opens the question's file: an undecodable image fails no blind question."""
    if blind:
        return Image.new("RGB", (BLIND_SIDE, BLIND_SIDE), mean_colour(image_processor))
    return load_padded(question.image_path, image_processor)


class PixelCache:
    """Preprocessed pixels per image file, computed on first use and kept while they fit in
    ``max_bytes`` (least recently used first out): a full-size VQAv2 test-dev would not fit.
    Thread-safe: the next batch's images are decoded on a worker thread (eval/answers.py)."""

    def __init__(self, image_processor, blind: bool, max_bytes: int = 1 << 30) -> None:
        self.image_processor = image_processor
        self.blind = blind
        self.max_bytes = max_bytes
        self._pixels: OrderedDict[str, torch.Tensor] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def __call__(self, question: Question) -> torch.Tensor:
        key = "<blank>" if self.blind else str(question.image_path)  # every blind question shares one blank
        with self._lock:
            if key in self._pixels:
                self._pixels.move_to_end(key)
                return self._pixels[key]
        image = question_image(question, self.image_processor, self.blind)  # outside the lock: the slow part
        pixels = self.image_processor(image, return_tensors="pt")["pixel_values"][0]
        with self._lock:
            if key not in self._pixels:
                self._pixels[key] = pixels
                self._bytes += pixels.nbytes
            while self._bytes > self.max_bytes and len(self._pixels) > 1:
                self._bytes -= self._pixels.popitem(last=False)[1].nbytes
        return pixels


def image_tokens(processor, pixels: torch.Tensor) -> int:
    """How many tokens ``<image>`` stands for, by LlavaProcessor's own rule for these pixels."""
    height, width = pixels.shape[-2:]
    n = (height // processor.patch_size) * (width // processor.patch_size) + processor.num_additional_image_tokens
    return n - 1 if processor.vision_feature_select_strategy == "default" else n


def expand_image(processor, prompt: str, pixels: torch.Tensor) -> str:
    """The prompt with ``<image>`` repeated once per image token, as the processor expands it."""
    return prompt.replace(processor.image_token, processor.image_token * image_tokens(processor, pixels))


def _on_device(inputs: dict[str, torch.Tensor], model) -> dict[str, torch.Tensor]:
    """Inputs on the model's device; pixels in its dtype (bf16 on accelerators)."""
    return {k: v.to(model.device, dtype=model.dtype if k == "pixel_values" else None) for k, v in inputs.items()}


def _batches(order: Sequence[int], size: int) -> Iterator[Sequence[int]]:
    for start in range(0, len(order), size):
        yield order[start:start + size]


def batch_inputs(processor, questions: Sequence[Question], prompts: Sequence[str], rows: Sequence[int],
                 pixels: PixelCache) -> dict[str, torch.Tensor]:
    """Left-padded ``input_ids``/``attention_mask`` (and ``pixel_values`` if the rows have images)."""
    texts = [prompts[i] for i in rows]
    out: dict[str, torch.Tensor] = {}
    if questions[rows[0]].image_path:
        out["pixel_values"] = torch.stack([pixels(questions[i]) for i in rows])
        texts = [expand_image(processor, t, out["pixel_values"][0]) for t in texts]
    # Tokenized per batch, not all at once: expanded prompts of a large benchmark would not fit in memory.
    out.update(processor.tokenizer(texts, padding=True, padding_side="left", return_tensors="pt"))
    return out


def question_order(processor, questions: Sequence[Question], prompts: Sequence[str]) -> list[int]:
    """Image questions first, then text-only ones, each by prompt length, so a batch pads little.
    Sorting by token length before expansion is the same order: <image> adds the same count to every row."""
    lengths = [len(ids) for ids in processor.tokenizer(list(prompts))["input_ids"]]
    return sorted(range(len(questions)), key=lambda i: (questions[i].image_path is None, lengths[i]))


@torch.inference_mode()
def answer_rows(model, processor, questions: Sequence[Question], prompts: Sequence[str], rows: Sequence[int],
                pixels: PixelCache, max_new_tokens: int, static: StaticShapes | None = None) -> dict[int, str]:
    """Greedy answers of one batch, by question index. Image and text-only questions never share a
    generate call: the model pairs images with rows in order. ``static``: the HPU's static shapes."""
    answers: dict[int, str] = {}
    for has_image in (True, False):
        part = [i for i in rows if (questions[i].image_path is not None) == has_image]
        if not part:
            continue
        inputs = batch_inputs(processor, questions, prompts, part, pixels)
        if static is not None:
            inputs = static.pad(inputs, processor.tokenizer.pad_token_id)
        inputs = _on_device(inputs, model)
        out = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False,
                             **(static.generate_kwargs if static is not None else {}))
        new_tokens = out[:, inputs["input_ids"].shape[1]:]
        for i, text in zip(part, processor.batch_decode(new_tokens, skip_special_tokens=True), strict=True):
            answers[i] = text.strip()
    return answers


def generate_answers(model, processor, questions: Sequence[Question], *, batch_size: int,
                     max_new_tokens: int, blind: bool = False) -> list[str]:
    pixels = PixelCache(processor.image_processor, blind)
    prompts = [chat_prompt(processor, q) for q in questions]
    answers: list[str] = [""] * len(questions)
    for batch in _batches(question_order(processor, questions, prompts), batch_size):
        for i, text in answer_rows(model, processor, questions, prompts, batch, pixels, max_new_tokens).items():
            answers[i] = text
    return answers
