"""A text-only micro-batch still runs the vision tower and the connector, on a zero image, with a
contribution of exactly zero.

Across ranks every optimizer step must run the same modules: under ZeRO-3 a module's parameters are
gathered by a collective that every rank must join, and under ZeRO-2 every rank must reduce the same
gradients. The sampler (train/sampler.py) makes whole steps of one modality, but the final remainder
can still mix them, and on any step a text-only micro-batch would otherwise skip the tower and the
connector. LLaVA gives a text-only sample a zero image for the same reason.

HF's ``LlavaModel`` refuses image features without image tokens in the text, so the zero image does
not go through ``pixel_values``. Two forward pre-hooks do it: one on ``model.model`` notes whether the
micro-batch is text-only; one on its language model then runs ``get_image_features`` on one zero
image and adds the features' sum times 0 to the embeddings it receives. The values (and so the loss)
are unchanged bit for bit; the connector's gradients are exact zeros rather than missing.

The modules run in the order of an image batch (embeddings, tower, connector, LM): ZeRO-3 gathers
parameters, and prefetches them along the order it traced, with collectives every rank must match,
so a text-only rank must not only run the same modules but run them in the same order. (Hooks added
before DeepSpeed wraps the model run before DeepSpeed's own on the same module.)
The hooks are training-only and are not saved: the checkpoint stays a plain HF model.
"""

from __future__ import annotations

import torch
from transformers import LlavaForConditionalGeneration


class ZeroImage:
    """The two hooks and the one fact they share: is this micro-batch text-only."""

    def __init__(self, llava_model, image_size: tuple[int, int]):
        self.llava_model = llava_model  # HF's LlavaModel: tower, connector, language model
        self.image_size = image_size
        self.text_only = False

    def note_batch(self, module, args, kwargs) -> None:
        self.text_only = module.training and kwargs.get("pixel_values") is None

    def add_zero_image(self, module, args, kwargs):
        if not self.text_only or kwargs.get("inputs_embeds") is None:
            return None
        self.text_only = False
        embeds = kwargs["inputs_embeds"]
        zeros = torch.zeros((1, 3, *self.image_size), device=embeds.device)
        config = self.llava_model.config
        features = self.llava_model.get_image_features(
            pixel_values=zeros, vision_feature_layer=config.vision_feature_layer,
            vision_feature_select_strategy=config.vision_feature_select_strategy)
        features = torch.cat(list(features), dim=0) if isinstance(features, (list, tuple)) else features
        return args, {**kwargs, "inputs_embeds": embeds + 0.0 * features.sum().to(embeds.dtype)}


def attach_zero_image(model: LlavaForConditionalGeneration, image_size: tuple[int, int]) -> list:
    """Register the hooks; returns their handles (``.remove()`` takes one off)."""
    zero = ZeroImage(model.model, image_size)
    return [model.model.register_forward_pre_hook(zero.note_batch, with_kwargs=True),
            model.model.language_model.register_forward_pre_hook(zero.add_zero_image, with_kwargs=True)]
