"""A repair of optimum-habana's Gemma decoder layer, which computes another network than Gemma.

``GaudiGemmaDecoderLayer.post_attn_pre_mlp`` (optimum-habana 1.21.2) applies
``post_attention_layernorm`` to the attention output before the residual add, then feeds the
un-normalised sum to the MLP: ``h = x + norm2(attn(norm1(x))); out = h + mlp(h)``. Gemma (and
transformers' ``GemmaDecoderLayer``) is ``h = x + attn(norm1(x)); out = h + mlp(norm2(h))``. A
pretrained Gemma run through the Gaudi layer gives other hidden states (max difference 3.0 on one
random toy layer; tests/test_gaudi_cpu.py), so training would fine-tune, and evaluation would score,
a network that is not the checkpoint's. ``repair_gaudi_gemma`` puts Gemma's order back, keeping
optimum-habana's in-place residual add at inference.

Called on the hpu path only, after ``adapt_transformers_to_gaudi`` (train/gaudi.py, eval/gaudi.py);
it imports optimum-habana, which needs the Habana software (or a test's stand-in).
"""

from __future__ import annotations

import torch


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
