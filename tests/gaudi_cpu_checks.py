"""The hpu path's own calls, run on CPU through optimum-habana's code; tests/test_gaudi_cpu.py runs this
file in a subprocess (``adapt_transformers_to_gaudi`` rewrites transformers for the whole process) and
compares what it prints (one JSON object) with plain transformers on CPU.

``python -m tests.gaudi_cpu_checks SPEC.json``: SPEC names the LM and towers, the training batch and the
evaluation cells (model folders and questions). Each check reports its result or the error it met, so
one failure does not hide the others.

Order as in the real processes: our modules are imported first (train/run.py and eval/run.py import
them before anything of Habana's), then the Habana stand-in, then what the hpu path calls.
"""

from __future__ import annotations

import json
import sys
import traceback
from pathlib import Path

import llava_gemma.eval.answers
import llava_gemma.train.run  # noqa: F401
import torch

from tests import habana_stub


def error_of(err: BaseException) -> dict:
    frame = traceback.extract_tb(err.__traceback__)[-1]
    return {"error": f"{type(err).__name__}: {err}", "where": f"{Path(frame.filename).name}:{frame.lineno}"}


def training_step(spec: dict) -> dict:
    """One stage-2 forward and backward as the hpu path runs it: adapt_transformers_to_gaudi (what
    GaudiTrainingArguments' device setup calls), the Gemma repair, assembly, the fused-SDPA hook,
    gradient checkpointing as the Trainer enables it, use_cache off while training, and the loss at
    supervised positions (compared with the plain run's full-logits loss)."""
    from llava_gemma.model import gaudi_repairs
    from llava_gemma.model.assemble import assemble_llava, load_connector, set_trainable
    from llava_gemma.train.gaudi import enable_fused_sdpa, training_without_cache
    from llava_gemma.train.supervised_loss import supervised_loss
    from optimum.habana.transformers.modeling_utils import adapt_transformers_to_gaudi

    adapt_transformers_to_gaudi()
    gaudi_repairs.repair()
    model, _ = assemble_llava(spec["lm"], spec["tower"])
    load_connector(model, spec["connector"])  # the same start as the plain run (loading draws other random numbers)
    set_trainable(model, "stage2")
    fused = enable_fused_sdpa(model)
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    batch = {k: torch.tensor(v) for k, v in spec["batch"].items()}
    before = habana_stub.CALLS["fused_sdpa"]
    with training_without_cache(model):
        loss, _ = supervised_loss(model, batch)  # the loss every backend's Trainer takes (train/supervised_loss.py)
        loss.backward()
    grads = {name: p.grad.norm().item() for name, p in model.named_parameters() if p.grad is not None}
    return {"loss": loss.item(), "grad_norms": grads, "fused_sdpa_keywords": fused,
            "fused_sdpa_calls": habana_stub.CALLS["fused_sdpa"] - before,
            "lm_class": type(model.model.language_model).__name__,
            "use_cache_after": model.config.text_config.use_cache}


def packed_training_step(spec: dict) -> dict:
    """A packed row of two samples (train/packed_batches.py's layout) through the Gaudi Gemma and its fused
    SDPA branch, with the block-diagonal mask of model/packed_attention.py: the mask and the restarted
    positions must reach the kernel and RoPE as on a Gaudi."""
    from llava_gemma.model import gaudi_repairs
    from llava_gemma.model.assemble import assemble_llava, load_connector, set_trainable
    from llava_gemma.model.packed_attention import attach_packed_attention
    from llava_gemma.train.gaudi import enable_fused_sdpa, training_without_cache
    from llava_gemma.train.supervised_loss import supervised_loss
    from optimum.habana.transformers.modeling_utils import adapt_transformers_to_gaudi

    adapt_transformers_to_gaudi()
    gaudi_repairs.repair()
    model, _ = assemble_llava(spec["lm"], spec["tower"])
    load_connector(model, spec["connector"])
    set_trainable(model, "stage2")
    enable_fused_sdpa(model)
    attach_packed_attention(model)
    model.train()
    batch = {k: torch.tensor(v) for k, v in spec["packed_batch"].items()}
    before = habana_stub.CALLS["fused_sdpa"]
    with training_without_cache(model):
        loss, _ = supervised_loss(model, batch)
        loss.backward()
    grads = {name: p.grad.norm().item() for name, p in model.named_parameters() if p.grad is not None}
    return {"loss": loss.item(), "grad_norms": grads, "fused_sdpa_calls": habana_stub.CALLS["fused_sdpa"] - before,
            "lm_class": type(model.model.language_model).__name__}


def trainer_input_update(spec: dict) -> dict:
    """What GaudiTrainer itself would add to a LLaVA's inputs (its ``_get_input_update_settings``)."""
    from llava_gemma.model.assemble import assemble_llava
    from optimum.habana.transformers.trainer import _get_input_update_settings

    model, _ = assemble_llava(spec["lm"], spec["tower"])
    model.generation_config.use_flash_attention = True  # even when asked for
    update, inputs = _get_input_update_settings(model, lazy_mode=True)
    return {"updates": update, "inputs": inputs}


def evaluation(cell: dict) -> dict:
    """Greedy answers through eval/gaudi.py's loader and optimum-habana's static-shape generate."""
    from llava_gemma.eval.benchmarks.base import Question
    from llava_gemma.eval.gaudi import StaticShapes, load_for_gaudi
    from llava_gemma.eval.generate import PixelCache, answer_rows, chat_prompt
    from transformers import AutoProcessor

    model = load_for_gaudi(cell["model_dir"], torch.float32, device="cpu")
    processor = AutoProcessor.from_pretrained(cell["model_dir"])
    questions = [Question(q["id"], q["image"] and Path(q["image"]), q["prompt"], "") for q in cell["questions"]]
    prompts = [chat_prompt(processor, q) for q in questions]
    before = habana_stub.CALLS["fused_sdpa"]
    answers = answer_rows(model, processor, questions, prompts, list(range(len(questions))),
                          PixelCache(processor.image_processor, blind=False), cell["max_new_tokens"], StaticShapes())
    return {"answers": [answers[i] for i in range(len(questions))], "llava_class": type(model).__name__,
            "lm_class": type(model.model.language_model).__name__,
            "fused_sdpa_calls": habana_stub.CALLS["fused_sdpa"] - before}


def run(spec: dict) -> dict:
    saved = habana_stub.install()
    results: dict = {}
    try:
        checks = {"training": lambda: training_step(spec["training"]),
                  "packed_training": lambda: packed_training_step(spec["training"]),
                  "trainer_input_update": lambda: trainer_input_update(spec["training"]),
                  **{f"evaluation_{name}": (lambda c=cell: evaluation(c)) for name, cell in spec["evaluation"].items()}}
        for name, check in checks.items():
            try:
                results[name] = check()
            except Exception as err:  # reported, compared by the test
                results[name] = error_of(err)
        results["stand_in_calls"] = dict(habana_stub.CALLS)
    finally:
        habana_stub.restore(saved)
    return results


if __name__ == "__main__":
    print("GAUDI-CPU-RESULTS " + json.dumps(run(json.loads(Path(sys.argv[1]).read_text()))))
