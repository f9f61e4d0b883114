"""Evaluate one cell's checkpoint on one benchmark: ``samples.jsonl`` and ``metrics.json``.

The checkpoint is loaded with plain transformers (``from_pretrained``), as a user would.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from transformers import AutoProcessor, LlavaForConditionalGeneration

from llava_gemma.eval.benchmarks import get_benchmark
from llava_gemma.eval.generate import generate_answers


def evaluate_benchmark(model_dir: Path, benchmark: str, data_root: Path, out_dir: Path, *, batch_size: int,
                       limit: int | None = None, seed: int = 0, blind: bool = False,
                       max_new_tokens: int | None = None, options: dict | None = None) -> dict:
    """``max_new_tokens`` overrides the benchmark's own cap (config ``eval.benchmarks.<name>.max_new_tokens``);
    ``options`` are the benchmark's own settings from there (e.g. MM-Vet's ``judge``)."""
    bench = get_benchmark(benchmark).with_options(**(options or {}))
    questions = bench.load(data_root, limit=limit, seed=seed)
    cap = max_new_tokens or bench.max_new_tokens
    model = LlavaForConditionalGeneration.from_pretrained(model_dir).eval()
    processor = AutoProcessor.from_pretrained(model_dir)
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
