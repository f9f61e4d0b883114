"""Evaluate one cell's checkpoint on one benchmark, or on several in one process, writing
``<out>/<benchmark>/samples.jsonl`` and ``metrics.json`` either way.

The checkpoint is loaded with plain transformers (``from_pretrained``), as a user would. Several
benchmarks in one process share the python, torch and transformers start-up (about 9 s of CPU
on a 2-core machine) and the model load, which dominate a toy evaluation.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from transformers import AutoProcessor, LlavaForConditionalGeneration

from llava_gemma.eval.answers import (
    PARTIAL_PREFIX,
    Shard,
    answer_shard,
    completed,
    fingerprint,
    merged_answers,
    plan_batches,
    prepare_work,
    read_partial,
)
from llava_gemma.eval.benchmarks import get_benchmark
from llava_gemma.eval.failures import warn_failures
from llava_gemma.eval.gaudi import load_for_gaudi
from llava_gemma.eval.generate import chat_prompt
from llava_gemma.eval.ranks import RankGroup, rank_device

# Settings every benchmark takes; the rest of eval.benchmarks.<name> are the benchmark's own options.
COMMON_SETTINGS = ("batch_size", "seed", "limit", "max_new_tokens")


def eval_device() -> str:
    """The accelerator the evaluate job was given (a GPU, a Gaudi card), else the CPU."""
    import torch

    if torch.cuda.is_available():
        return "cuda"
    try:
        import habana_frameworks.torch.hpu as hthpu
    except ImportError:
        return "cpu"
    return "hpu" if hthpu.is_available() else "cpu"


def load_cell(model_dir: Path, device: str | None = None, dtype=None) -> tuple[Any, Any]:
    """The cell on ``device``, in ``dtype`` (None: fp32 on CPU, bf16 as trained on accelerators)."""
    import torch

    device = rank_device(device or eval_device())
    dtype = dtype or (torch.float32 if device == "cpu" else torch.bfloat16)
    if device == "hpu":  # optimum-habana's static-shape generation in HPU graphs (eval/gaudi.py)
        return load_for_gaudi(model_dir, dtype), AutoProcessor.from_pretrained(model_dir)
    model = LlavaForConditionalGeneration.from_pretrained(model_dir, torch_dtype=dtype).to(device).eval()
    return model, AutoProcessor.from_pretrained(model_dir)


def run_benchmark(model, processor, benchmark: str, data_root: Path, out_dir: Path, *, batch_size: int,
                  limit: int | None = None, seed: int = 0, blind: bool = False,
                  max_new_tokens: int | None = None, options: dict | None = None, work_dir: Path | None = None,
                  model_dir: Path | None = None, group: RankGroup | None = None) -> dict:
    """``max_new_tokens`` overrides the benchmark's own cap (config ``eval.benchmarks.<name>.max_new_tokens``);
    ``options`` are the benchmark's own settings from there (e.g. MM-Vet's ``judge``).

    Answers go batch by batch to ``work_dir`` (default ``<out_dir>/partial``), from which a killed run
    resumes (eval/answers.py); ``model_dir`` enters the fingerprint that decides whether it may. With
    ``group`` of several ranks, each answers its share and rank 0 merges, scores and writes the outputs."""
    group = group or RankGroup(Shard())
    bench = get_benchmark(benchmark).with_options(**(options or {}))
    questions = bench.load(data_root, limit=limit, seed=seed)
    cap = max_new_tokens or bench.max_new_tokens
    work = Path(work_dir) if work_dir is not None else out_dir / "partial"
    identity = fingerprint(model_dir, questions, {"benchmark": benchmark, "blind": blind, "max_new_tokens": cap,
                                                  "batch_size": batch_size, "options": options or {}})
    if group.is_main:
        prepare_work(work, identity)
    group.barrier()  # the work folder is ready (kept or emptied) before any rank reads it
    prompts = [chat_prompt(processor, q) for q in questions]
    plan = plan_batches(processor, questions, prompts, batch_size)
    done = completed(plan, read_partial(work))
    group.barrier()  # every rank has read the same state before any writes
    todo = [k for k in range(len(plan)) if k not in done]
    start = time.time()
    answer_shard(model, processor, questions, prompts, plan, todo[group.shard.rank::group.shard.world_size],
                 max_new_tokens=cap, blind=blind, out_file=work / f"{PARTIAL_PREFIX}{group.shard.rank}.jsonl")
    group.barrier()  # every rank's share is on disk
    wall = time.time() - start
    asked = sum(len(plan[k]) for k in todo)
    print(f"{benchmark}: {len(questions) - asked} questions resumed from {work}, {asked} answered by "
          f"{group.shard.world_size} rank(s) in {wall:.1f} s", file=sys.stderr)
    if not group.is_main:
        return {"benchmark": benchmark, "rank": group.shard.rank, "wall_seconds": wall}
    answers = merged_answers(questions, plan, work)
    records = [{"id": q.qid, "prompt": q.prompt, "prediction": a.prediction, "target": q.target,
                **bench.score(q, a.prediction), **({"error": a.error} if a.error else {})}
               for q, a in zip(questions, answers, strict=True)]
    out_dir.mkdir(parents=True, exist_ok=True)
    _write_atomic(out_dir / "samples.jsonl", "".join(json.dumps(r) + "\n" for r in records))
    failures = Counter(a.error.split(":")[0] for a in answers if a.error)
    metrics = {"benchmark": benchmark, "blind_images": blind, "questions": len(questions),
               "max_new_tokens": cap, **bench.aggregate(records),
               "failed_questions": sum(failures.values()), "failures": dict(sorted(failures.items())),
               "wall_seconds": wall, "questions_per_second": asked / wall if wall else None}
    bench.write_extra_outputs(out_dir, data_root, records)
    _write_atomic(out_dir / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    shutil.rmtree(work)  # the outputs are whole: a forced rerun must answer afresh
    return metrics


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def evaluate_benchmark(model_dir: Path, benchmark: str, data_root: Path, out_dir: Path, **settings: Any) -> dict:
    """One benchmark in its own job (one Snakemake job per cell and benchmark), on the ranks the
    launcher started (RANK/WORLD_SIZE; one rank without a launcher)."""
    group = RankGroup(Shard.from_env())
    try:
        model, processor = load_cell(model_dir)
        metrics = run_benchmark(model, processor, benchmark, data_root, out_dir, model_dir=model_dir, group=group,
                                **settings)
        warn_failures({benchmark: metrics}, {benchmark: out_dir})  # the evaluation's last words
        return metrics
    finally:
        group.close()


def split_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    """A benchmark's config entry as ``run_benchmark`` keywords: common settings, the rest as options."""
    common = {k: v for k, v in settings.items() if k in COMMON_SETTINGS}
    return {**common, "options": {k: v for k, v in settings.items() if k not in COMMON_SETTINGS}}


