"""Factors as data: a level is a set of overrides of the recipe; cells, their shared stage-1 runs,
their replicates and the backbones they name all follow from the config's ``grid``.

``grid`` is a list of factors; each factor has named levels and each level overrides recipe settings
(the schema's ``$defs/level``): ``language_model`` / ``vision_tower`` (a model source), ``pretrain_connector``,
``connector`` (``mlp2x_gelu`` or ``linear``), ``stage2_trains`` (modules trained in stage 2),
``image_size`` (toy towers), ``instruct_sources`` (a subset of the instruction mix by source) and
``train: {stage1: {...}, stage2: {...}}`` (any stage hyperparameter). A cell is one level per factor,
named by its level names joined by "_" in factor order. Two cells share a stage-1 run when their
stage-1 settings (LM, tower, connector architecture, image size, stage-1 hyperparameters) are equal;
the run is named by the cell's levels of the factors that change stage-1 settings (``2b_clip``).
Replicate 1 of a cell keeps the cell's name; replicate k > 1 is ``<cell>_r<k>`` (and its stage-1 run
``<stage1>_r<k>``), trained with seed ``train.seed + k - 1``.
"""

from __future__ import annotations

import copy
import itertools
import json
from dataclasses import dataclass, field

# What a cell gets for a setting no level overrides (the LLaVA-1.5 recipe).
DEFAULTS: dict = {"pretrain_connector": True, "connector": "mlp2x_gelu",
                  "stage2_trains": ["connector", "language_model"]}
MODEL_KEYS = ("language_model", "vision_tower")
# Settings stage 1 depends on (besides train.stage1): cells equal in these share a stage-1 run.
STAGE1_KEYS = ("language_model", "vision_tower", "connector", "image_size")


class RecipeError(ValueError):
    """A grid whose levels do not make a runnable recipe; the message names the level and the fix."""


@dataclass(frozen=True)
class Factor:
    name: str
    levels: dict[str, dict]  # level name -> overrides

    def where(self, index: int, level: str) -> str:
        return f"grid[{index}].levels.{level}"


@dataclass(frozen=True)
class Cell:
    """One run of the study: a cell of the design (one level per factor) and its replicate.

    The first three fields keep the paper grid's spelling (``Cell("2b", "clip", "pretrain")``):
    the backbones' model names and whether stage 1 runs (``pretrain`` | ``skip``)."""

    language_model: str
    vision_tower: str
    connector: str = "pretrain"
    levels: tuple[tuple[str, str], ...] = ()  # (factor, level) in factor order; () = the paper's three
    stage1: str | None = None  # the stage-1 run it starts from (None: a fresh connector)
    replicate: int = 1
    architecture: str = "mlp2x_gelu"

    def __post_init__(self):
        if not self.levels:  # the paper grid's cell, as the report tests and tools write it
            object.__setattr__(self, "levels", (("language_model", self.language_model),
                                                ("vision_tower", self.vision_tower), ("connector", self.connector)))
            if self.connector == "pretrain" and self.stage1 is None:
                object.__setattr__(self, "stage1", f"{self.language_model}_{self.vision_tower}")

    @property
    def cell(self) -> str:
        """The design cell's name: level names joined by "_" in factor order."""
        return "_".join(level for _, level in self.levels)

    @property
    def name(self) -> str:
        """The run's name: the cell's, with ``_r<k>`` for replicate k > 1 (paths use it)."""
        return self.cell if self.replicate == 1 else f"{self.cell}_r{self.replicate}"

    @property
    def pretrains_connector(self) -> bool:
        return self.stage1 is not None

    @property
    def pair(self) -> str | None:
        """The stage-1 run's folder under results/stage1 (None without stage 1)."""
        if self.stage1 is None:
            return None
        return self.stage1 if self.replicate == 1 else f"{self.stage1}_r{self.replicate}"

    def level(self, factor: str) -> str:
        return dict(self.levels)[factor]

    def to_dict(self) -> dict:
        # Levels as [factor, level] pairs: JSON settings are written with sorted keys, and the order names the cell.
        return {"name": self.name, "cell": self.cell, "replicate": self.replicate,
                "levels": [list(pair) for pair in self.levels],
                "language_model": self.language_model, "vision_tower": self.vision_tower,
                "connector": self.connector, "stage1": self.stage1, "architecture": self.architecture}

    @classmethod
    def from_dict(cls, d: dict) -> Cell:
        return cls(d["language_model"], d["vision_tower"], d["connector"], tuple(map(tuple, d["levels"])),
                   d["stage1"], d["replicate"], d.get("architecture", "mlp2x_gelu"))

    @classmethod
    def parse(cls, name: str) -> Cell:
        """A paper-grid cell from its name ``<lm>_<tower>_<pretrain|skip>``."""
        parts = name.split("_")
        if len(parts) != 3:
            raise RecipeError(f"cell name {name!r} is not <language_model>_<vision_tower>_<pretrain|skip>; "
                              "pass cells as the workflow writes them (their to_dict()).")
        return cls(*parts)


def factors_of(grid: list[dict]) -> list[Factor]:
    return [Factor(f["factor"], dict(f["levels"])) for f in grid]


