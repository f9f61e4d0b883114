"""Model FLOPs of LLaVA training, from a cell's configs and its samples' token counts.

Only matrix products are counted (linear layers, the patch-embedding convolution, the two
attention products); norms, activations, softmax and the loss are elementwise and cost well under
1 % here. One multiply-add is 2 FLOPs. For a transformer of ``L`` layers, width ``d``, query width
``q = heads x head_dim``, key/value width ``kv = kv_heads x head_dim`` and ``W`` MLP weights per
layer (``2 d f`` for a GELU MLP of width ``f``, ``3 d f`` for a gated one, Gemma's GeGLU and
DINOv2-giant's SwiGLU), a forward pass over a sequence of ``T`` tokens costs::

    linear    = 2 T L (2 d q + 2 d kv + W)  [+ 2 S V d for an LM head of V rows over S positions]
    attention = 4 L T^2 q                    (Q K^T and A V, each 2 T^2 q, over the full T x T square:
                                              PaLM's MFU convention and what eager attention computes;
                                              a causal flash kernel skips about half of it)

The vision tower sees ``T = patches + 1`` (CLS) and all its layers run (HF computes every layer
and LLaVA reads the second-to-last), plus the patch embedding ``2 patches (channels p^2) d``.
The LM sees ``T = text tokens + image tokens``; its head runs only on the ``S`` positions whose
shifted label is supervised (train/supervised_loss.py; ``S = T`` for HF's full-logits loss when
no supervised count is given). The backward pass of a linear layer costs 1x its
forward for the gradient of its input and 1x for the gradient of its weight; attention has no
weights, so its backward is 2x its forward whenever gradients pass through it. Hence, per stage:

* stage 1 (connector trains, LM frozen): the LM must still pass gradients back to the connector,
  so LM backward = 1x linear + 2x attention (activation gradients only).
* stage 2 (connector and LM train): LM backward = 2x linear + 2x attention.
* connector (both stages): forward ``2 n (dv d + d^2)`` over ``n`` image tokens; backward computes
  both weight gradients and the input gradient of its second linear only (the frozen tower's
  output needs none): ``2 n (dv d + 2 d^2)``.
* vision tower: forward only (always frozen, its input needs no gradient).
* LM head: its backward follows the LM's (1x in stage 1, frozen; 2x in stage 2). Not counted, as
  padding is not: the chunk recomputation in backward (as gradient checkpointing's is not), the
  rows padded for static shapes, and the model's own head on each sample's last position.

Padding tokens are not counted: these are the useful FLOPs that model FLOPs utilisation (MFU)
divides by the device peak.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from llava_gemma.errors import UserError

STAGES = ("stage1", "stage2")

# Dense bf16 peaks per device, TFLOP/s (no structured sparsity).
DEVICE_PEAK_TFLOPS: dict[str, float] = {
    # Intel, "Intel Gaudi 3 AI Accelerator: Architected for Gen AI Training and Inference" (R. Kaplan,
    # Hot Chips 2024), product table: Gaudi 2 peak compute (BF16) 432 TFLOPs.
    "gaudi2": 432.0,
    "a100": 312.0,  # NVIDIA A100 Tensor Core GPU datasheet: BF16 312 TFLOPS (624 with sparsity)
    "h100-sxm": 989.0,  # NVIDIA H100 datasheet, SXM: BF16 1979 TFLOPS with sparsity, half of it dense
}
# How each device reports its name (torch.cuda.get_device_name, the HPU device name), lower-cased.
_DEVICE_NAME_MARKERS = {
    "gaudi2": ("gaudi2", "gaudi 2", "hl-225"),
    "a100": ("a100",),
    "h100-sxm": ("h100 80gb hbm3", "h100 sxm"),  # the PCIe H100 has a lower peak and is not listed
}


@dataclass(frozen=True)
class TransformerShape:
    """What the FLOPs of a transformer stack depend on."""

    layers: int
    hidden: int
    query_width: int  # heads x head_dim
    kv_width: int  # key/value heads x head_dim
    mlp_weights: int  # matmul weights of one layer's MLP
    head_rows: int = 0  # vocabulary rows of an LM head (0 for a tower)

    @property
    def layer_weights(self) -> int:
        return 2 * self.hidden * self.query_width + 2 * self.hidden * self.kv_width + self.mlp_weights

    def body_forward(self, tokens):
        """The layers' matrix products (no head)."""
        return 2.0 * tokens * self.layers * self.layer_weights

    def head_forward(self, rows):
        return 2.0 * rows * self.head_rows * self.hidden

    def linear_forward(self, tokens):
        return self.body_forward(tokens) + self.head_forward(tokens)

    def attention_forward(self, tokens):
        return 4.0 * self.layers * np.square(tokens, dtype=np.float64) * self.query_width


def _head_dim(config) -> int:
    return getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads


