"""Relevancy maps: where a cell looks when it gives the first token of its answer.

Method: Chefer, Gur and Wolf (2021), "Generic Attention-model Explainability for Interpreting
Bi-Modal and Encoder-Decoder Transformers", self-attention rule. With y the logit of the first
answer token (the greedy one) at the last prompt position, and A_l the attention probabilities
of LM layer l (eager attention, so they are tensors in the graph):

    R = I;  for each layer l:  R <- R + mean_heads((dy/dA_l * A_l)^+) @ R

The last row of R over the image-token positions, reshaped to the tower's patch grid, is the
map. Only the language model's attention is traced: the map says which image tokens the answer
draws on, not what inside the tower made them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from llava_gemma.errors import UserError

# Shown when the config has no report.relevancy_examples: two POPE questions (a "yes" and a "no"
# in the official files) and one MMVP pair (the same question about two images).
DEFAULT_EXAMPLES = ({"benchmark": "pope", "id": "random-1"}, {"benchmark": "pope", "id": "random-2"},
                    {"benchmark": "mmvp", "id": "1"}, {"benchmark": "mmvp", "id": "2"})


@dataclass
class RelevancyMap:
    benchmark: str
    qid: str
    prompt: str
    image_path: str
    answer_token: str
    grid: tuple[int, int]
    relevancy: list[list[float]]  # grid rows x grid columns, unnormalised


def accumulate_relevancy(attentions: tuple[torch.Tensor, ...], gradients: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """Chefer et al.'s rule over layers for one sequence: (seq, seq) relevancy matrix.

    ``attentions[l]`` and ``gradients[l]`` are (batch=1, heads, seq, seq).
    """
    seq = attentions[0].shape[-1]
    relevancy = torch.eye(seq, dtype=torch.float64)
    for attn, grad in zip(attentions, gradients, strict=True):
        cam = (grad[0].detach().double() * attn[0].detach().double()).clamp(min=0).mean(dim=0)
        relevancy = relevancy + cam @ relevancy
    return relevancy


def prompt_inputs(processor, prompt: str, image) -> dict:
    from llava_gemma.eval.benchmarks.base import Question
    from llava_gemma.eval.generate import chat_prompt

    text = chat_prompt(processor, Question(qid="", image_path=Path("image"), prompt=prompt, target=None))
    return processor(text=[text], images=[image], return_tensors="pt")


def image_relevancy(model, inputs: dict, grid: tuple[int, int]) -> tuple[torch.Tensor, int]:
    """The (rows, cols) relevancy of the image patches for the greedy first answer token, and that token."""
    outputs = model(**inputs, output_attentions=True, use_cache=False)
    logits = outputs.logits[0, -1]
    token = int(logits.argmax())
    attentions = tuple(outputs.attentions)
    if not attentions or attentions[0] is None:
        raise RuntimeError("the model returned no attention maps; load it with attn_implementation='eager'.")
    gradients = torch.autograd.grad(logits[token], attentions)
    relevancy = accumulate_relevancy(attentions, gradients)
    image_positions = (inputs["input_ids"][0] == model.config.image_token_index).nonzero().flatten()
    if len(image_positions) != grid[0] * grid[1]:
        raise RuntimeError(f"{len(image_positions)} image tokens do not fill a {grid[0]}x{grid[1]} patch grid.")
    return relevancy[-1, image_positions].reshape(grid).float(), token


def patch_grid(processor) -> tuple[int, int]:
    from llava_gemma.model.assemble import image_side

    height, width = image_side(processor.image_processor)
    return height // processor.patch_size, width // processor.patch_size


def load_eager(model_dir: Path):
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    model = LlavaForConditionalGeneration.from_pretrained(model_dir, attn_implementation="eager").eval()
    return model, AutoProcessor.from_pretrained(model_dir)


def find_questions(examples: list[dict], data_root: Path) -> list:
    """The benchmark questions the examples name, in the examples' order."""
    from llava_gemma.eval.benchmarks import get_benchmark

    found = []
    by_benchmark: dict[str, dict] = {}
    for ex in examples:
        bench = ex["benchmark"]
        if bench not in by_benchmark:
            questions = get_benchmark(bench).load(data_root / bench)
            by_benchmark[bench] = {q.qid: q for q in questions}
        question = by_benchmark[bench].get(str(ex["id"]))
        if question is None or question.image_path is None:
            some = ", ".join(list(by_benchmark[bench])[:5])
            raise UserError(f"report.relevancy_examples: {bench} has no image question with id {ex['id']!r} "
                            f"(ids look like: {some}); pick ids from results/cells/<cell>/eval/{bench}/samples.jsonl.")
        found.append(question)
    return found


def compute_cell_relevancy(model_dir: Path, examples: list[dict], data_root: Path) -> list[RelevancyMap]:
    from llava_gemma.model.images import load_padded

    model, processor = load_eager(model_dir)
    grid = patch_grid(processor)
    maps = []
    for ex, question in zip(examples, find_questions(examples, data_root), strict=True):
        image = load_padded(question.image_path, processor.image_processor)
        relevancy, token = image_relevancy(model, prompt_inputs(processor, question.prompt, image), grid)
        maps.append(RelevancyMap(benchmark=ex["benchmark"], qid=question.qid, prompt=question.prompt,
                                 image_path=str(question.image_path), answer_token=processor.tokenizer.decode([token]),
                                 grid=grid, relevancy=relevancy.tolist()))
    return maps


def maps_to_json(maps: list[RelevancyMap]) -> list[dict]:
    return [asdict(m) for m in maps]
