"""Registries of the backbones the grid combines (in the manner of prismatic-vlms).

A vision tower is recognised by the ``model_type`` of its saved config, never by its name:
a new tower family is one entry in ``VISION_TOWERS``. Language models load through the Auto
classes; the study uses Gemma but nothing below depends on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoTokenizer,
    CLIPVisionModel,
    Dinov2Model,
    PretrainedConfig,
    PreTrainedModel,
)


@dataclass(frozen=True)
class VisionTowerFamily:
    """How to load the image encoder of one family of checkpoints."""

    model_class: type[PreTrainedModel]
    # Tokens before the patch tokens (CLS); LLaVA's "default" strategy drops them.
    num_additional_tokens: int = 1


VISION_TOWERS: dict[str, VisionTowerFamily] = {
    "clip": VisionTowerFamily(CLIPVisionModel),  # a full CLIP checkpoint: its vision half is used
    "clip_vision_model": VisionTowerFamily(CLIPVisionModel),
    "dinov2": VisionTowerFamily(Dinov2Model),
}


def vision_config_of(config: PretrainedConfig) -> PretrainedConfig:
    """The image-encoder config inside a checkpoint's config (CLIP nests it; DINOv2 is one)."""
    return getattr(config, "vision_config", None) or config


def tower_family(path: str | Path) -> VisionTowerFamily:
    model_type = AutoConfig.from_pretrained(path).model_type
    if model_type not in VISION_TOWERS:
        raise ValueError(f"vision tower at {path} has model_type {model_type!r}; supported: "
                         f"{', '.join(VISION_TOWERS)}. Add an entry to VISION_TOWERS in model/backbones.py.")
    return VISION_TOWERS[model_type]


def load_vision_tower(path: str | Path, dtype: torch.dtype = torch.float32) -> PreTrainedModel:
    family = tower_family(path)
    return family.model_class.from_pretrained(path, torch_dtype=dtype)


def load_language_model(path: str | Path, dtype: torch.dtype = torch.float32,
                        attn_implementation: str | None = None) -> PreTrainedModel:
    return AutoModelForCausalLM.from_pretrained(path, torch_dtype=dtype, attn_implementation=attn_implementation)


def load_tokenizer(path: str | Path):
    return AutoTokenizer.from_pretrained(path)