def full_design(factors: list[Factor]) -> list[dict[str, str]]:
    """Every combination of levels (the full factorial), in factor order; the design module replaces it."""
    return [dict(zip([f.name for f in factors], combo))
            for combo in itertools.product(*[list(f.levels) for f in factors])]


def owner_check(factors: list[Factor]) -> None:
    """A setting belongs to one factor: two factors overriding it would make their effects inseparable."""
    owners: dict[str, int] = {}
    for i, f in enumerate(factors):
        keys = set()
        for overrides in f.levels.values():
            for key, value in overrides.items():
                if key == "train":
                    keys |= {f"train.{stage}.{k}" for stage, s in value.items() for k in s}
                else:
                    keys.add(key)
        for key in sorted(keys):
            if key in owners and owners[key] != i:
                raise RecipeError(f"grid[{i}] ({f.name}) and grid[{owners[key]}] ({factors[owners[key]].name}) both "
                                  f"set {key}; a setting belongs to one factor, so move it into one of them.")
            owners[key] = i


def model_names(factors: list[Factor]) -> dict[str, dict]:
    """Every backbone a level names, by model name (its level's name): name -> {kind, source}."""
    models: dict[str, dict] = {}
    for i, f in enumerate(factors):
        for level, overrides in f.levels.items():
            for kind in MODEL_KEYS:
                if kind not in overrides:
                    continue
                entry = {"kind": kind, "source": overrides[kind]}
                if level in models and models[level] != entry:
                    raise RecipeError(f"{f.where(i, level)}.{kind}: model name {level!r} (the level's name) "
                                      f"already names another {models[level]['kind']}; rename one of the levels.")
                models[level] = entry
    return models


@dataclass
class Resolved:
    """A cell's recipe: every setting after its levels' overrides, and where each override came from."""

    settings: dict
    origin: dict[str, str] = field(default_factory=dict)

    def stage1_settings(self) -> str:
        s = {k: self.settings.get(k) for k in STAGE1_KEYS}
        return json.dumps({**s, "train": self.settings["train"]["stage1"]}, sort_keys=True)


def resolve(factors: list[Factor], levels: dict[str, str], train: dict, models: dict[str, dict]) -> Resolved:
    """The recipe of one cell: the defaults and the config's train.stage1/2, then each level's overrides."""
    settings = {**copy.deepcopy(DEFAULTS), "train": {s: dict(train[s]) for s in ("stage1", "stage2")}}
    origin: dict[str, str] = {}
    for i, f in enumerate(factors):
        level = levels[f.name]
        for key, value in f.levels[level].items():
            origin[key] = f.where(i, level)
            if key == "train":
                for stage, overrides in value.items():
                    settings["train"][stage].update(overrides)
            elif key in MODEL_KEYS:
                settings[key] = level
            else:
                settings[key] = copy.deepcopy(value)
    for kind in MODEL_KEYS:
        if kind not in settings:
            raise RecipeError(f"no level of the grid sets {kind}; add a factor whose levels set it "
                              f"(e.g. {{factor: {kind}, levels: {{name: {{{kind}: {{hub: owner/model}}}}}}}}).")
    if "image_size" in settings:
        tower = models[settings["vision_tower"]]["source"]
        if "toy" not in tower:
            raise RecipeError(
                f"{origin['image_size']}.image_size: only a toy tower is built at a chosen size; a hub or local "
                "tower's resolution is fixed by its checkpoint (position embeddings, image processor), so make a level "
                "whose vision_tower is a checkpoint of that resolution instead.")
        if tower["toy"]["image_size"] != settings["image_size"]:
            settings["vision_tower"] = f"{settings['vision_tower']}-{settings['image_size']}px"
    return Resolved(settings, origin)


def derived_models(factors: list[Factor], resolved: list[Resolved], models: dict[str, dict]) -> dict[str, dict]:
    """Model name -> source for every backbone the cells use: the levels' own, plus toy towers built
    at a level's ``image_size`` (named ``<tower>-<size>px``)."""
    found = {name: m["source"] for name, m in models.items()}
    for r in resolved:
        name = r.settings["vision_tower"]
        if name not in found:
            base = name.rsplit("-", 1)[0]
            found[name] = {"toy": {**models[base]["source"]["toy"], "image_size": r.settings["image_size"]}}
    return found


def _touches_stage1(overrides: dict) -> bool:
    return any(k in STAGE1_KEYS for k in overrides) or "stage1" in overrides.get("train", {})


def stage1_names(factors: list[Factor], designs: list[dict[str, str]], resolved: list[Resolved]) -> list[str | None]:
    """Each cell's stage-1 run (None when it skips stage 1): equal stage-1 settings share one, named by the
    cell's levels of the factors that change a stage-1 setting."""
    touching = [f.name for f in factors if any(_touches_stage1(v) for v in f.levels.values())]
    by_settings: dict[str, str] = {}
    names: list[str | None] = []
    for levels, r in zip(designs, resolved):
        if not r.settings["pretrain_connector"]:
            names.append(None)
            continue
        key = r.stage1_settings()
        if key not in by_settings:
            by_settings[key] = "_".join(levels[f] for f in touching) or "shared"
        names.append(by_settings[key])
    return names
