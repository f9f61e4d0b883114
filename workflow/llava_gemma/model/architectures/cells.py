"""The real cells of the grid, built from their shipped architectures on the meta device.

``meta_cell("google/gemma-7b-it", "facebook/dinov2-giant")`` is the very
``LlavaForConditionalGeneration`` that ``assemble_llava`` would build from the downloaded
checkpoints (same config wiring, same embedding growth for ``<image>``, same connector), but with
meta tensors: every shape and parameter count in a second, no weights, no network. Its config is
what the FLOPs accounting reads.
"""

from __future__ import annotations

from dataclasses import dataclass

from transformers import LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor

from llava_gemma.errors import UserError
from llava_gemma.model import backbones
from llava_gemma.model.architectures import architecture
from llava_gemma.model.assemble import (
    embedding_rows,
    image_tokens_for,
    llava_config,
    llava_shell,
    parameter_counts,
    processor_from_parts,
    set_trainable,
)


@dataclass(frozen=True)
class MetaCell:
    """A real cell's model on the meta device, with the counts the tests and the accounting use."""

    language_model: str  # hub ids
    vision_tower: str
    model: LlavaForConditionalGeneration

    @property
    def image_tokens(self) -> int:
        return self.model.config.image_seq_length

    def parameters(self) -> dict[str, int]:
        """Parameters per part (language_model, vision_tower, connector), tied embeddings counted once."""
        counts = parameter_counts(self.model)
        counts.pop("trainable")
        return counts

    def trainable(self, stage: str) -> int:
        """Parameters trained in ``stage`` (stage1: connector; stage2: connector + LM)."""
        return set_trainable(self.model, stage)["trainable"]


def _family(vision_config) -> backbones.VisionTowerFamily:
    family = backbones.VISION_TOWERS.get(vision_config.model_type)
    if family is None:
        raise UserError(f"vision config of model_type {vision_config.model_type!r} has no tower family; add it "
                        "to VISION_TOWERS in model/backbones.py.")
    return family


def cell_config(lm_id: str, tower_id: str) -> LlavaConfig:
    """The ``LlavaConfig`` that ``assemble_llava`` writes for these two checkpoints."""
    lm = architecture(lm_id, "language_model")
    tower = architecture(tower_id, "vision_tower")
    text_config, vision_config = lm.model_config(), tower.model_config()
    image_token_index = lm.image_token_id if lm.image_token_id is not None else lm.tokenizer_size
    tokenizer_size = lm.tokenizer_size + (lm.image_token_id is None)  # prepare_tokenizer appends <image>
    text_config.vocab_size = embedding_rows(text_config.vocab_size, tokenizer_size)
    image_tokens = image_tokens_for(tower.build_image_processor(), vision_config.patch_size)
    return llava_config(text_config, vision_config, image_token_index=image_token_index,
                        image_seq_length=image_tokens)


def meta_cell(lm_id: str, tower_id: str) -> MetaCell:
    return MetaCell(lm_id, tower_id, llava_shell(cell_config(lm_id, tower_id)))


def real_processor(tower_id: str, tokenizer) -> LlavaProcessor:
    """The processor of a real tower from its shipped image-processor config, around any tokenizer
    that knows ``<image>`` (the real Gemma tokenizer is not available offline)."""
    tower = architecture(tower_id, "vision_tower")
    vision_config = tower.model_config()
    return processor_from_parts(tower.build_image_processor(), vision_config.patch_size, _family(vision_config),
                                tokenizer)
