"""``llava-gemma plan``: every run of a study (cell x replicate) with its predicted training FLOPs and
hours on the configured devices, and the total, before anything is spent.

FLOPs come from ``train/flops.py`` as in ``llava-gemma estimate``, for every kind of backbone: hub
checkpoints through their shipped architectures, ``local`` folders through their config.json, toy
models through their spec. A stage-1 run is counted once, on the first run that needs it (cells with
equal stage-1 settings share it). Workloads are the documented estimates of ``analysis/planning/estimate.py``
for downloaded data (the toy world's own sizes for a toy study) unless prepared data are given.
Snakemake priorities order the training jobs by a cheaper cost model of the same kind (run_order.py).
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import yaml

from llava_gemma.analysis.planning.estimate import (
    PAPER_PEAK_TFLOPS,
    Hardware,
    StageWorkload,
    WorkloadDefaults,
    study_padding,
    workloads,
)
from llava_gemma.errors import UserError
from llava_gemma.study.config import Cell, StudyConfig, validate_config
from llava_gemma.train.flops import CellShapes, training_flops

REPO_ROOT = Path(__file__).resolve().parents[4]  # `local:` sources are relative to it
# Mean text tokens of a toy sample (a caption pair; a short instruction conversation) and of its
# supervised labels (the caption; the answers): estimates.
TOY_TOKENS = {"stage1": 30.0, "stage2": 60.0}
TOY_SUPERVISED = {"stage1": 27.0, "stage2": 20.0}
# A toy world's VQA-style conversation becomes one record per question: 6961 stage-2 records from
# 2000 conversations in a toy.yaml run (tools/toy_throughput.py prints it from a run's files).
TOY_RECORDS_PER_CONVERSATION = 3.48
# A toy study on the CPU is timed in minutes at the model FLOP rate its training measured, not in
# device hours at a peak and an MFU: 1.83e13 model FLOPs in 415 s over the 12 training stages of a
# toy.yaml run on 2 cores (tools/toy_throughput.py). The smallest stages run at a third of it, the
# largest at 1.3 times it, so a single run is predicted within about a factor of two, the study closer.
TOY_CPU_TFLOPS = 0.044
TOY_CPU = Hardware(devices=1, peak_tflops=TOY_CPU_TFLOPS, mfu=1.0)


def _text_config(source: dict):
    from transformers import AutoConfig, GemmaConfig

    if "hub" in source:
        from llava_gemma.model.architectures import architecture

        return architecture(source["hub"], "language_model").model_config()
    if "local" in source:
        folder = Path(source["local"])
        return AutoConfig.from_pretrained(folder if folder.is_absolute() else REPO_ROOT / folder)
    spec = source["toy"]
    return GemmaConfig(hidden_size=spec["hidden_size"], num_hidden_layers=spec["num_layers"],
                       num_attention_heads=spec["num_heads"], head_dim=spec["head_dim"],
                       num_key_value_heads=spec.get("num_kv_heads", 1), intermediate_size=spec["intermediate_size"],
                       vocab_size=1024)


def _vision_config(source: dict):
    from transformers import AutoConfig, CLIPVisionConfig, Dinov2Config

    from llava_gemma.model.backbones import vision_config_of

    if "hub" in source:
        from llava_gemma.model.architectures import architecture

        return architecture(source["hub"], "vision_tower").model_config()
    if "local" in source:
        folder = Path(source["local"])
        return vision_config_of(AutoConfig.from_pretrained(folder if folder.is_absolute() else REPO_ROOT / folder))
    s = source["toy"]
    vision = dict(image_size=s["image_size"], patch_size=s["patch_size"], hidden_size=s["hidden_size"],
                  num_hidden_layers=s["num_layers"], num_attention_heads=s["num_heads"])
    if s["architecture"] == "clip":
        return CLIPVisionConfig(intermediate_size=4 * s["hidden_size"], **vision)
    return Dinov2Config(mlp_ratio=4, **vision)


@functools.lru_cache(maxsize=64)
def _shapes(lm_source: str, tower_source: str) -> CellShapes:
    """Shapes of a cell from its two sources (YAML text, so the cache can key on them)."""
    return CellShapes.from_llava_config(_llava_config(lm_source, tower_source))


@functools.lru_cache(maxsize=64)
def _llava_config(lm_source: str, tower_source: str):
    from llava_gemma.model.assemble import image_tokens_for, llava_config

    lm, tower = yaml.safe_load(lm_source), yaml.safe_load(tower_source)
    if "hub" in lm and "hub" in tower:  # exactly what assemble_llava writes for these checkpoints
        from llava_gemma.model.architectures.cells import cell_config

        return cell_config(lm["hub"], tower["hub"])
    text, vision = _text_config(lm), _vision_config(tower)
    if "hub" in tower:  # the shipped image processor's crop (DINOv2-giant: 224 px, not its 518)
        from llava_gemma.model.architectures import architecture

        tokens = image_tokens_for(architecture(tower["hub"], "vision_tower").build_image_processor(), vision.patch_size)
    else:
        tokens = (vision.image_size // vision.patch_size) ** 2
    return llava_config(text, vision, image_token_index=0, image_seq_length=tokens)


def stage_flops(study: StudyConfig, cell: Cell, stage: str, load: StageWorkload) -> float:
    """Model FLOPs of one stage of one run over its epochs (or max_steps) of the stage's data."""
    recipe = study.recipe(cell)
    shapes = _shapes(yaml.safe_dump(study.model_source(cell.language_model)),
                     yaml.safe_dump(study.model_source(cell.vision_tower)))
    trains = recipe["stage2_trains"] if stage == "stage2" else ["connector"]
    # Without the LM training, its backward is stage 1's (activation gradients only).
    flops = training_flops(shapes, stage if "language_model" in trains else "stage1",
                           load.text_tokens, load.images, load.weights, supervised=load.supervised)
    total = flops.total + (2.0 * flops.vision_forward if "vision_tower" in trains else 0.0)
    settings = recipe["train"][stage]
    passes = float(settings["epochs"])
    if settings.get("max_steps"):
        passes = min(passes, settings["max_steps"] * settings["global_batch_size"] / max(load.samples, 1))
    return total * passes