def language_model_shape(config) -> TransformerShape:
    """A decoder with a gated MLP (Gemma, Llama, Mistral, Qwen2 configs)."""
    q = config.num_attention_heads * _head_dim(config)
    kv = (getattr(config, "num_key_value_heads", None) or config.num_attention_heads) * _head_dim(config)
    return TransformerShape(config.num_hidden_layers, config.hidden_size, q, kv,
                            3 * config.hidden_size * config.intermediate_size, head_rows=config.vocab_size)


def _clip_mlp(config) -> int:
    return 2 * config.hidden_size * config.intermediate_size


def _dinov2_mlp(config) -> int:
    if config.use_swiglu_ffn:  # weights_in: d -> 2h, weights_out: h -> d, h rounded as Dinov2SwiGLUFFN does
        inner = (int(int(config.hidden_size * config.mlp_ratio) * 2 / 3) + 7) // 8 * 8
        return 3 * config.hidden_size * inner
    return 2 * config.hidden_size * int(config.hidden_size * config.mlp_ratio)


# Vision tower families by config model_type: the MLP weights of one layer.
_TOWER_MLP = {"clip_vision_model": _clip_mlp, "dinov2": _dinov2_mlp}


def vision_tower_shape(config) -> TransformerShape:
    if config.model_type not in _TOWER_MLP:
        raise UserError(f"no FLOPs formula for vision towers of model_type {config.model_type!r} "
                        f"(known: {', '.join(_TOWER_MLP)}); add one to _TOWER_MLP in train/flops.py.")
    d = config.hidden_size
    return TransformerShape(config.num_hidden_layers, d, d, d, _TOWER_MLP[config.model_type](config))


@dataclass(frozen=True)
class CellShapes:
    """A LLaVA cell as the FLOPs count sees it."""

    language_model: TransformerShape
    vision_tower: TransformerShape
    image_tokens: int  # patch tokens handed to the LM per image
    vision_extra_tokens: int  # CLS: in the tower's sequence, dropped before the connector
    patch_weights: int  # channels x patch^2 x width of the patch embedding

    @classmethod
    def from_llava_config(cls, config) -> CellShapes:
        """From a ``LlavaConfig`` (a real assembled model's ``model.config`` or a meta cell's)."""
        from llava_gemma.model.backbones import VISION_TOWERS

        vision = config.vision_config
        patch_weights = vision.num_channels * vision.patch_size ** 2 * vision.hidden_size
        family = VISION_TOWERS.get(vision.model_type)
        return cls(language_model_shape(config.text_config), vision_tower_shape(vision), config.image_seq_length,
                   vision_extra_tokens=family.num_additional_tokens if family else 1, patch_weights=patch_weights)


@dataclass(frozen=True)
class TrainingFlops:
    """FLOPs of training on some samples, by part (summed over the samples given)."""

    vision_forward: float
    connector_forward: float
    connector_backward: float
    lm_forward: float  # the head included
    lm_backward: float
    head_forward: float = 0.0  # the LM head's part of the two above
    head_backward: float = 0.0

    @property
    def total(self) -> float:
        return self.vision_forward + self.connector_forward + self.connector_backward + self.lm_forward \
            + self.lm_backward

    def as_dict(self) -> dict[str, float]:
        return {**asdict(self), "total": self.total}


def training_flops(shapes: CellShapes, stage: str, text_tokens, images=1, samples=1,
                   supervised=None) -> TrainingFlops:
    """FLOPs of training once on samples with ``text_tokens`` tokens besides the image tokens (the
    ``<image>`` placeholder not counted), ``images`` images (0 or 1) and ``supervised`` supervised
    (shifted) labels each, where the LM head runs (None: every position, HF's full logits);
    scalars or arrays, each entry standing for ``samples`` samples (a mean length times a dataset size, say)."""
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; expected one of {STAGES}.")
    text = np.asarray(text_tokens, dtype=np.float64)
    n_images = np.broadcast_to(np.asarray(images, dtype=np.float64), text.shape)
    weight = np.broadcast_to(np.asarray(samples, dtype=np.float64), text.shape)
    image_tokens = n_images * shapes.image_tokens
    lm, tower = shapes.language_model, shapes.vision_tower
    sequence = text + image_tokens

    tower_sequence = shapes.image_tokens + shapes.vision_extra_tokens
    per_image = (tower.linear_forward(tower_sequence) + tower.attention_forward(tower_sequence)
                 + 2.0 * shapes.image_tokens * shapes.patch_weights)
    dv, d = tower.hidden, lm.hidden
    head_rows = sequence if supervised is None else np.broadcast_to(np.asarray(supervised, np.float64), text.shape)
    head = lm.head_forward(head_rows)
    lm_linear, lm_attention = lm.body_forward(sequence) + head, lm.attention_forward(sequence)
    linear_backward = 1.0 if stage == "stage1" else 2.0  # activation gradients only vs also weight gradients
    return TrainingFlops(
        vision_forward=float(np.sum(weight * n_images * per_image)),
        connector_forward=float(np.sum(weight * 2.0 * image_tokens * (dv * d + d * d))),
        connector_backward=float(np.sum(weight * 2.0 * image_tokens * (dv * d + 2 * d * d))),
        lm_forward=float(np.sum(weight * (lm_linear + lm_attention))),
        lm_backward=float(np.sum(weight * (linear_backward * lm_linear + 2.0 * lm_attention))),
        head_forward=float(np.sum(weight * head)),
        head_backward=float(np.sum(weight * linear_backward * head)),
    )


