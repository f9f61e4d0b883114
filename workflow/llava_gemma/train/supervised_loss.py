"""The training loss with the LM head run only where a label is supervised, in chunks, fp32 per chunk.

HF's ``LlavaForConditionalGeneration`` applies the LM head at every position and its loss upcasts
all the logits to fp32: with Gemma's 256,000-row head, a micro-batch of 16 x 2,048 tokens holds
8.4e9 logits (about 34 GB in fp32, and as much again for their gradient). Here the model runs up
to the LM's last hidden states (its final norm included); the positions whose *shifted* label is
supervised (the hidden state at t predicts the label at t + 1) are gathered; the head, Gemma 2's
final logit soft-capping when the config has one, and an fp32 cross-entropy run on them a chunk
at a time. Each chunk runs under ``torch.utils.checkpoint``: only its hidden states are kept for
backward and its logits are recomputed there, so at most one chunk's logits live at once.

The sum is divided as HF's ``ForCausalLMLoss`` divides: by ``num_items_in_batch`` when the
Trainer passes it (supervised labels of the whole optimizer step, gradient accumulation included),
else by the supervised positions of this batch (a mean). The head is called as a module, not read
as a tensor, so DeepSpeed ZeRO-3 gathers its partitioned weight on every call (and again when
the chunk is recomputed in backward); the model's own forward runs through the Trainer's wrapper
(DDP, the DeepSpeed engine, Gaudi's), so their hooks see a normal forward.

Static shapes (HPU graphs): the gathered rows are padded (with ignored labels) to a multiple of
128, so a chunk takes one of a few shapes (the full one and eight partial ones at 1,024 rows).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

IGNORE_INDEX = -100  # as train/masking.py and HF's losses
# Rows of the head per chunk: 1,024 x 256,000 logits are 1 GB in fp32 (plus their bf16 copy and gradient).
CHUNK_ROWS = 1024
PAD_MULTIPLE = 128  # rows are padded to a multiple of this (or of a smaller chunk)


def shifted_targets(labels: torch.Tensor) -> torch.Tensor:
    """The label each position's hidden state predicts: the next one (the last position predicts nothing)."""
    return F.pad(labels[:, 1:], (0, 1), value=IGNORE_INDEX)


