"""Ask one cell one question about one image, the way the benchmarks ask.

Greedy decoding that stops at ``<end_of_turn>`` or EOS (the checkpoint's generation config), the image
padded to a square with the tower's mean colour (LLaVA-1.5's ``pad`` mode, as in evaluation), and
optionally a benchmark's answer-format suffix. Only plain transformers calls on the saved folder, the
same ones README's snippet shows, so the two give the same answer.
"""

from __future__ import annotations

from pathlib import Path

from llava_gemma.errors import UserError
from llava_gemma.eval.benchmarks.base import LETTER_SUFFIX, SHORT_ANSWER_SUFFIX

# --suffix choices: the instruction the benchmarks append to a question.
SUFFIXES = {"short": SHORT_ANSWER_SUFFIX, "letter": LETTER_SUFFIX}


def question_text(question: str, suffix: str | None) -> str:
    if suffix is None:
        return question
    if suffix not in SUFFIXES:
        raise UserError(f"unknown answer suffix {suffix!r}; use one of {', '.join(SUFFIXES)}.")
    return question + SUFFIXES[suffix]


def _check_inputs(model_dir: Path, image: Path | None) -> None:
    if not (model_dir / "config.json").is_file():
        raise UserError(f"{model_dir} is not a saved cell (no config.json); give a cell's model folder, "
                        "e.g. results/cells/2b_clip_pretrain/model.")
    if image is not None and not image.is_file():
        raise UserError(f"image {image} does not exist; give the path of an image file.")


def ask(model_dir: Path, image: Path | None, question: str, *, suffix: str | None = None,
        max_new_tokens: int = 128, device: str | None = None) -> str:
    """The cell's greedy answer to ``question`` about ``image`` (None: a text-only question)."""
    import torch
    from PIL import UnidentifiedImageError

    from llava_gemma.eval.run import load_cell
    from llava_gemma.model.images import load_padded

    _check_inputs(model_dir, image)
    model, processor = load_cell(model_dir, device)
    content = ([{"type": "image"}] if image is not None else []) + [
        {"type": "text", "text": question_text(question, suffix)}]
    # tokenize=False, then the processor: in transformers 4.55 tokenize=True fails for DINOv2's image processor.
    prompt = processor.apply_chat_template([{"role": "user", "content": content}], add_generation_prompt=True,
                                           tokenize=False)
    images = None
    if image is not None:
        try:
            images = load_padded(image, processor.image_processor)
        except (UnidentifiedImageError, OSError) as err:
            raise UserError(f"image {image} cannot be read ({err}); give a JPEG or PNG file.") from None
    inputs = processor(text=prompt, images=images, return_tensors="pt").to(model.device)
    if "pixel_values" in inputs:
        inputs["pixel_values"] = inputs["pixel_values"].to(model.dtype)
    with torch.inference_mode():
        out = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
    return processor.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True).strip()