def study_workloads(study: StudyConfig, prepared: list[Path] = ()) -> dict[str, StageWorkload]:
    if study.is_toy_world and not prepared:
        world = study.raw["toy_world"]
        per = {"stage1": 1.0, "stage2": TOY_RECORDS_PER_CONVERSATION}  # records per drawn sample
        unit = {"stage1": "samples", "stage2": f"conversations x {per['stage2']:g} records"}
        return {stage: StageWorkload(np.array([TOY_TOKENS[stage]]), np.array([1]),
                                     np.array([round(world.get(key, 2000) * per[stage])]),
                                     source=f"estimate: toy_world.{key} {unit[stage]} x {TOY_TOKENS[stage]:g} text "
                                            f"tokens ({TOY_SUPERVISED[stage]:g} supervised)",
                                     supervised=np.array([TOY_SUPERVISED[stage]]))
                for stage, key in (("stage1", "n_pretrain"), ("stage2", "n_instruct"))}
    return workloads(WorkloadDefaults(), prepared)


def plan_rows(study: StudyConfig, hardware: Hardware, loads: dict[str, StageWorkload]) -> list[dict]:
    rows, seen = [], set()
    for run in study.runs:
        stage1 = 0.0
        if run.pretrains_connector and run.pair not in seen:
            seen.add(run.pair)
            stage1 = stage_flops(study, run, "stage1", loads["stage1"])
        stage2 = stage_flops(study, run, "stage2", loads["stage2"])
        rows.append({"run": run.name, "cell": run.cell, "replicate": run.replicate, "stage1_run": run.pair,
                     "stage1_flops": stage1, "stage2_flops": stage2, "flops": stage1 + stage2,
                     "hours": hardware.hours(stage1 + stage2)})
    return rows


