"""Repairs of two optimum-habana 1.21.2 classes that compute other networks than the checkpoints'.

Both were found by running optimum-habana's classes on CPU against transformers' (tests/test_gaudi_cpu.py):

- ``GaudiGemmaDecoderLayer.post_attn_pre_mlp`` applies ``post_attention_layernorm`` to the attention
  output before the residual add, then feeds the un-normalised sum to the MLP:
  ``h = x + norm2(attn(norm1(x))); out = h + mlp(h)``. Gemma (transformers' ``GemmaDecoderLayer``) is
  ``h = x + attn(norm1(x)); out = h + mlp(norm2(h))``. One random toy layer differs by 3.0.
  ``post_attn_pre_mlp`` below puts Gemma's order back (keeping the in-place residual add at inference).
- ``GaudiCLIPAttention.forward`` flattens heads into the batch (``(batch*heads, seq, head_dim)``) and
  then transposes and reshapes that 3-D output as if it were ``(batch, heads, seq, head_dim)``: the
  heads' outputs are scrambled (the toy CLIP's layer 0 differs by 0.98). ``adapt_transformers_to_gaudi``
  installs it, with five other Gaudi CLIP classes, into transformers' CLIP module; ``repair`` puts
  transformers' own six classes back (each Gaudi class subclasses the one it replaces).

Without these, training on Gaudi would fine-tune, and evaluation would score, networks that are not
the pretrained Gemma and CLIP. Called on the hpu path only, after ``adapt_transformers_to_gaudi`` and
before any model is built (train/gaudi.py, eval/gaudi.py); it imports optimum-habana, which needs the
Habana software (or a test's stand-in).
"""

from __future__ import annotations

import torch

CLIP_CLASSES = ("CLIPVisionEmbeddings", "CLIPAttention", "CLIPEncoderLayer", "CLIPEncoder", "CLIPVisionTransformer",
                "CLIPVisionModel")


def post_attn_pre_mlp(self, hidden_states: torch.Tensor, residual: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Gemma's order: residual add, then ``post_attention_layernorm`` as the MLP's input norm."""
    hidden_states = self.self_attn.post_attn_forward(hidden_states)
    if self.training:
        hidden_states = hidden_states + residual
    else:
        residual.add_(hidden_states)
        hidden_states = residual
    residual = hidden_states
    hidden_states = self.mlp.pre_mlp_forward(self.post_attention_layernorm(hidden_states))
    return hidden_states, residual


def repair_gaudi_gemma() -> type:
    """Install Gemma's layer order in optimum-habana's ``GaudiGemmaDecoderLayer``; returns the class."""
    from optimum.habana.transformers.models.gemma.modeling_gemma import GaudiGemmaDecoderLayer

    GaudiGemmaDecoderLayer.post_attn_pre_mlp = post_attn_pre_mlp
    return GaudiGemmaDecoderLayer


def restore_transformers_clip() -> dict[str, type]:
    """transformers' CLIP vision classes back in its CLIP module, in place of optimum-habana's."""
    import transformers.models.clip.modeling_clip as clip
    from optimum.habana.transformers.models.clip import modeling_clip as gaudi_clip

    restored = {}
    for name in CLIP_CLASSES:
        gaudi = getattr(gaudi_clip, "Gaudi" + name)
        original = gaudi.__mro__[1]
        assert original.__name__ == name, (gaudi, original)
        setattr(clip, name, original)
        restored[name] = original
    return restored


def repair() -> None:
    """Both repairs: call right after ``adapt_transformers_to_gaudi()``, before building a model."""
    repair_gaudi_gemma()
    restore_transformers_clip()
