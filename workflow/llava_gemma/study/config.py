"""Typed view of the study config, and its validation.

The Snakefile validates the raw dict once (``validate_config``) before any job runs; the CLI
commands receive the same YAML file and build a ``StudyConfig`` from it. Errors a user can make
end in one sentence that names the key and the fix.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml

from llava_gemma.errors import ConfigError, UserError
from llava_gemma.study.design import select_cells
from llava_gemma.study.recipe import (
    Cell,
    RecipeError,
    Resolved,
    derived_models,
    factors_of,
    model_names,
    resolve,
    stage1_names,
)

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "schemas" / "config.schema.yaml"
# `local:` backbone folders are relative to the repository root (the Snakefile's folder, as
# local_model_folder in common.smk reads them); the package lives in its workflow/ folder.
REPO_ROOT = Path(__file__).resolve().parents[3]
__all__ = ["Cell", "ConfigError", "StageConfig", "StudyConfig", "validate_config"]


@dataclass(frozen=True)
class StageConfig:
    learning_rate: float
    global_batch_size: int
    per_device_batch_size: int  # the largest micro-batch a device holds; see study/batch_plan.py
    epochs: float
    warmup_ratio: float
    weight_decay: float
    lr_scheduler: str
    zero_stage: int | dict[str, int]  # one stage for every backend, or one per backend
    max_steps: int | None = None
    group_by_modality_length: bool = False  # LLaVA-1.5's stage-2 batching (train/sampler.py)
    length_group_steps: int = 1  # 1: LLaVA-1.5's random steps; N: groups of N steps sorted by length
    connector_learning_rate: float | None = None  # LLaVA's mm_projector_lr; None: learning_rate
    # Packed training (train/packing.py): per backend or for all; rows of pack_length tokens (None: the
    # run's longest sample), pack_rows rows per micro-batch.
    packing: bool | dict[str, bool] = False
    pack_length: int | None = None
    pack_rows: int = 1
    loss_normalisation: str = "step_tokens"  # step_tokens (items in batch) | micro_batch (LLaVA-1.5's mean)

    def packing_for(self, backend: str) -> bool:
        return bool(self.packing.get(backend, False) if isinstance(self.packing, dict) else self.packing)

    def zero_stage_for(self, backend: str) -> int:
        if isinstance(self.zero_stage, int):
            return self.zero_stage
        if backend not in self.zero_stage:
            raise ConfigError(f"zero_stage {self.zero_stage} names no stage for backend {backend!r}; add it.")
        return self.zero_stage[backend]


@dataclass(frozen=True)
class StudyConfig:
    """The study a config describes: its factors, the design's cells, their replicates and recipes."""

    raw: dict[str, Any]

    @cached_property
    def factors(self):
        return factors_of(self.raw["grid"])

    @cached_property
    def design(self):
        """The chosen cells (level per factor) and their aliasing."""
        return select_cells({f.name: list(f.levels) for f in self.factors}, self.raw.get("design", "full"))

    @cached_property
    def _recipes(self) -> tuple[list[dict[str, str]], list[Resolved], dict[str, dict], list[str | None]]:
        declared = model_names(self.factors)
        chosen = [dict(c) for c in self.design.cells]
        try:
            resolved = [resolve(self.factors, levels, self.raw["train"], declared) for levels in chosen]
        except RecipeError as err:
            raise ConfigError(str(err)) from None
        return chosen, resolved, derived_models(self.factors, resolved, declared), \
            stage1_names(self.factors, chosen, resolved)

    @property
    def replicates(self) -> int:
        return self.raw.get("replicates", 1)

    @cached_property
    def cells(self) -> list[Cell]:
        """The design's cells (replicate 1 of each), in design order."""
        chosen, resolved, _, stage1 = self._recipes
        return [Cell(r.settings["language_model"], r.settings["vision_tower"],
                     "pretrain" if r.settings["pretrain_connector"] else "skip",
                     tuple((f.name, levels[f.name]) for f in self.factors), s1, 1, r.settings["connector"])
                for levels, r, s1 in zip(chosen, resolved, stage1)]

    @cached_property
    def runs(self) -> list[Cell]:
        """Every training run: replicate 1 of every cell, then replicate 2 of every cell, and so on."""
        from dataclasses import replace

        return [replace(c, replicate=k) for k in range(1, self.replicates + 1) for c in self.cells]

    def recipe(self, cell: Cell) -> dict:
        """The cell's settings after its levels' overrides (train.stage1/2 complete)."""
        index = [c.cell for c in self.cells].index(cell.cell)
        return self._recipes[1][index].settings

    def seed(self, cell: Cell) -> int:
        """Replicate k trains with train.seed + k - 1 (fresh weights and data order differ)."""
        return self.raw["train"]["seed"] + cell.replicate - 1

    @property
    def models(self) -> dict[str, dict]:
        """Every backbone the cells use: model name -> source (hub, local or toy)."""
        return self._recipes[2]

    def _models_of(self, kind: str) -> dict[str, dict]:
        used = {getattr(c, kind) for c in self.cells}
        return {name: src for name, src in self.models.items() if name in used}

    @property
    def language_models(self) -> dict[str, dict]:
        return self._models_of("language_model")

    @property
    def vision_towers(self) -> dict[str, dict]:
        return self._models_of("vision_tower")

    @property
    def is_toy_world(self) -> bool:
        return "toy_world" in self.raw

    @property
    def peak_tflops(self) -> float | None:
        """train.peak_tflops: the per-device peak MFU is measured against (None: known devices' table)."""
        return self.raw["train"].get("peak_tflops")

    def model_source(self, name: str) -> dict:
        if name not in self.models:
            raise ConfigError(f"model {name!r} is not named by any level of the grid; add a level that sets it.")
        return self.models[name]


