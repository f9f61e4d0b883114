"""Does a backbone's checkpoint fit the role the grid gives it? Read from its ``config.json`` alone.

A ``local:`` folder is on disk when the config is validated, so validation reads it (one small
JSON file, no torch or transformers import): a missing folder, a folder that is no saved
checkpoint, and a language model named as a vision tower (or the reverse) fail before any job
runs, naming the key. A ``hub:`` source cannot be read then (no network at parse time, and the
hub is not asked before its download job runs), so its check runs where the downloaded folder is
first used (``llava-gemma prepare``), with the same sentence. Toy backbones are built by the
pipeline itself, to the role they are declared for.
"""

from __future__ import annotations

import json
from pathlib import Path

from llava_gemma.errors import UserError

# The towers model/backbones.py can load (its VISION_TOWERS; a test keeps the two equal). Kept here
# so validation need not import torch and transformers.
TOWER_MODEL_TYPES = ("clip", "clip_vision_model", "dinov2")
# Checkpoints that are image encoders or whole vision-language models, never a language model.
NOT_LANGUAGE_MODELS = (*TOWER_MODEL_TYPES, "siglip", "siglip_vision_model", "vit", "llava")
ROLES = {"language_model": "a language model", "vision_tower": "a vision tower"}


class BackboneMismatch(UserError, ValueError):
    """A backbone folder that is missing, not a checkpoint, or not of the kind its role needs."""


def model_type_of(folder: Path, where: str, shown: str | None = None) -> str:
    """``model_type`` of the checkpoint in ``folder``; ``where`` (a config key) and ``shown`` (the folder as
    the config writes it) name it in the error."""
    path = Path(folder) / "config.json"
    folder = shown or folder
    if not path.parent.is_dir():
        raise BackboneMismatch(f"{where}: folder {folder} does not exist; fix the path (a relative one is read "
                               "from the repository root) or put the checkpoint there.")
    try:
        config = json.loads(path.read_text())
    except FileNotFoundError:
        raise BackboneMismatch(f"{where}: {folder} holds no config.json, so it is not a saved checkpoint; point it "
                               "at the folder that save_pretrained wrote.") from None
    except (OSError, ValueError) as err:
        raise BackboneMismatch(f"{where}: {folder}/config.json cannot be read as JSON ({err}); save the checkpoint "
                               "again.") from None
    model_type = config.get("model_type") if isinstance(config, dict) else None
    if not isinstance(model_type, str):
        raise BackboneMismatch(f"{where}: {folder}/config.json names no model_type; save the checkpoint with "
                               "transformers again.")
    return model_type


def check_role(folder: Path, kind: str, where: str, shown: str | None = None) -> str:
    """The checkpoint's ``model_type`` if it fits ``kind`` (language_model or vision_tower), else an error."""
    model_type = model_type_of(folder, where, shown)
    folder = shown or folder
    other = "vision_tower" if kind == "language_model" else "language_model"
    if kind == "vision_tower" and model_type not in TOWER_MODEL_TYPES:
        what = "a language model" if model_type not in NOT_LANGUAGE_MODELS else f"a {model_type!r} checkpoint"
        raise BackboneMismatch(
            f"{where}: {folder} is {what} (config.json model_type {model_type!r}), not a vision tower "
            f"(supported: {', '.join(TOWER_MODEL_TYPES)}); name a tower checkpoint there, or move it to a {other} "
            "level.")
    if kind == "language_model" and model_type in NOT_LANGUAGE_MODELS:
        move = ", or move it to a vision_tower level" if model_type in TOWER_MODEL_TYPES else ""
        raise BackboneMismatch(
            f"{where}: {folder} is an image model (config.json model_type {model_type!r}), not a language model; "
            f"name a language model checkpoint there{move}.")
    return model_type


def check_local_sources(grid: list[dict], root: Path) -> None:
    """Every ``local:`` backbone of ``grid`` (the raw config's list): its folder exists and fits its role.

    ``hub:`` sources are not checked here: nothing of them can be read at parse time (see above)."""
    for i, factor in enumerate(grid):
        for level, overrides in factor["levels"].items():
            for kind in ROLES:
                local = overrides.get(kind, {}).get("local")
                if local is None:
                    continue
                folder = Path(local)
                check_role(folder if folder.is_absolute() else Path(root) / folder, kind,
                           f"grid[{i}].levels.{level}.{kind}.local", local)