def load_configs(paths: list[str | Path]) -> StudyConfig:
    """The configs merged in order as ``snakemake --configfile a b`` merges them (key by key), validated."""
    raw: dict = {}
    for path in map(Path, paths):
        if not path.is_file():
            raise UserError(f"config {path} does not exist; pass --configfile with the study's YAML file.")
        _merge(raw, yaml.safe_load(path.read_text()) or {})
    validate_config(raw, ", ".join(map(str, paths)))
    return StudyConfig(raw)


def _merge(into: dict, new: dict) -> None:
    for key, value in new.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


def plan_memory(study: StudyConfig, ranks: int, backend: str, loads: dict[str, StageWorkload],
                capacity_gb: float | None = None) -> list:
    """Per-rank memory of every cell's stages (as ``llava-gemma estimate``), for any kind of backbone."""
    from llava_gemma.analysis.planning.estimate import device_capacity_gb, stage_step_memory
    from llava_gemma.analysis.planning.memory import cell_memory
    from llava_gemma.model.architectures.cells import MetaCell
    from llava_gemma.model.assemble import llava_shell
    from llava_gemma.study.config import StageConfig

    capacity = device_capacity_gb(study, backend, capacity_gb)
    found = []
    for cell in study.cells:
        sources = (yaml.safe_dump(study.model_source(cell.language_model)),
                   yaml.safe_dump(study.model_source(cell.vision_tower)))
        config = _llava_config(*sources)
        meta = MetaCell(cell.language_model, cell.vision_tower, llava_shell(config))
        stages = ("stage1", "stage2") if cell.pretrains_connector else ("stage2",)
        settings = study.recipe(cell)["train"]
        zero = {s: StageConfig(**settings[s]).zero_stage_for(backend) for s in stages}
        found += [m.with_step(stage_step_memory(study, m.stage, config.text_config, config.image_seq_length, ranks,
                                                backend, loads[m.stage], settings[m.stage]), capacity)
                  for m in cell_memory(cell.name, meta, zero, ranks, study.raw["train"]["precision"])]
    return found


def run_plan(configfiles: list[str | Path], *, devices: int | None = None, peak_tflops: float | None = None,
             mfu: float = 0.4, prepared: list[Path] = (), seed_sd: float | None = None, questions: int = 1000,
             pilot: Path | None = None, target: float | None = None, backend: str | None = None,
             device_memory_gb: float | None = None) -> str:
    if not 0 < mfu <= 1:
        raise UserError(f"--mfu {mfu} must be in (0, 1]; a typical large-model training reaches 0.3-0.5.")
    study = load_configs(configfiles)
    hardware = Hardware(devices=devices or study.raw["train"]["devices"],
                        peak_tflops=peak_tflops or study.peak_tflops or PAPER_PEAK_TFLOPS, mfu=mfu)
    # A toy study on the CPU: minutes at the toy's measured rate (an explicit --peak-tflops times devices).
    toy_cpu = peak_tflops is None and study.is_toy_world and study.raw["train"]["backend"] == "cpu"
    loads = study_workloads(study, prepared)
    rows = plan_rows(study, TOY_CPU if toy_cpu else hardware, loads)
    from llava_gemma.analysis.planning.memory import memory_table

    configured = study.raw["train"]["backend"]
    backend = backend or ("hpu" if configured == "auto" else configured)
    memory = plan_memory(study, hardware.devices, backend, loads, device_memory_gb)
    image_tokens = max(_llava_config(yaml.safe_dump(study.model_source(run.language_model)),
                                     yaml.safe_dump(study.model_source(run.vision_tower))).image_seq_length
                       for run in study.runs)  # the largest tower's: the longest samples
    padding = "\n".join(study_padding(study, loads, backend, hardware.devices, image_tokens)) + "\n"
    return (plan_markdown(study, rows, hardware, loads, toy_cpu=toy_cpu) + padding + "\n"
            + memory_table(memory, backend) + "\n"
            + _power(study, seed_sd, questions, pilot, target))