def _key_path(error) -> str:
    """``grid[0].levels.2b.language_model``: list positions in brackets, keys after dots."""
    text = ""
    for p in error.absolute_path:
        text += f"[{p}]" if isinstance(p, int) else (f".{p}" if text else str(p))
    return text or "<top level>"


def _describe(error) -> str:
    """One sentence for a jsonschema error, naming the offending key."""
    key = _key_path(error)
    if error.validator == "additionalProperties":
        properties = list(error.schema.get("properties", {}))
        extra = sorted(set(error.instance) - set(properties))
        top = key == "<top level>"
        name = extra[0] if top else f"{key}.{extra[0]}"
        close = difflib.get_close_matches(extra[0], properties, n=1)
        guess = f"did you mean {close[0]!r}" if close else ""
        if re.fullmatch(r"grid\[\d+\]\.levels\.[^.]+", key):
            fix = (f"{guess} (a level overrides only " if guess else "a level overrides only ") \
                + ", ".join(properties) + (")" if guess else "")
        else:
            fix = f"fix its spelling ({guess}) or remove it" if guess else "remove it or fix its spelling"
        return f"unknown key {name!r} in {'the top level' if top else key}; {fix}"
    if error.validator == "required":
        return f"{key}: {error.message}; add it"
    if error.validator == "enum":
        return f"{key}: {error.instance!r} is not one of {error.validator_value}"
    if error.validator == "propertyNames":
        return f"{key}: {error.message}"
    return f"{key}: {error.message}"


def validate_config(raw: Any, source: str = "config", root: Path = REPO_ROOT) -> None:
    """Validate against the JSON schema, then the cross-references the schema cannot express, then
    the ``local:`` backbones (read from ``root`` when relative): what a dry run can know."""
    import jsonschema

    from llava_gemma.study.backbone_sources import BackboneMismatch, check_local_sources

    if not isinstance(raw, dict):
        raise ConfigError(f"{source} is empty or not a mapping; start from config.yaml.")
    with SCHEMA_PATH.open() as f:
        schema = yaml.safe_load(f)
    validator = jsonschema.Draft202012Validator(schema)
    errors = list(validator.iter_errors(raw))
    # A misspelt required key is both unknown and missing: the typo is what the user must fix.
    unknown = [e for e in errors if e.validator == "additionalProperties"]
    error = jsonschema.exceptions.best_match(unknown or errors)
    if error is not None:
        raise ConfigError(f"Invalid config {source}: {_describe(error)}.")
    _check_references(raw, source)
    try:
        check_local_sources(raw["grid"], root)
    except BackboneMismatch as err:
        raise ConfigError(f"Invalid config {source}: {err}") from None