def padded_rows(count: int, chunk_rows: int) -> int:
    """Rows the gathered positions are padded to: a multiple of 128 (of ``chunk_rows`` if smaller), at least one."""
    multiple = min(PAD_MULTIPLE, chunk_rows)
    return max(-(-count // multiple), 1) * multiple


def supervised_rows(labels: torch.Tensor, chunk_rows: int = CHUNK_ROWS) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(flat positions, their targets, supervised count): positions padded to ``padded_rows`` with
    position 0 and target ``IGNORE_INDEX``, which add nothing to the loss or its gradient."""
    targets = shifted_targets(labels.detach().cpu()).reshape(-1)  # on the host: no data-dependent device shape
    positions = torch.nonzero(targets != IGNORE_INDEX).squeeze(1)
    count = int(positions.numel())
    pad = padded_rows(count, chunk_rows) - count
    if pad:
        positions = F.pad(positions, (0, pad), value=0)
    chosen = targets.index_select(0, positions)
    if pad:
        chosen[count:] = IGNORE_INDEX
    return positions, chosen, count


def _chunk_loss(head: Callable, softcap: float | None, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    logits = head(hidden).float()
    if softcap:  # Gemma 2's final_logit_softcapping (Gemma 1 has none), here in fp32
        logits = torch.tanh(logits / softcap) * softcap
    return F.cross_entropy(logits, targets, ignore_index=IGNORE_INDEX, reduction="sum")


def head_loss_sum(hidden: torch.Tensor, labels: torch.Tensor, head: Callable, *, softcap: float | None = None,
                  chunk_rows: int = CHUNK_ROWS) -> tuple[torch.Tensor, int]:
    """(summed fp32 cross-entropy over the supervised positions, their count) from the LM's last
    hidden states ``hidden`` (batch x time x width) and unshifted ``labels`` (batch x time)."""
    positions, targets, count = supervised_rows(labels, chunk_rows)
    rows = hidden.reshape(-1, hidden.shape[-1]).index_select(0, positions.to(hidden.device))
    targets = targets.to(hidden.device)
    total = hidden.new_zeros((), dtype=torch.float32)
    for start in range(0, rows.shape[0], chunk_rows):
        part = rows[start:start + chunk_rows], targets[start:start + chunk_rows]
        if torch.is_grad_enabled() and (rows.requires_grad or _has_trainable_weight(head)):
            total = total + checkpoint(_chunk_loss, head, softcap, *part, use_reentrant=False)
        else:
            total = total + _chunk_loss(head, softcap, *part)
    return total, count


def _has_trainable_weight(head) -> bool:
    return isinstance(head, torch.nn.Module) and any(p.requires_grad for p in head.parameters())


def normalise(total: torch.Tensor, count: int, num_items_in_batch=None) -> torch.Tensor:
    """HF's ``fixed_cross_entropy``: the sum over ``num_items_in_batch`` when given, else the mean."""
    if num_items_in_batch is None:
        return total / count  # 0/0 is NaN, as HF's mean over no supervised label
    if torch.is_tensor(num_items_in_batch):
        num_items_in_batch = num_items_in_batch.to(total.device)
    return total / num_items_in_batch


def language_model_of(model: torch.nn.Module) -> torch.nn.Module:
    """The decoder whose first output is the last hidden state (final norm applied): transformers
    4.55's ``model.model.language_model`` (older and Gaudi spellings: ``model.language_model``)."""
    found = getattr(getattr(model, "model", None), "language_model", None)
    if found is None:
        found = getattr(model, "language_model", None)
    if found is None:
        raise TypeError(f"{type(model).__name__} has no language_model to take hidden states from.")
    return found


def softcap_of(model: torch.nn.Module) -> float | None:
    text = getattr(model.config, "text_config", model.config)
    return getattr(text, "final_logit_softcapping", None)


@contextlib.contextmanager
def captured_hidden(model: torch.nn.Module) -> Iterator[dict]:
    """Hold the language model's last hidden states of the forward run inside the block."""
    found: dict = {}

    def keep(module, args, output):
        found["hidden"] = output[0] if isinstance(output, tuple) else output.last_hidden_state

    handle = language_model_of(model).register_forward_hook(keep)
    try:
        yield found
    finally:
        handle.remove()


def supervised_loss(model: torch.nn.Module, inputs: dict, *, unwrapped: torch.nn.Module | None = None,
                    num_items_in_batch=None, chunk_rows: int = CHUNK_ROWS) -> tuple[torch.Tensor, object]:
    """(loss, model outputs) of a batch with ``labels``: ``model`` is what the Trainer calls (maybe a
    DDP or DeepSpeed wrapper), ``unwrapped`` the LLaVA model inside it."""
    unwrapped = unwrapped if unwrapped is not None else model
    labels = inputs["labels"]
    rest = {k: v for k, v in inputs.items() if k != "labels"}
    with captured_hidden(unwrapped) as found:
        outputs = model(**rest, logits_to_keep=1)  # the model's own head: the last position only
    total, count = head_loss_sum(found["hidden"], labels, unwrapped.lm_head, softcap=softcap_of(unwrapped),
                                 chunk_rows=chunk_rows)
    return normalise(total, count, num_items_in_batch), outputs


class SupervisedLossMixin:
    """Put before a Trainer class (HF's or GaudiTrainer): the training loss above instead of the model's."""

    head_chunk_rows = CHUNK_ROWS

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if ("labels" not in inputs or not model.training or self.label_smoother is not None
                or self.compute_loss_func is not None):
            return super().compute_loss(model, inputs, return_outputs=return_outputs,
                                        num_items_in_batch=num_items_in_batch)
        # As Trainer.compute_loss: num_items_in_batch reaches the loss only for models that take loss kwargs.
        items = num_items_in_batch if self.model_accepts_loss_kwargs else None
        loss, outputs = supervised_loss(model, inputs, unwrapped=self.accelerator.unwrap_model(model),
                                        num_items_in_batch=items, chunk_rows=self.head_chunk_rows)
        if self.args.average_tokens_across_devices and self.model_accepts_loss_kwargs \
                and num_items_in_batch is not None:
            loss = loss * self.accelerator.num_processes  # as Trainer.compute_loss: DDP averages the gradients
        return (loss, outputs) if return_outputs else loss
