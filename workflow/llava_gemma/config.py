"""Typed view of the study config, and its validation.

The Snakefile validates the raw dict once (``validate_config``) before any job runs; the CLI
commands receive the same YAML file and build a ``StudyConfig`` from it. Errors a user can make
end in one sentence that names the key and the fix.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from llava_gemma.errors import UserError

SCHEMA_PATH = Path(__file__).resolve().parents[1] / "schemas" / "config.schema.yaml"
FACTORS = ("language_model", "vision_tower", "connector")


class ConfigError(UserError, ValueError):
    """A config the pipeline cannot run; the message names the key and the fix."""


@dataclass(frozen=True)
class Cell:
    """One point of the grid: a language model, a vision tower, and whether stage 1 runs."""

    language_model: str
    vision_tower: str
    connector: str  # "pretrain" | "skip"

    @property
    def name(self) -> str:
        return f"{self.language_model}_{self.vision_tower}_{self.connector}"

    @property
    def pair(self) -> str:
        """The stage-1 run this cell starts from (if it pretrains its connector)."""
        return f"{self.language_model}_{self.vision_tower}"

    @property
    def pretrains_connector(self) -> bool:
        return self.connector == "pretrain"

    @classmethod
    def parse(cls, name: str) -> Cell:
        parts = name.split("_")
        if len(parts) != 3:
            raise ConfigError(f"cell name {name!r} is not <language_model>_<vision_tower>_<pretrain|skip>.")
        return cls(*parts)


@dataclass(frozen=True)
class StageConfig:
    learning_rate: float
    global_batch_size: int
    per_device_batch_size: int  # the largest micro-batch a device holds; see train/batch_plan.py
    epochs: float
    warmup_ratio: float
    weight_decay: float
    lr_scheduler: str
    zero_stage: int | dict[str, int]  # one stage for every backend, or one per backend
    max_steps: int | None = None
    group_by_modality_length: bool = False  # LLaVA-1.5's stage-2 batching (train/sampler.py)
    connector_learning_rate: float | None = None  # LLaVA's mm_projector_lr; None: learning_rate

    def zero_stage_for(self, backend: str) -> int:
        if isinstance(self.zero_stage, int):
            return self.zero_stage
        if backend not in self.zero_stage:
            raise ConfigError(f"zero_stage {self.zero_stage} names no stage for backend {backend!r}; add it.")
        return self.zero_stage[backend]


@dataclass(frozen=True)
class StudyConfig:
    raw: dict[str, Any]

    @property
    def language_models(self) -> dict[str, dict]:
        return self.raw["grid"]["language_model"]

    @property
    def vision_towers(self) -> dict[str, dict]:
        return self.raw["grid"]["vision_tower"]

    @property
    def cells(self) -> list[Cell]:
        grid = self.raw["grid"]
        return [Cell(lm, vt, c) for lm, vt, c in itertools.product(
            grid["language_model"], grid["vision_tower"], grid["connector"])]

    @property
    def is_toy_world(self) -> bool:
        return "toy_world" in self.raw

    @property
    def peak_tflops(self) -> float | None:
        """train.peak_tflops: the per-device peak MFU is measured against (None: known devices' table)."""
        return self.raw["train"].get("peak_tflops")

    def model_source(self, name: str) -> dict:
        sources = {**self.language_models, **self.vision_towers}
        if name not in sources:
            raise ConfigError(f"model {name!r} is not in grid.language_model or grid.vision_tower; add it there.")
        return sources[name]


def _key_path(error) -> str:
    return ".".join(str(p) for p in error.absolute_path) or "<top level>"


def _describe(error) -> str:
    """One sentence for a jsonschema error, naming the offending key."""
    key = _key_path(error)
    if error.validator == "additionalProperties":
        extra = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        top = key == "<top level>"
        name = extra[0] if top else f"{key}.{extra[0]}"
        return f"unknown key {name!r} in {'the top level' if top else key}; remove it or fix its spelling"
    if error.validator == "required":
        return f"{key}: {error.message}; add it"
    if error.validator == "enum":
        return f"{key}: {error.instance!r} is not one of {error.validator_value}"
    if error.validator == "propertyNames":
        return f"{key}: {error.message}"
    return f"{key}: {error.message}"


def validate_config(raw: Any, source: str = "config") -> None:
    """Validate against the JSON schema, then the cross-references the schema cannot express."""
    import jsonschema

    if not isinstance(raw, dict):
        raise ConfigError(f"{source} is empty or not a mapping; start from config.yaml.")
    with SCHEMA_PATH.open() as f:
        schema = yaml.safe_load(f)
    validator = jsonschema.Draft202012Validator(schema)
    error = jsonschema.exceptions.best_match(validator.iter_errors(raw))
    if error is not None:
        raise ConfigError(f"Invalid config {source}: {_describe(error)}.")
    _check_references(raw, source)


def _check_references(raw: dict, source: str) -> None:
    grid = raw["grid"]
    if raw["tokenizer_from"] not in grid["language_model"]:
        raise ConfigError(
            f"Invalid config {source}: tokenizer_from {raw['tokenizer_from']!r} is not a level of "
            f"grid.language_model ({', '.join(grid['language_model'])}).")
    import jsonschema

    with SCHEMA_PATH.open() as f:
        defs = yaml.safe_load(f)["$defs"]
    for factor, toy_def in (("language_model", "toy_lm"), ("vision_tower", "toy_tower")):
        for level, src in grid[factor].items():
            if "toy" not in src:
                continue
            if "toy_world" not in raw:
                raise ConfigError(f"Invalid config {source}: grid.{factor}.{level} is a toy model but the "
                                  "config has no toy_world section; add one (see toy.yaml).")
            sub = {**defs[toy_def], "$defs": defs}
            err = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(sub).iter_errors(src["toy"]))
            if err is not None:
                err.path.extendleft(["grid", factor, level, "toy"][::-1])
                raise ConfigError(f"Invalid config {source}: {_describe(err)}.")
    from llava_gemma.eval.benchmarks import BENCHMARKS

    for name in raw["eval"]["benchmarks"]:
        if name not in BENCHMARKS:
            raise ConfigError(f"Invalid config {source}: eval.benchmarks.{name} is not implemented yet "
                              f"(available: {', '.join(sorted(BENCHMARKS))}); remove it.")
    from llava_gemma.train.batch_plan import BatchSizeError, plan_batch

    for which in ("stage1", "stage2"):
        st = raw["train"][which]
        try:  # one node's devices here; the run checks again with the real process count
            plan_batch(st["global_batch_size"], raw["train"]["devices"], st["per_device_batch_size"], stage=which)
        except BatchSizeError as err:
            raise ConfigError(f"Invalid config {source}: {err}") from None
    buckets = raw["train"].get("length_buckets")
    if buckets and max(buckets) < raw["data"]["max_length"]:
        raise ConfigError(f"Invalid config {source}: train.length_buckets {buckets} cannot hold a sample of "
                          f"data.max_length {raw['data']['max_length']} tokens; add a bucket of at least that "
                          "length.")
