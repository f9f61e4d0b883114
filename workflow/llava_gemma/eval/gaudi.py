"""Generation on Gaudi through optimum-habana's static-shape path.

In lazy mode an HPU compiles a graph per input shape, so generation with the shapes of every batch
(each batch padded to its own longest prompt, the KV cache grown token by token) would compile at
almost every step. optimum-habana's answer, which its image-to-text examples use:

- ``adapt_transformers_to_gaudi()`` before loading: transformers' ``LlavaForConditionalGeneration``
  and ``GenerationMixin`` become optimum-habana's (``GaudiLlavaForConditionalGeneration``,
  ``GaudiGenerationMixin``), which keep the KV cache in a buffer of fixed size;
- ``wrap_in_hpu_graph(model)``: the forward is captured once per shape and replayed;
- ``generate(..., lazy_mode=True, hpu_graphs=True)`` with ``static_shapes=True`` in the generation
  settings: the sequence buffer is prompt + ``max_new_tokens`` long from the start;
- prompts left-padded to a multiple of ``PROMPT_BUCKET`` tokens, so a benchmark compiles a few
  prompt widths rather than one per batch.

Nothing here imports optimum.habana or habana_frameworks at module level (neither imports without
the Habana software); tests check the keyword arguments against optimum-habana's source.
What has not run here: any of this on a Gaudi (see README).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field

import torch

from llava_gemma.errors import UserError

# Prompt widths are rounded up to a multiple of this: a LLaVA prompt is 576 (CLIP) or 256 (DINOv2)
# image tokens plus tens of text tokens, so a benchmark sees one or two widths.
PROMPT_BUCKET = 128


def gaudi_generate_kwargs() -> dict:
    """Keywords for optimum-habana's ``generate``: ``lazy_mode`` and ``hpu_graphs`` are parameters of
    ``GaudiGenerationMixin.generate``; the rest are ``GaudiGenerationConfig`` settings."""
    return {"lazy_mode": True, "hpu_graphs": True, "static_shapes": True, "ignore_eos": False}


@dataclass(frozen=True)
class StaticShapes:
    """How a batch is shaped and generated on HPU."""

    bucket: int = PROMPT_BUCKET
    generate_kwargs: dict = field(default_factory=gaudi_generate_kwargs)

    def pad(self, inputs: dict[str, torch.Tensor], pad_token_id: int) -> dict[str, torch.Tensor]:
        """``input_ids`` and ``attention_mask`` left-padded to the next multiple of ``bucket``."""
        width = inputs["input_ids"].shape[1]
        extra = -width % self.bucket
        if not extra:
            return inputs
        rows = inputs["input_ids"].shape[0]
        padded = dict(inputs)
        padded["input_ids"] = torch.cat([inputs["input_ids"].new_full((rows, extra), pad_token_id),
                                         inputs["input_ids"]], dim=1)
        padded["attention_mask"] = torch.cat([inputs["attention_mask"].new_zeros((rows, extra)),
                                              inputs["attention_mask"]], dim=1)
        return padded


def static_shapes_for(model) -> StaticShapes | None:
    """Static shapes for a model on HPU; None elsewhere (CPU and CUDA pad each batch to its longest)."""
    return StaticShapes() if model.device.type == "hpu" else None


class GaudiEvaluationUnavailable(UserError, RuntimeError):
    pass


def load_for_gaudi(model_dir, dtype: torch.dtype):
    """The checkpoint as optimum-habana's LLaVA on the HPU, its forward wrapped in HPU graphs."""
    if importlib.util.find_spec("habana_frameworks") is None:
        raise GaudiEvaluationUnavailable("evaluation on hpu needs the Habana software (habana_frameworks); run it "
                                         "inside Intel's Gaudi PyTorch image.")
    try:
        from optimum.habana.transformers.modeling_utils import adapt_transformers_to_gaudi
    except ImportError as err:
        raise GaudiEvaluationUnavailable("evaluation on hpu needs optimum-habana; install it with "
                                         "`pip install -e .[hpu]` (see envs/hpu.yaml).") from err
    from habana_frameworks.torch.hpu import wrap_in_hpu_graph

    adapt_transformers_to_gaudi()  # before loading: swaps in the Gaudi model and generation classes
    import transformers.models.llava.modeling_llava as llava

    model = llava.LlavaForConditionalGeneration.from_pretrained(model_dir, torch_dtype=dtype).to("hpu").eval()
    return wrap_in_hpu_graph(model)