def _power(study: StudyConfig, seed_sd: float | None, questions: int, pilot: Path | None,
           target: float | None) -> str:
    """The power table (analysis/planning/power.py) when a seed SD or a pilot's effects are given."""
    from llava_gemma.analysis.planning.power import pilot_spread, power_markdown

    if seed_sd is None and pilot is None:
        return ""
    if pilot is not None:
        spread, source = pilot_spread(pilot), f"the pilot's main-effect standard errors ({pilot})"
    else:
        if seed_sd < 0 or questions < 1:
            raise UserError(f"--seed-sd {seed_sd} and --questions {questions}: give a seed SD >= 0 and >= 1 question.")
        benchmarks = list(study.raw.get("eval", {}).get("benchmarks", {})) or ["every benchmark"]
        sd = (seed_sd**2 + 0.25 / questions) ** 0.5
        spread = dict.fromkeys(benchmarks, sd)
        source = f"--seed-sd {seed_sd:g} and {questions} questions (binomial noise at p = 0.5)"
    run_terms = 1 + sum(len(f.levels) - 1 for f in study.factors if len(f.levels) > 1)
    return "\n" + power_markdown(spread, len(study.cells), study.replicates, run_terms, target, source)


def plan_markdown(study: StudyConfig, rows: list[dict], hardware: Hardware, loads: dict[str, StageWorkload],
                  *, toy_cpu: bool = False) -> str:
    """The runs' table; ``toy_cpu``: the time column is CPU minutes at ``TOY_CPU_TFLOPS``, not device hours."""
    if toy_cpu:
        time, scale = f"CPU minutes at the toy's measured {TOY_CPU_TFLOPS:g} TFLOP/s", 60.0
        how = (f"- CPU minutes: training only, at the {TOY_CPU_TFLOPS:g} TFLOP/s of model FLOPs a toy study measured "
               "on 2 cores (--peak-tflops gives device hours instead)")
    else:
        time, scale = f"hours on {hardware.devices} x {hardware.peak_tflops:g} TFLOP/s at MFU {hardware.mfu:g}", 1.0
        how = (f"- hours: {hardware.devices} devices x {hardware.peak_tflops:g} TFLOP/s peak (train.peak_tflops, "
               "--peak-tflops, else Gaudi 2's) x the MFU")
    lines = [f"Study {study.raw['study']}: {len(study.cells)} cells x {study.replicates} replicate(s) = "
             f"{len(rows)} runs, {len({r['stage1_run'] for r in rows if r['stage1_run']})} stage-1 runs.", "",
             f"| run | replicate | stage-1 run | stage 1 FLOP | stage 2 FLOP | {time} |",
             "|---|---:|---|---:|---:|---:|"]
    for r in rows:
        shared = "-" if not r["stage1_run"] else (f"{r['stage1_flops']:.3g}" if r["stage1_flops"] else "shared")
        lines.append(f"| {r['run']} | {r['replicate']} | {r['stage1_run'] or '-'} | {shared} | "
                     f"{r['stage2_flops']:.3g} | {r['hours'] * scale:.3g} |")
    total = sum(r["flops"] for r in rows)
    lines.append(f"| **total** | | | | {total:.3g} (both stages) | {sum(r['hours'] for r in rows) * scale:.3g} |")
    lines += ["", *[f"- {stage}: {w.source}" for stage, w in sorted(loads.items())],
              "- model FLOPs (train/flops.py); a stage-1 run is counted on the first run that needs it", how]
    return "\n".join(lines) + "\n"