def evaluate_cell(model_dir: Path, benchmarks: Mapping[str, Mapping[str, Any]], data_root: Path, out_root: Path,
                  *, batch_size: int, seed: int = 0, blind_benchmarks: Sequence[str] = (),
                  blind_out_root: Path | None = None, work_root: Path | None = None) -> dict[str, dict]:
    """Every benchmark of ``benchmarks`` (name -> its config entry) with one model load, each from
    ``<data_root>/<name>`` into ``<out_root>/<name>``; then, with the same loaded model, the blind-image
    control of ``blind_benchmarks`` into ``<blind_out_root>/<name>`` (keys ``blind/<name>``). Partial
    answers go to ``<work_root>/{eval,eval_blind}/<name>`` (default: beside each benchmark's outputs)."""
    if blind_benchmarks and blind_out_root is None:
        raise ValueError("blind_benchmarks needs blind_out_root, the folder of the blind-image control")
    group = RankGroup(Shard.from_env())
    try:
        model, processor = load_cell(model_dir)

        def run(name: str, out: Path, blank_images: bool) -> dict:
            work = Path(work_root) / ("eval_blind" if blank_images else "eval") / name if work_root else None
            return run_benchmark(model, processor, name, data_root / name, out / name,
                                 **{"batch_size": batch_size, "seed": seed, **split_settings(benchmarks[name])},
                                 blind=blank_images, work_dir=work, model_dir=model_dir, group=group)

        results = {name: run(name, out_root, False) for name in benchmarks}
        for name in blind_benchmarks:
            results[f"blind/{name}"] = run(name, Path(blind_out_root), True)
        out_dirs = {**{n: Path(out_root) / n for n in benchmarks},
                    **{f"blind/{n}": Path(blind_out_root or ".") / n for n in blind_benchmarks}}
        warn_failures(results, out_dirs)  # at the end, one line per benchmark: the log's last words
        return results
    finally:
        group.close()
