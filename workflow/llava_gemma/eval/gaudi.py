"""Generation on Gaudi through optimum-habana's static-shape path.

In lazy mode an HPU compiles a graph per input shape, so generation with the shapes of every batch
(each batch padded to its own longest prompt, the KV cache grown token by token) would compile at
almost every step. optimum-habana's answer, which its image-to-text examples use:

- ``adapt_transformers_to_gaudi()`` before loading: transformers' Gemma and ``GenerationMixin`` become
  optimum-habana's (``GaudiGemmaModel``, ``GaudiGenerationMixin``), which keep the KV cache in a buffer
  of fixed size and index it with ``token_idx``; right after it model/gaudi_repairs.py restores Gemma's
  layer order in optimum-habana's Gemma and transformers' own CLIP classes (both compute other networks);
- the LLaVA class is ours, ``LlavaForGaudiGeneration``: optimum-habana's
  ``GaudiLlavaForConditionalGeneration`` (its ``prepare_inputs_for_generation`` feeds the static-shape
  loop) with transformers' own forward instead of its one. Its forward is wrong for this study in
  transformers 4.55: it passes ``use_flash_attention`` to the vision tower (DINOv2's and CLIP's forward
  take no such argument: TypeError) and takes the logits from ``self.language_model(...)[0]``, which
  is now the base Gemma's hidden states, not the LM head's output (garbage answers, no error);
- ``wrap_in_hpu_graph(model)``: the forward is captured once per shape and replayed;
- ``generate(..., lazy_mode=True, hpu_graphs=True)`` with ``static_shapes=True`` in the generation
  settings: the sequence buffer is prompt + ``max_new_tokens`` long from the start;
- prompts left-padded to a multiple of ``PROMPT_BUCKET`` tokens, so a benchmark compiles a few
  prompt widths rather than one per batch.

Nothing here imports optimum.habana or habana_frameworks at module level (neither imports without
the Habana software); tests check the keyword arguments against optimum-habana's source.
tests/test_gaudi_cpu.py runs this very path on CPU, through optimum-habana's code, with a no-op
stand-in for the Habana runtime. What has not run here: any of this on a Gaudi (docs/backends.md).
"""

from __future__ import annotations

import functools
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
    # use_flash_attention: the Gaudi Gemma's fused SDPA kernel (it reaches the LM through
    # GaudiLlavaForConditionalGeneration.prepare_inputs_for_generation and our forward).
    return {"lazy_mode": True, "hpu_graphs": True, "static_shapes": True, "ignore_eos": False,
            "use_flash_attention": True}


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


def gaudi_llava_forward(self, input_ids=None, pixel_values=None, attention_mask=None, position_ids=None,
                        past_key_values=None, inputs_embeds=None, use_cache=None, token_idx=None, image_offset=None,
                        tokens_pos=None, use_flash_attention=False, flash_attention_recompute=False, **kwargs):
    """transformers' LLaVA forward (``LlavaModel`` then the LM head) for optimum-habana's generation loop.

    The towers get only what transformers gives them; the Gaudi keywords (``token_idx`` for the fixed
    KV buffer, fused attention) go to the LM alone. Pixels are used at the prompt step only (later steps
    feed one token). At the prompt step only the row at ``token_idx - 1`` goes through the LM head: the
    loop reads no other, and a 256k-row head over the whole padded prompt would be wasted."""
    from transformers.models.llava.modeling_llava import LlavaCausalLMOutputWithPast

    if tokens_pos is not None:  # optimum-habana's "legacy" path: prompts with unexpanded <image> tokens
        raise ValueError("LlavaForGaudiGeneration needs prompts with <image> expanded to every image token.")
    steps_one_token = input_ids is not None and input_ids.shape[1] == 1
    lm_kwargs = {"use_flash_attention": use_flash_attention, "flash_attention_recompute": flash_attention_recompute}
    if token_idx is not None:
        lm_kwargs["token_idx"] = token_idx + (image_offset or 0)
    outputs = self.model(input_ids=input_ids, pixel_values=None if steps_one_token else pixel_values,
                         attention_mask=attention_mask, position_ids=position_ids, past_key_values=past_key_values,
                         inputs_embeds=inputs_embeds, use_cache=use_cache, **lm_kwargs)
    hidden = outputs.last_hidden_state
    if token_idx is not None and hidden.shape[1] > 1:
        hidden = torch.index_select(hidden, 1, token_idx - 1)
    return LlavaCausalLMOutputWithPast(logits=self.lm_head(hidden), past_key_values=outputs.past_key_values,
                                       image_hidden_states=outputs.image_hidden_states)


@functools.cache
def gaudi_llava_class() -> type:
    """``LlavaForGaudiGeneration``: optimum-habana's LLaVA for generation, with ``gaudi_llava_forward``.
    Built on first use: optimum-habana imports only where the Habana software is (or a test's stand-in)."""
    from optimum.habana.transformers.models.llava.modeling_llava import GaudiLlavaForConditionalGeneration

    return type("LlavaForGaudiGeneration", (GaudiLlavaForConditionalGeneration,), {"forward": gaudi_llava_forward})


def load_for_gaudi(model_dir, dtype: torch.dtype, device: str = "hpu"):
    """The checkpoint as ``LlavaForGaudiGeneration`` on the HPU, its forward wrapped in HPU graphs
    (``device``: tests run the same on CPU with a stand-in for the Habana runtime)."""
    if importlib.util.find_spec("habana_frameworks") is None:
        raise GaudiEvaluationUnavailable("evaluation on hpu needs the Habana software (habana_frameworks); run it "
                                         "inside Intel's Gaudi PyTorch image.")
    try:
        from optimum.habana.transformers.modeling_utils import adapt_transformers_to_gaudi
    except ImportError as err:
        raise GaudiEvaluationUnavailable("evaluation on hpu needs optimum-habana; install it with "
                                         "`pip install -e .[hpu]` (see envs/hpu.yaml).") from err
    from habana_frameworks.torch.hpu import wrap_in_hpu_graph

    from llava_gemma.model import gaudi_repairs

    adapt_transformers_to_gaudi()  # before loading: swaps in the Gaudi Gemma and generation classes
    gaudi_repairs.repair()  # its Gemma layer and CLIP attention compute other networks (model/gaudi_repairs.py)
    model = gaudi_llava_class().from_pretrained(model_dir, torch_dtype=dtype).to(device).eval()
    return wrap_in_hpu_graph(model)
