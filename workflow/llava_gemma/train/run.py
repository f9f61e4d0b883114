"""The two training stages of the LLaVA-1.5 recipe, through HF Trainer and DeepSpeed.

Stage 1 trains the connector alone on the pretraining captions and saves it. Stage 2 trains
connector and LM on the instruction mix, starting from the stage-1 connector (``pretrain``
cells) or a freshly initialised one (``skip`` cells), and saves a plain HF checkpoint.
Resumable checkpoints go to a work folder beside the declared outputs.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict
from pathlib import Path

import torch
from transformers import set_seed

from llava_gemma.model.assemble import (
    assemble_llava,
    image_side,
    image_token_count,
    load_connector,
    save_cell_processor,
    save_connector,
    set_trainable,
)
from llava_gemma.model.chat import IMAGE_TOKEN
from llava_gemma.model.packed_attention import attach_packed_attention
from llava_gemma.model.vocabulary import check_vocabulary
from llava_gemma.study.batch_plan import plan_batch
from llava_gemma.study.config import StageConfig
from llava_gemma.train.backends import (
    TRAITS,
    ensure_single_process_env,
    resolve_backend,
    skip_shared_memory_comm_build,
)
from llava_gemma.train.checkpoints import ManifestCallback, discard_checkpoints, prepare_resume, run_identity
from llava_gemma.train.dataset import LlavaCollator, PreparedDataset
from llava_gemma.train.gaudi import enable_fused_sdpa, hpu_execution_mode, training_without_cache
from llava_gemma.train.packed_batches import PackedCollator
from llava_gemma.train.packed_step import PackingPlan
from llava_gemma.train.packing import PackedSteps
from llava_gemma.train.throughput import TokenCounter, throughput_metrics
from llava_gemma.train.trainer_setup import make_trainer, training_arguments
from llava_gemma.train.zero_image import attach_zero_image

__all__ = ["run_stage", "training_arguments"]  # training_arguments lives in train/trainer_setup.py


def run_stage(stage_name: str, stage: StageConfig, *, lm_path: Path, tower_path: Path, data_dir: Path,
              image_root: Path, out_dir: Path, work_dir: Path, backend: str, precision: str, seed: int,
              save_steps: int, connector_from: Path | None = None, length_buckets: list[int] | None = None,
              gradient_checkpointing: bool | None = None, peak_tflops: float | None = None,
              connector: str = "mlp2x_gelu", stage2_trains: list[str] | None = None,
              instruct_sources: list[str] | None = None, pad_to: int | None = None) -> dict:
    """One stage of one run; ``connector``, ``stage2_trains`` and ``instruct_sources`` are the cell's
    recipe choices (recipe.py), each None or the default for LLaVA-1.5's. ``pad_to`` pads every batch
    to that many tokens on any backend (the smoke run: ``data.max_length``, the largest shape a run meets)."""
    backend = resolve_backend(backend)
    traits = TRAITS[backend]
    ensure_single_process_env()
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    skip_shared_memory_comm_build(backend, world_size)
    # Built before the model: with ZeRO-3 in its DeepSpeed config, TrainingArguments registers the
    # config with transformers (HfDeepSpeedConfig), so from_pretrained partitions each weight across
    # the ranks while it loads instead of every rank holding the whole model first.
    args = training_arguments(stage, work_dir, backend=backend, precision=precision, world_size=world_size,
                              seed=seed, save_steps=save_steps, gradient_checkpointing=gradient_checkpointing,
                              stage_name=stage_name)
    start_distributed(args)
    set_seed(seed)  # before assembly: the fresh connector's initial weights come from this RNG
    model, processor = assemble_llava(lm_path, tower_path, load_dtype(precision),
                                      attn_implementation=traits.attn_implementation, connector=connector)
    if connector_from is not None:
        load_connector(model, connector_from)
    check_vocabulary(data_dir, processor.tokenizer, lm_path)  # the data's ids mean this LM's pieces
    counts = set_trainable(model, stage_name, *([stage2_trains] if stage2_trains else []))
    attach_zero_image(model, image_side(processor.image_processor))
    # hpu: the Gaudi Gemma's fused attention (GaudiTrainer never passes it to a LLaVA, see train/gaudi.py).
    hpu_run = {"hpu_execution_mode": hpu_execution_mode(), "hpu_fused_sdpa": enable_fused_sdpa(model)} \
        if backend == "hpu" else {}
    n_image_tokens = image_token_count(processor)
    dataset = PreparedDataset(data_dir / "data.parquet", image_root,
                              sources=instruct_sources if stage_name == "stage2" else None)
    collator = LlavaCollator(processor.image_processor, processor.tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
                             n_image_tokens, processor.tokenizer.pad_token_id,
                             length_buckets=[pad_to] if pad_to else length_buckets if traits.pads_to_buckets else None)
    packing = packing_plan(stage, stage_name, dataset, n_image_tokens, world_size, backend, pad_to)
    if packing is not None:  # each Trainer batch is one rank's share of a step (train/packed_step.py)
        attach_packed_attention(model)
        collator = PackedCollator(collator, packing.row_length, packing.rows)
    trainer = make_trainer(backend, model=model, args=args, precision=precision,
                           train_dataset=dataset if packing is None else PackedSteps(dataset),
                           data_collator=collator, group_by_modality_length=stage.group_by_modality_length,
                           connector_learning_rate=stage.connector_learning_rate, packing=packing,
                           loss_normalisation=stage.loss_normalisation,
                           length_group_steps=stage.length_group_steps)
    # Resume only a complete checkpoint of this very run (same settings, inputs and world size).
    recipe = {k: v for k, v in (("connector", connector if connector != "mlp2x_gelu" else None),
                                ("stage2_trains", stage2_trains), ("instruct_sources", instruct_sources)) if v}
    identity = run_identity({"stage_name": stage_name, "stage": asdict(stage), "seed": seed, "precision": precision,
                             "backend": backend, **recipe},
                            [lm_path, tower_path, data_dir / "data.parquet", connector_from], world_size)
    trainer.add_callback(ManifestCallback(identity))
    resume = prepare_resume(work_dir, identity, is_main=trainer.is_world_process_zero())
    counter = TokenCounter(model)
    start = time.time()
    with training_without_cache(model):  # see train/gaudi.py: the Gaudi Gemma fails at step 1 otherwise
        result = trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    wall = time.time() - start
    counter.close()
    start_step = int(resume.name.split("-")[-1]) if resume else 0  # only the steps this process timed
    throughput = throughput_metrics(model.config, stage_name, data_dir / "data.parquet", counter=counter,
                                    samples_processed=(result.global_step - start_step) * stage.global_batch_size,
                                    wall_seconds=wall, world_size=world_size, backend=backend,
                                    configured_peak_tflops=peak_tflops)
    out_dir.mkdir(parents=True, exist_ok=True)
    if stage_name == "stage1":
        if trainer.is_world_process_zero():
            save_connector(model, out_dir / "connector.safetensors")
    else:
        trainer.save_model(str(out_dir))  # gathers ZeRO-3 shards; safetensors
        if trainer.is_world_process_zero():
            save_cell_processor(processor, out_dir)  # EOS = <end_of_turn> for every client
    metrics = {
        "stage": stage_name, "backend": backend, "precision": precision, "world_size": world_size,
        "wall_seconds": wall, "train_samples_per_second": result.metrics.get("train_samples_per_second"),
        "steps": result.global_step, "samples": len(dataset), "image_tokens": n_image_tokens,
        "tokens": int(dataset.lengths.sum()), "final_loss": _final_loss(trainer.state.log_history),
        "parameters": counts, "stage_config": asdict(stage), "seed": seed, **recipe, "resumed": resume is not None,
        "resumed_from": str(resume) if resume else None, **throughput, **hpu_run,
        **({"packing": {"row_length": packing.row_length, "rows": packing.rows}} if packing else {}),
    }
    if trainer.is_world_process_zero():
        (out_dir / "train_metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        with (out_dir / "train_log.jsonl").open("w") as f:
            for entry in trainer.state.log_history:
                f.write(json.dumps(entry) + "\n")
        discard_checkpoints(work_dir)  # outputs are written: a forced rerun must train afresh, not resume
    return metrics


def packing_plan(stage: StageConfig, stage_name: str, dataset: PreparedDataset, image_tokens: int, world_size: int,
                 backend: str, pad_to: int | None) -> PackingPlan | None:
    """The packed run's plan when the stage packs on this backend: rows of ``pack_length`` tokens (else
    ``pad_to``, else the longest sample), the steps of the unpacked batch plan."""
    if not stage.packing_for(backend):
        return None
    tokens = dataset.token_lengths(image_tokens)
    unpacked = plan_batch(stage.global_batch_size, world_size, stage.per_device_batch_size, stage=stage_name)
    return PackingPlan(micro_batch=unpacked.micro_batch_size, global_batch=stage.global_batch_size,
                       row_length=stage.pack_length or pad_to or int(tokens.max()), rows=stage.pack_rows,
                       tokens=tokens, items=dataset.supervised_counts())


def start_distributed(args) -> None:
    """torch.distributed and DeepSpeed's communication, now rather than when the Trainer starts:
    ZeRO-3's partitioned loading reads the world size from DeepSpeed and checks the global batch
    against it."""
    _ = args.device  # accelerate's process group (torch.distributed) on every backend
    if args.deepspeed:
        import deepspeed

        deepspeed.init_distributed()  # wraps the group above; no second rendezvous


def load_dtype(precision: str) -> torch.dtype:
    """The precision the weights are loaded in: the training precision. DeepSpeed's bf16 mode casts
    the module to bf16 and keeps fp32 master copies of the trained parameters itself, so loading in
    fp32 first would only double the host memory of every rank (about 39 GB for a 7B cell)."""
    return torch.bfloat16 if precision == "bf16" else torch.float32


def _final_loss(history: list[dict]) -> float | None:
    losses = [h["loss"] for h in history if "loss" in h]
    tail = losses[-10:]
    return sum(tail) / len(tail) if tail else None
