"""Device memory of one training micro-batch beyond the model states: the LM's activations and the
LM head with its loss (part of ``llava-gemma estimate`` and ``plan``).

Activations, counted tensor by tensor as HF's Gemma decoder layer saves them for backward (bytes
per token, element size ``e``, width ``h``, query width ``q``, MLP width ``f``; fp32 where Gemma's
RMSNorm upcasts): two RMSNorms (their fp32 input and normalised output, 8h each), the inputs of
the q/k/v and gate/up projections (e h each), SDPA's saved query, keys and values (the keys and
values repeated to the query heads) and output (4 e q), o_proj's input (e q), the GeGLU's gate,
its activation and the up projection (3 e f) and down_proj's input (e f):

    per token and layer = 16 h + 2 e h + 5 e q + 4 e f            (16h + 4h + 10q + 8f in bf16)

With gradient checkpointing each layer keeps only its input (e h per token) and one layer's
tensors above live at a time, while it is recomputed. A frozen LM (stage 1) saves the same
tensors: the connector's gradient passes through every layer. The frozen tower keeps nothing.

The head and loss (train/supervised_loss.py): 12 bytes per logit at the peak, measured by
tools/bench_head_memory.py (the fp32 log-softmax kept for backward, its gradient and the input's
gradient; in forward the element-size logits, their fp32 copy and the log-softmax: 2 + 4 + 4 in
bf16), over every position for HF's full-logits loss, over one chunk (or fewer supervised rows,
padded) for the supervised loss. Not counted: communication buffers, the allocator's slack, the
vision tower's transient forward.
"""

from __future__ import annotations

from dataclasses import dataclass

from llava_gemma.train.supervised_loss import CHUNK_ROWS, padded_rows

GB = 1e9
BYTES_PER_LOGIT = 12
# Per-rank device memory, GB (1e9 bytes): H100 SXM 80 GB HBM3; Gaudi 2 96 GB HBM2E.
DEVICE_MEMORY_GB = {"cuda": 80.0, "hpu": 96.0}


def _widths(text_config) -> tuple[int, int, int, int]:
    head_dim = getattr(text_config, "head_dim", None) or text_config.hidden_size // text_config.num_attention_heads
    return (text_config.hidden_size, text_config.num_attention_heads * head_dim, text_config.intermediate_size,
            text_config.num_hidden_layers)


def layer_bytes_per_token(text_config, element: int = 2) -> float:
    h, q, f, _ = _widths(text_config)
    return 16 * h + 2 * element * h + 5 * element * q + 4 * element * f


def activation_bytes(text_config, tokens: int, *, checkpointing: bool, element: int = 2) -> float:
    """Activations of the LM for ``tokens`` tokens (micro-batch x row length), the final norm included."""
    h, _, _, layers = _widths(text_config)
    layer = layer_bytes_per_token(text_config, element) * tokens
    final_norm = 8 * h * tokens
    if checkpointing:
        return layers * element * h * tokens + layer + final_norm
    return layers * layer + final_norm


def head_loss_bytes(tokens: int, supervised: int, vocab: int, *, supervised_only: bool = True,
                    chunk_rows: int = CHUNK_ROWS) -> float:
    """Peak of the head and loss: every position (HF's loss) or one chunk of the supervised rows."""
    rows = min(padded_rows(supervised, chunk_rows), chunk_rows) if supervised_only else tokens
    return BYTES_PER_LOGIT * rows * vocab


@dataclass(frozen=True)
class StepMemory:
    micro_batch: int
    row_tokens: int
    supervised_fraction: float
    checkpointing: bool
    activations_gb: float
    head_loss_gb: float
    head_loss_full_logits_gb: float  # what HF's full-logits loss would hold

    @property
    def total_gb(self) -> float:
        return self.activations_gb + self.head_loss_gb


def step_memory(text_config, *, micro_batch: int, row_tokens: int, supervised_fraction: float,
                checkpointing: bool, element: int = 2) -> StepMemory:
    tokens = micro_batch * row_tokens
    supervised = round(supervised_fraction * tokens)
    vocab = text_config.vocab_size
    return StepMemory(micro_batch, row_tokens, supervised_fraction, checkpointing,
                      activation_bytes(text_config, tokens, checkpointing=checkpointing, element=element) / GB,
                      head_loss_bytes(tokens, supervised, vocab) / GB,
                      head_loss_bytes(tokens, supervised, vocab, supervised_only=False) / GB)


def device_warning(cell: str, stage: str, total_gb: float, capacity_gb: float | None, micro_batch: int,
                   row_tokens: int, checkpointing: bool = True) -> str | None:
    """One sentence when a micro-batch at the longest rows needs more than the device holds."""
    if capacity_gb is None or total_gb <= capacity_gb:
        return None
    also = "" if checkpointing else " or turn on train.gradient_checkpointing"
    return (f"{cell} {stage}: a micro-batch of {micro_batch} x {row_tokens} tokens (data.max_length) needs about "
            f"{total_gb:.0f} GB per rank, more than the device's {capacity_gb:g} GB; lower "
            f"train.{stage}.per_device_batch_size (accumulation keeps the global batch){also}.")