def prepared_token_counts(parquet_path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(text tokens, images) per sample of a prepared ``data.parquet``: ``prepared_counts`` without
    the supervised counts."""
    text, images, _ = prepared_counts(parquet_path)
    return text, images


def prepared_counts(parquet_path: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(text tokens, images, supervised labels) per sample of a prepared ``data.parquet`` (its
    ``input_ids`` hold one ``<image>`` placeholder per image, which the model replaces by the image
    tokens; a label counts where the head runs: from the second position on, as the loss shifts).
    Read a batch at a time: the 665k mix's token lists would take gigabytes at once."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from llava_gemma.train.dataset import image_rows

    path = Path(parquet_path)
    if not path.is_file():
        raise UserError(f"prepared dataset {path} does not exist; run the prepare rule for it or drop the option.")
    lengths, images, supervised = [], [], []
    for batch in pq.ParquetFile(path).iter_batches(batch_size=65_536, columns=["input_ids", "labels", "image"]):
        images.append(image_rows(batch.column("image")).astype(np.int64))
        lengths.append(pc.list_value_length(batch.column("input_ids")).to_numpy(zero_copy_only=False))
        supervised.append(_shifted_supervised(batch.column("labels")))
    if not lengths:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64)
    n_images = np.concatenate(images)
    return np.concatenate(lengths).astype(np.int64) - n_images, n_images, np.concatenate(supervised)


def _shifted_supervised(labels) -> np.ndarray:
    """Labels other than -100 per row, the first position left out (no hidden state predicts it)."""
    import pyarrow as pa

    labels = labels.combine_chunks() if isinstance(labels, pa.ChunkedArray) else labels
    offsets = labels.offsets.to_numpy()
    values = labels.flatten().to_numpy(zero_copy_only=False)
    flags = np.concatenate([[0], np.cumsum(values != -100)])
    counts = flags[offsets[1:]] - flags[offsets[:-1]]
    nonempty = offsets[1:] > offsets[:-1]
    first = np.zeros(len(counts), dtype=np.int64)
    first[nonempty] = values[offsets[:-1][nonempty]] != -100
    return (counts - first).astype(np.int64)


def device_kind(device_name: str | None) -> str | None:
    """The ``DEVICE_PEAK_TFLOPS`` key of a device as its runtime names it (None when unknown)."""
    name = (device_name or "").lower()
    return next((kind for kind, marks in _DEVICE_NAME_MARKERS.items() if any(m in name for m in marks)), None)


def peak_tflops(configured: float | None = None, device_name: str | None = None) -> float | None:
    """The per-device peak to measure MFU against: the config's ``train.peak_tflops`` if set, else the
    table's value for a recognised device, else None (MFU is then not reported)."""
    if configured is not None:
        return float(configured)
    kind = device_kind(device_name)
    return DEVICE_PEAK_TFLOPS[kind] if kind else None


def achieved_flops_per_second(total_flops: float, wall_seconds: float) -> float:
    if wall_seconds <= 0:
        raise ValueError(f"wall time must be positive, got {wall_seconds}.")
    return total_flops / wall_seconds


def mfu(flops_per_second: float, peak_tflops_per_device: float, devices: int = 1) -> float:
    """Model FLOPs utilisation: achieved FLOP/s over the peak of all ``devices``."""
    return flops_per_second / (peak_tflops_per_device * 1e12 * devices)


def accounting_metrics(shapes: CellShapes, stage: str, text_tokens, images, *, samples_processed: int,
                       wall_seconds: float, devices: int, peak_tflops_per_device: float | None,
                       supervised=None) -> dict:
    """The FLOPs part of ``train_metrics.json``: model FLOPs per sample (mean over the dataset's
    samples; also by part, the LM head as it runs: at ``supervised`` positions), total, achieved
    TFLOP/s (all devices and per device), and MFU when a peak is known (``None`` otherwise). Field
    names match what ``analysis/tables/speed.py`` reads."""
    text = np.asarray(text_tokens)
    n = max(int(text.size), 1)
    flops = training_flops(shapes, stage, text, images, supervised=supervised)
    by_part = {k: v / n for k, v in flops.as_dict().items()}
    total = by_part["total"] * samples_processed
    achieved = achieved_flops_per_second(total, wall_seconds)
    return {
        "flops_per_sample": by_part["total"],
        "flops_per_sample_by_part": by_part,
        "head_positions_per_sample": float(np.mean(supervised)) if supervised is not None and text.size else None,
        "flops_total": total,
        "achieved_tflops": achieved / 1e12,
        "achieved_tflops_per_device": achieved / devices / 1e12,
        "peak_tflops_per_device": peak_tflops_per_device,
        "mfu": mfu(achieved, peak_tflops_per_device, devices) if peak_tflops_per_device else None,
    }
