"""``llava-gemma estimate``: training FLOPs of every real cell, predicted hours, the paper's MFU, and
the predicted host and device memory per rank (analysis/planning/memory.py).

For each cell of a config whose backbones are hub ids with a shipped architecture, the model
FLOPs (``train/flops.py``) of stage 1 (pretrain cells only) and stage 2 over their datasets, the
hours that takes on ``devices`` devices of a given peak at a given MFU, and the MFU that the
study's reported wall times imply (about 4 h for the 2B cells and 16 h for the 7B ones, both
stages, on 8 Gaudi 2; arXiv 2404.01331).

Without prepared data the token counts are documented estimates (``WorkloadDefaults``); a
prepared ``data/prepared/{pretrain,instruct}/data.parquet`` replaces them with its real samples.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import yaml

from llava_gemma.analysis.planning.memory import MemoryEstimate, cell_memory, memory_table
from llava_gemma.analysis.planning.step_memory import DEVICE_MEMORY_GB, step_memory
from llava_gemma.errors import ConfigError, UserError
from llava_gemma.model.architectures.cells import cell_config, meta_cell
from llava_gemma.study.config import StageConfig, StudyConfig, validate_config
from llava_gemma.train.flops import DEVICE_PEAK_TFLOPS, CellShapes, training_flops

# The study's wall time per cell for both stages on 8 Gaudi 2 (arXiv 2404.01331), by language model.
PAPER_HOURS = {"google/gemma-2b-it": 4.0, "google/gemma-7b-it": 16.0}
PAPER_DEVICES = 8
PAPER_PEAK_TFLOPS = DEVICE_PEAK_TFLOPS["gaudi2"]
# Which stage a prepared dataset (its folder under data/prepared) trains.
PREPARED_STAGE = {"pretrain": "stage1", "instruct": "stage2"}


@dataclass(frozen=True)
class WorkloadDefaults:
    """Dataset sizes and mean text tokens per sample when no prepared data are given.

    Sizes are the record counts of the files config.yaml downloads: LLaVA-CC3M-Pretrain-595K's
    chat.json (595,375 caption pairs; LLaVA-1.5's own blip_laion_cc_sbu_558k has 558,128) and
    llava_v1_5_mix665k.json (665,298 conversations, of which the 40,688 ShareGPT ones have no image;
    LLaVA-1.5 paper, Table 7). Mean text tokens (Gemma chat markup included, image tokens not) are
    estimates: a caption pair is a short instruction plus a one-sentence caption, about 40 tokens;
    the instruction mix's multi-turn conversations (VQA grouped per image, long ShareGPT dialogues)
    average a few hundred, taken as 300. Supervised labels (where the LM head runs, train/supervised_loss.py):
    a caption pair supervises its caption and EOS, all but ``<bos><image>\n``, so 37 of its 40;
    the instruction mix supervises the model's answers, taken as 40% of its text, 120 (an estimate:
    short VQA answers under long questions, long answers in the detailed descriptions and dialogues).
    Pass --prepared for the real counts.
    """

    stage1_samples: int = 595_375
    stage2_samples: int = 665_298
    stage2_text_only: int = 40_688
    caption_tokens: float = 40.0
    instruction_tokens: float = 300.0
    caption_supervised: float = 37.0
    instruction_supervised: float = 120.0


@dataclass
class StageWorkload:
    """Samples of one stage as (text tokens, images, samples per entry, supervised labels) arrays."""

    text_tokens: np.ndarray
    images: np.ndarray
    weights: np.ndarray
    source: str
    supervised: np.ndarray | None = None  # None: the head at every position
    per_sample: bool = False  # one entry per real sample (prepared data): padding can be counted

    @property
    def samples(self) -> int:
        return round(float(self.weights.sum()))

    def supervised_fraction(self, image_tokens: int) -> float:
        """Share of the LM's positions whose label is supervised (1 when unknown: the head everywhere)."""
        if self.supervised is None:
            return 1.0
        positions = float(np.sum(self.weights * (self.text_tokens + self.images * image_tokens)))
        return float(np.sum(self.weights * self.supervised)) / positions if positions else 1.0

    @classmethod
    def from_prepared(cls, path: Path) -> StageWorkload:
        from llava_gemma.train.flops import prepared_counts

        text, images, supervised = prepared_counts(path)
        return cls(text, images, np.ones_like(text), source=str(path), supervised=supervised, per_sample=True)


