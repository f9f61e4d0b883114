"""Block-diagonal causal attention for packed rows, as a 4-D additive mask every backend takes.

A packed row holds several samples whose ``position_ids`` restart at 0 (train/packed_batches.py).
A forward pre-hook on the language model turns them into a mask of shape (rows, 1, T, T): 0 where a
token may attend (same sample, not later), the dtype's minimum elsewhere. Why a 4-D mask:

- transformers 4.55's Gemma (``create_causal_mask``) returns a 4-D mask as given, and its SDPA and
  eager attention add it to the scores (sdpa passes it as ``attn_mask`` with ``is_causal`` off);
  its own packed-sequence detection from ``position_ids`` works only without a 2-D mask and not in
  optimum-habana's Gemma.
- optimum-habana 1.21's Gaudi Gemma builds its own mask only when the one it gets is not 4-D, and
  hands a 4-D mask to Habana's fused SDPA kernel (``FusedSDPA.apply(q, k, v, mask, 0.0, False, ...)``).
  Its mask-free causal mode (``flash_attention_causal_mask``) cannot separate samples, so it stays off.

Gemma 1 has no sliding window and no attention soft-capping; Gemma 2's sliding layers would get
this same mask (rows are at most 2,048 tokens, inside its 4,096 window). RoPE reads the restarted
``position_ids`` directly, so each sample sees the positions it has alone.
"""

from __future__ import annotations

import torch


def block_diagonal_mask(position_ids: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """(rows, 1, T, T) additive mask: causal inside each run of positions that starts at 0."""
    segments = torch.cumsum((position_ids == 0).to(torch.int32), dim=-1)
    same = segments[:, :, None] == segments[:, None, :]
    length = position_ids.shape[-1]
    causal = torch.ones(length, length, dtype=torch.bool, device=position_ids.device).tril()
    allowed = (same & causal)[:, None]
    zero = torch.zeros((), dtype=dtype, device=position_ids.device)
    return torch.where(allowed, zero, torch.finfo(dtype).min)


def _to_block_mask(module, args, kwargs):
    positions, embeds = kwargs.get("position_ids"), kwargs.get("inputs_embeds")
    mask = kwargs.get("attention_mask")
    if positions is None or embeds is None or (mask is not None and mask.dim() == 4):
        return None
    if positions.shape[0] != embeds.shape[0]:
        positions = positions.expand(embeds.shape[0], -1)
    return args, {**kwargs, "attention_mask": block_diagonal_mask(positions, embeds.dtype)}


def attach_packed_attention(model) -> torch.utils.hooks.RemovableHandle:
    """Make the LLaVA's language model attend block-diagonally wherever ``position_ids`` are given
    (packed runs only: unpacked training never passes them)."""
    return model.model.language_model.register_forward_pre_hook(_to_block_mask, with_kwargs=True)