def _check_references(raw: dict, source: str) -> None:
    import jsonschema

    from llava_gemma.study.recipe import MODEL_KEYS, owner_check

    with SCHEMA_PATH.open() as f:
        defs = yaml.safe_load(f)["$defs"]
    for i, factor in enumerate(raw["grid"]):
        for level, overrides in factor["levels"].items():
            for kind, toy_def in zip(MODEL_KEYS, ("toy_lm", "toy_tower")):
                if "toy" not in overrides.get(kind, {}):
                    continue
                where = f"grid[{i}].levels.{level}.{kind}"
                if "toy_world" not in raw:
                    raise ConfigError(f"Invalid config {source}: {where} is a toy model but the config has no "
                                      "toy_world section; add one (see toy.yaml).")
                sub = {**defs[toy_def], "$defs": defs}
                err = jsonschema.exceptions.best_match(
                    jsonschema.Draft202012Validator(sub).iter_errors(overrides[kind]["toy"]))
                if err is not None:
                    err.path.extendleft(["grid", i, "levels", level, kind, "toy"][::-1])
                    raise ConfigError(f"Invalid config {source}: {_describe(err)}.")
    names = [f["factor"] for f in raw["grid"]]
    if len(set(names)) != len(names):
        raise ConfigError(f"Invalid config {source}: grid names a factor twice ({', '.join(names)}); "
                          "give every factor its own name.")
    study = StudyConfig(raw)
    try:
        owner_check(study.factors)
        _ = study.cells  # resolves every cell's recipe: a level that cannot run fails here
    except (RecipeError, ConfigError, UserError) as err:
        raise ConfigError(f"Invalid config {source}: {str(err).removeprefix('Invalid config: ')}") from None
    if raw["tokenizer_from"] not in study.language_models:
        raise ConfigError(
            f"Invalid config {source}: tokenizer_from {raw['tokenizer_from']!r} is not a language model of the "
            f"grid ({', '.join(study.language_models)}); name the level whose language_model tokenizes the data.")
    _check_stages(raw, source)
    # eval.benchmarks needs no check here: the schema names the implemented benchmarks, and
    # tests/test_package_layers.py holds that list to eval's registry (the study imports no stage).

def _check_stages(raw: dict, source: str) -> None:
    """Every stage's batch plan: the config's own, and each level's that overrides a stage setting."""
    from llava_gemma.study.batch_plan import BatchSizeError, plan_batch

    stages = [("", which, raw["train"][which]) for which in ("stage1", "stage2")]
    for i, factor in enumerate(raw["grid"]):
        for level, overrides in factor["levels"].items():
            stages += [(f"grid[{i}].levels.{level}.train: ", which, {**raw["train"][which], **settings})
                       for which, settings in overrides.get("train", {}).items()]
    for where, which, st in stages:
        try:  # one node's devices here; the run checks again with the real process count
            plan_batch(st["global_batch_size"], raw["train"]["devices"], st["per_device_batch_size"], stage=which)
        except BatchSizeError as err:
            raise ConfigError(f"Invalid config {source}: {where}{err}") from None
        _check_packing(st, f"{where}train.{which}", source)
    buckets = raw["train"].get("length_buckets")
    if buckets and max(buckets) < raw["data"]["max_length"]:
        raise ConfigError(f"Invalid config {source}: train.length_buckets {buckets} cannot hold a sample of "
                          f"data.max_length {raw['data']['max_length']} tokens; add a bucket of at least that "
                          "length.")


def _check_packing(st: dict, where: str, source: str) -> None:
    """Packed steps take the step-token normalisation. (A pack_length below data.max_length is allowed:
    stage 1's captions are far shorter; a sample that does not fit stops the run at its start.)"""
    packing = st.get("packing", False)
    if not any(packing.values()) if isinstance(packing, dict) else not packing:
        return
    if st.get("loss_normalisation", "step_tokens") != "step_tokens":
        raise ConfigError(f"Invalid config {source}: {where} packs its samples but its loss_normalisation is "
                          f"{st['loss_normalisation']}; packed steps normalise over the step's tokens, so set "
                          "loss_normalisation: step_tokens.")