def default_workloads(d: WorkloadDefaults) -> dict[str, StageWorkload]:
    with_image = d.stage2_samples - d.stage2_text_only
    return {
        "stage1": StageWorkload(np.array([d.caption_tokens]), np.array([1]), np.array([d.stage1_samples]),
                                source=f"estimate: {d.stage1_samples} samples x {d.caption_tokens:g} text tokens "
                                       f"({d.caption_supervised:g} supervised)",
                                supervised=np.array([d.caption_supervised])),
        "stage2": StageWorkload(np.array([d.instruction_tokens] * 2), np.array([1, 0]),
                                np.array([with_image, d.stage2_text_only]),
                                source=f"estimate: {d.stage2_samples} samples ({d.stage2_text_only} text-only) x "
                                       f"{d.instruction_tokens:g} text tokens "
                                       f"({d.instruction_supervised:g} supervised)",
                                supervised=np.array([d.instruction_supervised] * 2)),
    }


def workloads(defaults: WorkloadDefaults, prepared: list[Path] = ()) -> dict[str, StageWorkload]:
    found = default_workloads(defaults)
    for path in prepared:
        path = Path(path)
        stage = PREPARED_STAGE.get(path.parent.name)
        if stage is None:
            raise UserError(f"--prepared {path}: expected data/prepared/<{'|'.join(PREPARED_STAGE)}>/data.parquet, "
                            "the folder names the stage it trains.")
        found[stage] = StageWorkload.from_prepared(path)
    return found


@dataclass(frozen=True)
class Hardware:
    devices: int = 8
    peak_tflops: float = PAPER_PEAK_TFLOPS  # per device
    mfu: float = 0.4

    def hours(self, flops: float) -> float:
        return flops / (self.devices * self.peak_tflops * 1e12 * self.mfu) / 3600


@dataclass
class CellEstimate:
    cell: str
    language_model: str
    vision_tower: str
    stage1_flops: float  # 0 for skip cells
    stage2_flops: float
    predicted_hours: float
    paper_hours: float | None = None
    paper_mfu: float | None = None  # MFU the paper's hours imply (pretrain cells: both stages)
    parts: dict = field(default_factory=dict)

    @property
    def total_flops(self) -> float:
        return self.stage1_flops + self.stage2_flops


def load_study(path: str | Path) -> StudyConfig:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"config {path} does not exist; pass --config with the study's YAML file.")
    raw = yaml.safe_load(path.read_text())
    validate_config(raw, str(path))
    return StudyConfig(raw)


def _hub(study: StudyConfig, level: str) -> str:
    source = study.model_source(level)
    if "hub" not in source:
        raise ConfigError(f"grid level {level!r} is a toy model; estimate covers real checkpoints (hub ids) only, "
                          "run it on config.yaml.")
    return source["hub"]


