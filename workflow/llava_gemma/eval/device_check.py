"""The smoke run's answer check: a benchmark's first questions answered on the device and on the CPU.

A model path that is wrong on one device only (a tower called with keywords it does not take, hidden
states read as logits, a layer computing another network) answers differently from the CPU, which runs
plain transformers. Both sides run in fp32 and greedy, so the answers of a correct path are equal; the
device keeps its own generation path (on Gaudi: ``LlavaForGaudiGeneration``, static shapes, HPU graphs).

Each side runs in its own process (``llava-gemma device-answers``): on Gaudi,
``adapt_transformers_to_gaudi`` rewrites transformers for the whole process, so a CPU reference in the
same process would no longer be plain transformers. ``llava-gemma compare-answers`` then fails in one
sentence naming the questions whose answers differ.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from llava_gemma.errors import UserError

QUESTIONS = 20


class DeviceAnswersDiffer(UserError, RuntimeError):
    pass


def device_answers(model_dir: Path, benchmark: str, data_root: Path, out: Path, *, device: str | None = None,
                   questions: int = QUESTIONS, batch_size: int = 4, max_new_tokens: int | None = None) -> dict:
    """Greedy fp32 answers of the benchmark's first ``questions`` questions on ``device`` (None: the
    evaluation device), written to ``out`` as JSON."""
    import torch

    from llava_gemma.eval.benchmarks import get_benchmark
    from llava_gemma.eval.gaudi import static_shapes_for
    from llava_gemma.eval.generate import PixelCache, answer_rows, chat_prompt, question_order
    from llava_gemma.eval.ranks import rank_device
    from llava_gemma.eval.run import eval_device, load_cell

    device = rank_device(device or eval_device())
    bench = get_benchmark(benchmark)
    asked = bench.load(data_root, limit=questions, seed=0)[:questions]  # POPE's limit is per split
    model, processor = load_cell(model_dir, device, dtype=torch.float32)
    prompts = [chat_prompt(processor, q) for q in asked]
    pixels = PixelCache(processor.image_processor, blind=False)
    order = question_order(processor, asked, prompts)
    answers: dict[int, str] = {}
    for start in range(0, len(order), batch_size):
        answers.update(answer_rows(model, processor, asked, prompts, order[start:start + batch_size], pixels,
                                   max_new_tokens or bench.max_new_tokens, static_shapes_for(model)))
    result = {"device": device, "benchmark": benchmark, "model": str(model_dir),
              "answers": {q.qid: answers[i] for i, q in enumerate(asked)}}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    return result


def differing_questions(device: dict, cpu: dict) -> list[str]:
    """Question ids answered differently (or by one side only)."""
    ids = list(dict.fromkeys([*device["answers"], *cpu["answers"]]))
    return [qid for qid in ids if device["answers"].get(qid) != cpu["answers"].get(qid)]


def compare_answers(device_file: Path, cpu_file: Path, out: Path | None = None) -> dict:
    """Equal answers, or one clear error listing the questions that differ."""
    device, cpu = (json.loads(Path(f).read_text()) for f in (device_file, cpu_file))
    differ = differing_questions(device, cpu)
    result = {"benchmark": device["benchmark"], "device": device["device"], "questions": len(device["answers"]),
              "differing": differ, "equal": not differ}
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n")
    if differ:
        raise DeviceAnswersDiffer(_sentence(device["device"], device["benchmark"], len(device["answers"]), differ))
    return result


def _sentence(device: str, benchmark: str, total: int, differ: Sequence[str]) -> str:
    return (f"{device} and CPU answer {len(differ)} of {total} {benchmark} questions differently "
            f"({', '.join(differ)}), so the {device} model path computes another model; see docs/backends.md "
            "before training or evaluating on this device.")
