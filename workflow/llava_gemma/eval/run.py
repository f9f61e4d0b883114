"""Evaluate one cell's checkpoint on one benchmark, or on several in one process, writing
``<out>/<benchmark>/samples.jsonl`` and ``metrics.json`` either way.

The checkpoint is loaded with plain transformers (``from_pretrained``), as a user would. Several
benchmarks in one process share the python, torch and transformers start-up (about 9 s of CPU
on a 2-core machine) and the model load, which dominate a toy evaluation.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from transformers import AutoProcessor, LlavaForConditionalGeneration

from llava_gemma.eval.benchmarks import get_benchmark
from llava_gemma.eval.generate import generate_answers

# Settings every benchmark takes; the rest of eval.benchmarks.<name> are the benchmark's own options.
COMMON_SETTINGS = ("batch_size", "seed", "limit", "max_new_tokens")


def eval_device() -> str:
    """The accelerator the evaluate job was given (a GPU, a Gaudi card), else the CPU.
    Unlike training, evaluation needs no optimum-habana on a Gaudi node: plain torch on HPU."""
    import torch

    if torch.cuda.is_available():
        return "cuda"
    try:
        import habana_frameworks.torch.hpu as hthpu
    except ImportError:
        return "cpu"
    return "hpu" if hthpu.is_available() else "cpu"


def load_cell(model_dir: Path, device: str | None = None) -> tuple[Any, Any]:
    import torch

    device = device or eval_device()
    dtype = torch.float32 if device == "cpu" else torch.bfloat16  # bf16 as trained on accelerators
    model = LlavaForConditionalGeneration.from_pretrained(model_dir, torch_dtype=dtype).to(device).eval()
    return model, AutoProcessor.from_pretrained(model_dir)


def run_benchmark(model, processor, benchmark: str, data_root: Path, out_dir: Path, *, batch_size: int,
                  limit: int | None = None, seed: int = 0, blind: bool = False,
                  max_new_tokens: int | None = None, options: dict | None = None) -> dict:
    """``max_new_tokens`` overrides the benchmark's own cap (config ``eval.benchmarks.<name>.max_new_tokens``);
    ``options`` are the benchmark's own settings from there (e.g. MM-Vet's ``judge``)."""
    bench = get_benchmark(benchmark).with_options(**(options or {}))
    questions = bench.load(data_root, limit=limit, seed=seed)
    cap = max_new_tokens or bench.max_new_tokens
    start = time.time()
    answers = generate_answers(model, processor, questions, batch_size=batch_size,
                               max_new_tokens=cap, blind=blind)
    wall = time.time() - start
    records = []
    out_dir.mkdir(parents=True, exist_ok=True)
    with (out_dir / "samples.jsonl").open("w") as f:
        for q, answer in zip(questions, answers, strict=True):
            record = {"id": q.qid, "prompt": q.prompt, "prediction": answer, "target": q.target,
                      **bench.score(q, answer)}
            records.append(record)
            f.write(json.dumps(record) + "\n")
    metrics = {"benchmark": benchmark, "blind_images": blind, "questions": len(questions),
               "max_new_tokens": cap, **bench.aggregate(records),
               "wall_seconds": wall, "questions_per_second": len(questions) / wall if wall else None}
    bench.write_extra_outputs(out_dir, data_root, records)
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics


def evaluate_benchmark(model_dir: Path, benchmark: str, data_root: Path, out_dir: Path, **settings: Any) -> dict:
    """One benchmark in its own process (one Snakemake job per cell and benchmark)."""
    model, processor = load_cell(model_dir)
    return run_benchmark(model, processor, benchmark, data_root, out_dir, **settings)


def split_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    """A benchmark's config entry as ``run_benchmark`` keywords: common settings, the rest as options."""
    common = {k: v for k, v in settings.items() if k in COMMON_SETTINGS}
    return {**common, "options": {k: v for k, v in settings.items() if k not in COMMON_SETTINGS}}


def evaluate_cell(model_dir: Path, benchmarks: Mapping[str, Mapping[str, Any]], data_root: Path, out_root: Path,
                  *, batch_size: int, seed: int = 0, blind_benchmarks: Sequence[str] = (),
                  blind_out_root: Path | None = None) -> dict[str, dict]:
    """Every benchmark of ``benchmarks`` (name -> its config entry) with one model load, each from
    ``<data_root>/<name>`` into ``<out_root>/<name>``; then, with the same loaded model, the blind-image
    control of ``blind_benchmarks`` into ``<blind_out_root>/<name>`` (keys ``blind/<name>``)."""
    if blind_benchmarks and blind_out_root is None:
        raise ValueError("blind_benchmarks needs blind_out_root, the folder of the blind-image control")
    model, processor = load_cell(model_dir)

    def run(name: str, out: Path, blank_images: bool) -> dict:
        return run_benchmark(model, processor, name, data_root / name, out / name,
                             **{"batch_size": batch_size, "seed": seed, **split_settings(benchmarks[name])},
                             blind=blank_images)

    results = {name: run(name, out_root, False) for name in benchmarks}
    for name in blind_benchmarks:
        results[f"blind/{name}"] = run(name, Path(blind_out_root), True)
    return results