def estimate_cells(study: StudyConfig, hardware: Hardware, loads: dict[str, StageWorkload]) -> list[CellEstimate]:
    estimates = []
    for cell in study.cells:
        lm, tower = _hub(study, cell.language_model), _hub(study, cell.vision_tower)
        shapes = CellShapes.from_llava_config(cell_config(lm, tower))
        stages = ("stage1", "stage2") if cell.pretrains_connector else ("stage2",)
        parts = {s: training_flops(shapes, s, loads[s].text_tokens, loads[s].images, loads[s].weights,
                                   supervised=loads[s].supervised).as_dict() for s in stages}
        stage1 = parts.get("stage1", {}).get("total", 0.0)
        estimate = CellEstimate(cell.name, lm, tower, stage1, parts["stage2"]["total"], 0.0, parts=parts)
        estimate.predicted_hours = hardware.hours(estimate.total_flops)
        if cell.pretrains_connector and lm in PAPER_HOURS:
            estimate.paper_hours = PAPER_HOURS[lm]
            seconds = estimate.paper_hours * 3600
            estimate.paper_mfu = estimate.total_flops / seconds / (PAPER_DEVICES * PAPER_PEAK_TFLOPS * 1e12)
        estimates.append(estimate)
    return estimates


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, spec)


def markdown_table(estimates: list[CellEstimate], hardware: Hardware) -> str:
    predicted = f"hours on {hardware.devices} x {hardware.peak_tflops:g} TFLOP/s at MFU {hardware.mfu:g}"
    paper = f"paper MFU ({PAPER_DEVICES} Gaudi 2, both stages)"
    lines = [f"| cell | stage 1 EFLOP | stage 2 EFLOP | total EFLOP | {predicted} | paper hours | {paper} |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for e in estimates:
        lines.append(f"| {e.cell} | {_fmt(e.stage1_flops / 1e18 if e.stage1_flops else None, '.2f')} | "
                     f"{e.stage2_flops / 1e18:.2f} | {e.total_flops / 1e18:.2f} | {e.predicted_hours:.1f} | "
                     f"{_fmt(e.paper_hours, 'g')} | {_fmt(e.paper_mfu, '.2f')} |")
    return "\n".join(lines)


def device_capacity_gb(study: StudyConfig, backend: str, override: float | None = None) -> float | None:
    """Per-rank device memory: the flag, else ``train.device_memory_gb``, else the backend's device."""
    if override is not None:
        return float(override)
    configured = study.raw["train"].get("device_memory_gb")
    return float(configured) if configured is not None else DEVICE_MEMORY_GB.get(backend)


def gradient_checkpointing(study: StudyConfig, backend: str) -> bool:
    from llava_gemma.train.backends import TRAITS

    configured = study.raw["train"].get("gradient_checkpointing")
    return TRAITS[backend].gradient_checkpointing if configured is None else bool(configured)


def stage_step_memory(study: StudyConfig, stage: str, text_config, image_tokens: int, ranks: int, backend: str,
                      load: StageWorkload, settings: dict | None = None):
    """Activations and head/loss of the stage's micro-batch at data.max_length (analysis/planning/step_memory.py);
    ``settings``: a cell's own train.<stage> (default: the config's)."""
    from llava_gemma.study.batch_plan import plan_batch

    settings = StageConfig(**(settings or study.raw["train"][stage]))
    micro = plan_batch(settings.global_batch_size, ranks, settings.per_device_batch_size, stage=stage).micro_batch_size
    return step_memory(text_config, micro_batch=micro, row_tokens=study.raw["data"]["max_length"],
                       supervised_fraction=load.supervised_fraction(image_tokens),
                       checkpointing=gradient_checkpointing(study, backend),
                       element=2 if study.raw["train"]["precision"] == "bf16" else 4)


def estimate_memory(study: StudyConfig, ranks: int, backend: str, loads: dict[str, StageWorkload] | None = None,
                    capacity_gb: float | None = None) -> list[MemoryEstimate]:
    """Per-rank memory of every cell's stages (analysis/planning/memory.py), with the config's ZeRO stages, and
    one micro-batch's activations and head/loss at data.max_length against the device's capacity."""
    precision = study.raw["train"]["precision"]
    loads = loads or default_workloads(WorkloadDefaults())
    capacity = device_capacity_gb(study, backend, capacity_gb)
    found, metas = [], {}
    for cell in study.cells:
        key = (_hub(study, cell.language_model), _hub(study, cell.vision_tower))
        meta = metas[key] = metas.get(key) or meta_cell(*key)  # pretrain and skip cells share one
        stages = ("stage1", "stage2") if cell.pretrains_connector else ("stage2",)
        zero = {s: StageConfig(**study.raw["train"][s]).zero_stage_for(backend) for s in stages}
        found += [m.with_step(stage_step_memory(study, m.stage, meta.model.config.text_config, meta.image_tokens,
                                                ranks, backend, loads[m.stage]), capacity)
                  for m in cell_memory(cell.name, meta, zero, ranks, precision)]
    return found


def run_estimate(config: str | Path, *, devices: int | None = None, peak_tflops: float | None = None,
                 mfu: float = 0.4, prepared: list[Path] = (), defaults: WorkloadDefaults = WorkloadDefaults(),
                 backend: str = "hpu", device_memory_gb: float | None = None) -> dict:
    """The estimate as a dict (cells, memory, assumptions) plus its Markdown tables under ``markdown``.

    ``devices`` defaults to the config's ``train.devices``; ``peak_tflops`` to its
    ``train.peak_tflops``, else Gaudi 2's peak; ``backend`` picks the ZeRO stages of the memory
    table (the study ran on Gaudi: hpu) and its device (``device_memory_gb`` overrides
    ``train.device_memory_gb`` and the device's own: H100 80 GB, Gaudi 2 96 GB)."""
    if not 0 < mfu <= 1:
        raise UserError(f"--mfu {mfu} must be in (0, 1]; a typical large-model training reaches 0.3-0.5.")
    study = load_study(config)
    train = study.raw["train"]
    hardware = Hardware(devices=devices or train["devices"],
                        peak_tflops=peak_tflops or study.peak_tflops or PAPER_PEAK_TFLOPS, mfu=mfu)
    loads = workloads(defaults, prepared)
    estimates = estimate_cells(study, hardware, loads)
    memory = estimate_memory(study, hardware.devices, backend, loads, device_memory_gb)
    return {
        "hardware": asdict(hardware),
        "workload": {stage: {"samples": w.samples, "source": w.source} for stage, w in loads.items()},
        "cells": [{**asdict(e), "total_flops": e.total_flops} for e in estimates],
        "memory": [m.as_dict() for m in memory],
        "warnings": [m.warning for m in memory if m.warning],
        "markdown": markdown_table(estimates, hardware) + "\n\n" + _assumptions(hardware, loads) + "\n"
                    + "\n".join(study_padding(study, loads, backend, hardware.devices)) + "\n\n"
                    + memory_table(memory, backend),
    }


def study_padding(study: StudyConfig, loads: dict[str, StageWorkload], backend: str, devices: int,
                  image_tokens: int = 576) -> list[str]:
    """The padding each stage leaves on ``backend`` (analysis/planning/padding.py), from prepared samples only;
    ``image_tokens``: by default CLIP-L/14 at 336 px, the largest tower of the paper's grid (plan passes
    its study's largest)."""
    from llava_gemma.analysis.planning.padding import padding_lines

    train = study.raw["train"]
    samples = {stage: (w.text_tokens, w.images) if w.per_sample else None for stage, w in loads.items()}
    return padding_lines({s: StageConfig(**train[s]) for s in ("stage1", "stage2")}, samples, backend=backend,
                         devices=devices, buckets=train.get("length_buckets"), image_tokens=image_tokens)


def _assumptions(hardware: Hardware, loads: dict[str, StageWorkload]) -> str:
    lines = [f"- {stage}: {w.source}" for stage, w in sorted(loads.items())]
    lines.append(f"- predicted hours: {hardware.devices} devices x {hardware.peak_tflops:g} TFLOP/s (bf16 dense) "
                 f"x MFU {hardware.mfu:g}; EFLOP = 1e18 model FLOPs (train/flops.py)")
    return "\n".join(lines)
