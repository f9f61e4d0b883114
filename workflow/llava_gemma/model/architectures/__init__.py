"""The public architectures of the real checkpoints, shipped as small JSON files (no weights, no hub).

One file per hub id, named after the id's last part (``gemma-2b-it.json``) and recording the full
id under ``source``. A language model file carries its ``config.json`` values and the size of its
tokenizer; a vision tower file carries its vision config and its image-processor config. Adding a
backbone is adding a file: the registry is whatever files are here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import transformers
from transformers import AutoConfig, PretrainedConfig

from llava_gemma.errors import UserError

KINDS = ("language_model", "vision_tower")


@dataclass(frozen=True)
class Architecture:
    """A checkpoint's published shape: enough to build its model on the meta device."""

    hub_id: str
    kind: str  # "language_model" | "vision_tower"
    config: dict[str, Any]
    image_processor: dict[str, Any] | None = None  # vision towers only
    tokenizer_size: int | None = None  # language models only: len(tokenizer) as published
    image_token_id: int | None = None  # None: the tokenizer has no <image>; assembly appends it

    def model_config(self) -> PretrainedConfig:
        """A fresh transformers config object (GemmaConfig, CLIPVisionConfig, Dinov2Config, ...)."""
        values = dict(self.config)
        return AutoConfig.for_model(values.pop("model_type"), **values)

    def build_image_processor(self):
        if self.image_processor is None:
            raise UserError(f"{self.hub_id} is a {self.kind}, it has no image processor; pick a vision tower.")
        values = dict(self.image_processor)
        cls = getattr(transformers, values.pop("image_processor_type"))
        return cls(**values)


def _parse(name: str, data: dict) -> Architecture:
    missing = {"source", "kind", "config"} - set(data)
    if missing or data["kind"] not in KINDS:
        raise ValueError(f"architecture file {name} needs source, kind ({' or '.join(KINDS)}) and config.")
    tokenizer = data.get("tokenizer", {})
    if data["kind"] == "language_model" and "size" not in tokenizer:
        raise ValueError(f"architecture file {name} is a language model without tokenizer.size.")
    return Architecture(hub_id=data["source"], kind=data["kind"], config=data["config"],
                        image_processor=data.get("image_processor"), tokenizer_size=tokenizer.get("size"),
                        image_token_id=tokenizer.get("image_token_id"))


@cache
def registry() -> dict[str, Architecture]:
    """Every shipped architecture, keyed by hub id."""
    found: dict[str, Architecture] = {}
    for entry in resources.files(__name__).iterdir():
        if entry.name.endswith(".json"):
            arch = _parse(entry.name, json.loads(entry.read_text()))
            found[arch.hub_id] = arch
    return found


def architecture(hub_id: str, kind: str | None = None) -> Architecture:
    """The shipped architecture of ``hub_id``; one clear error if it is not shipped or of another kind."""
    known = registry()
    if hub_id not in known:
        raise UserError(f"no shipped architecture for {hub_id!r} (known: {', '.join(sorted(known))}); add its "
                        "public config as a JSON file in llava_gemma/model/architectures/.")
    arch = known[hub_id]
    if kind is not None and arch.kind != kind:
        raise UserError(f"{hub_id} is a {arch.kind}, not a {kind}; check the grid entry that names it.")
    return arch
