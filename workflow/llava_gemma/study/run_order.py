"""The order training jobs start in (Snakemake priorities), from a cheap cost model that needs no torch.

Every cell's first replicate comes before any second one (a result of each cell first, then their seed
noise); within a replicate the cheaper cells come first. A cell's cost is its per-sample training FLOPs
by the usual 2 x parameters x tokens rule (x3 for a stage that trains the LM, x2 for one that only
back-propagates through it), read from the backbones' published configs (JSON, toy specs, local
config.json): enough to order the cells. ``llava-gemma plan`` prints the full FLOPs (analysis/planning/plan.py).
"""

from __future__ import annotations

import json
from pathlib import Path

from llava_gemma.study.config import Cell, StudyConfig

ARCHITECTURES = Path(__file__).resolve().parents[1] / "model" / "architectures"
REPO_ROOT = Path(__file__).resolve().parents[3]
TEXT_TOKENS = {"stage1": 40.0, "stage2": 300.0}  # per sample, as analysis/planning/estimate.py assumes


def _shape(source: dict) -> dict:
    """hidden size, layers, and for towers the image tokens, from a source without loading a model."""
    if "toy" in source:
        s = source["toy"]
        return {"hidden": s["hidden_size"], "layers": s["num_layers"],
                "tokens": (s["image_size"] // s["patch_size"]) ** 2 if "patch_size" in s else 0}
    if "hub" in source:
        data = json.loads((ARCHITECTURES / f"{source['hub'].split('/')[-1]}.json").read_text())
        config, side = data["config"], (data.get("image_processor") or {}).get("crop_size", {}).get("height")
    else:
        folder = Path(source["local"])
        config = json.loads(((folder if folder.is_absolute() else REPO_ROOT / folder) / "config.json").read_text())
        config, side = config.get("vision_config", config), None
    side = side or config.get("image_size", 0)
    tokens = (side // config["patch_size"]) ** 2 if config.get("patch_size") else 0
    return {"hidden": config["hidden_size"], "layers": config["num_hidden_layers"], "tokens": tokens}


def cell_cost(study: StudyConfig, cell: Cell) -> float:
    lm, tower = _shape(study.model_source(cell.language_model)), _shape(study.model_source(cell.vision_tower))
    lm_params, tower_params = 12 * lm["layers"] * lm["hidden"] ** 2, 12 * tower["layers"] * tower["hidden"] ** 2
    recipe, cost = study.recipe(cell), 0.0
    for stage in ("stage1", "stage2") if cell.pretrains_connector else ("stage2",):
        trains_lm = stage == "stage2" and "language_model" in recipe["stage2_trains"]
        per_sample = 2 * lm_params * (TEXT_TOKENS[stage] + tower["tokens"]) * (3 if trains_lm else 2) \
            + 2 * tower_params * tower["tokens"]
        cost += per_sample * float(recipe["train"][stage]["epochs"])
    return cost


_RANKS: dict[int, dict[str, int]] = {}


def cost_rank(study: StudyConfig) -> dict[str, int]:
    """Cell name -> 0 for the cheapest cell, 1 for the next, ...; design order when a shape is unknown."""
    if id(study) not in _RANKS:
        try:
            cost = {c.cell: cell_cost(study, c) for c in study.cells}
        except (OSError, KeyError, ValueError):  # an unknown checkpoint: priorities are only an optimisation
            cost = {c.cell: float(i) for i, c in enumerate(study.cells)}
        order = sorted(cost, key=lambda c: (cost[c], list(cost).index(c)))
        _RANKS[id(study)] = {c: i for i, c in enumerate(order)}
    return _RANKS[id(study)]


def train_priority(study: StudyConfig, cell: Cell) -> int:
    """Higher first: replicate 1 of every cell above any replicate 2, cheaper cells above dearer ones."""
    ranks = cost_rank(study)
    return (study.replicates - cell.replicate) * len(ranks) + (len(ranks) - ranks[cell.cell])
