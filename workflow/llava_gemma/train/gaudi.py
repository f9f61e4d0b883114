"""The hpu path: optimum-habana's GaudiTrainer, GaudiTrainingArguments and GaudiConfig.

Nothing here imports optimum.habana at module level: on a machine without the Habana software its
import fails (an IndexError in its version check), so only the hpu path touches it, through
``_optimum_habana``. The keyword arguments are plain dicts built by pure functions, so tests check
them against the installed optimum-habana source without importing it (tests/test_gaudi.py).

Precision: the Gaudi mixed-precision setting (``use_torch_autocast`` + ``bf16``) applies when
DeepSpeed is off; with DeepSpeed on, GaudiTrainer turns autocast off and DeepSpeed's ``bf16``
section governs (see train/deepspeed_config.py). Habana's FusedAdamW reaches DeepSpeed as the
client optimizer (HF sets ``zero_allow_untested_optimizer`` for it); with DeepSpeed, clipping is
DeepSpeed's ``gradient_clipping``, and the fused clip-norm serves runs without DeepSpeed.
"""

from __future__ import annotations

import contextlib
import importlib.util
import inspect
import os
from collections.abc import Iterator

from llava_gemma.errors import UserError

# Steps left out of GaudiTrainer's throughput figure: lazy mode compiles graphs in the first steps.
THROUGHPUT_WARMUP_STEPS = 3


# Lazy mode: ops are queued and compiled into graphs cut at each ``mark_step``. Habana's PyTorch now
# starts in eager mode unless this is set before it is imported; the launcher sets it (train/launch.py).
LAZY_MODE_ENV = "PT_HPU_LAZY_MODE"
# Keywords of optimum-habana's Gaudi Gemma (``GaudiGemmaModel.forward`` -> ``GaudiGemmaAttention``) that
# switch its attention to Habana's fused SDPA kernel; recompute keeps the attention scores out of the
# saved activations (flash-attention style). The padding mask is kept (no ``flash_attention_causal_mask``).
FUSED_SDPA_KWARGS = {"use_flash_attention": True, "flash_attention_recompute": True}


class OptimumHabanaUnavailable(UserError, RuntimeError):
    pass


def hpu_execution_mode(environ=os.environ) -> str:
    """``lazy`` or ``eager``: what Habana's PyTorch runs in, from the variable it reads at import
    (unset means eager in the Gaudi software of 2025 on)."""
    return "lazy" if environ.get(LAZY_MODE_ENV) == "1" else "eager"


@contextlib.contextmanager
def training_without_cache(model) -> Iterator[None]:
    """``use_cache`` off in every config of the model while it trains, restored afterwards (the saved
    checkpoint keeps its generation setting). With gradient checkpointing transformers forces
    ``use_cache=False`` inside each decoder layer, while optimum-habana's Gaudi Gemma reads
    ``config.use_cache`` and then a cache entry the layer never returned (``layer_outputs[1]``:
    IndexError at step 1). Training never uses the cache, so every backend turns it off."""
    configs = {}
    for module in model.modules():
        config = getattr(module, "config", None)
        for candidate in (config, getattr(config, "text_config", None)):  # LLaVA's config nests the LM's
            if candidate is not None and hasattr(candidate, "use_cache"):
                configs[id(candidate)] = candidate
    before = {key: config.use_cache for key, config in configs.items()}
    for config in configs.values():
        config.use_cache = False
    try:
        yield
    finally:
        for key, config in configs.items():
            config.use_cache = before[key]


def enable_fused_sdpa(model) -> dict:
    """Route the LM's attention through Habana's fused SDPA; returns the keywords it now receives.

    GaudiTrainer passes ``use_flash_attention`` only to models whose own ``model_type`` is gemma, llama
    and the like (``_get_input_update_settings``), never to a LLaVA, and the Gaudi Gemma forces eager
    attention otherwise. So a forward pre-hook adds the keywords on the LM itself
    (``model.model.language_model``), whichever model calls it; the vision tower never sees them."""
    lm = model.model.language_model
    accepted = inspect.signature(lm.forward).parameters
    if not set(FUSED_SDPA_KWARGS) <= set(accepted):
        return {}  # not optimum-habana's Gemma: nothing to switch on

    def add_kwargs(module, args, kwargs):
        return args, {**kwargs, **FUSED_SDPA_KWARGS}

    lm.register_forward_pre_hook(add_kwargs, with_kwargs=True)
    return dict(FUSED_SDPA_KWARGS)


def gaudi_config_kwargs(precision: str) -> dict:
    """Arguments of ``GaudiConfig``: Habana's fused AdamW and clip-norm, bf16 autocast if asked."""
    return {"use_fused_adam": True, "use_fused_clip_norm": True, "use_torch_autocast": precision == "bf16"}


def gaudi_argument_kwargs() -> dict:
    """What ``GaudiTrainingArguments`` adds to the arguments every backend shares."""
    return {"use_habana": True, "use_lazy_mode": True, "throughput_warmup_steps": THROUGHPUT_WARMUP_STEPS}


def _optimum_habana():
    """The optimum-habana classes, or one clear error on a machine that cannot run them."""
    if importlib.util.find_spec("habana_frameworks") is None:
        # Checked first: importing optimum.habana takes half a minute only to fail in its version check.
        raise _stack_missing()
    try:
        from optimum.habana import GaudiConfig, GaudiTrainer, GaudiTrainingArguments
    except ModuleNotFoundError as err:
        if not (err.name or "").startswith("optimum"):
            raise _stack_missing() from err
        raise OptimumHabanaUnavailable(
            f"train.backend hpu needs optimum-habana ({err.name} is missing); install it with "
            "`pip install -e .[hpu]` inside Intel's Gaudi PyTorch image (see envs/hpu.yaml).") from err
    except (ImportError, IndexError) as err:  # IndexError: its version check without the Habana stack
        raise _stack_missing() from err
    return GaudiConfig, GaudiTrainer, GaudiTrainingArguments


def _stack_missing() -> OptimumHabanaUnavailable:
    return OptimumHabanaUnavailable(
        "optimum-habana is installed but cannot load: the Habana software stack (habana_frameworks, Synapse) is "
        "missing; run on a Gaudi node inside Intel's Gaudi PyTorch image, or set train.backend to cpu or cuda.")


def gaudi_training_arguments(common: dict):
    """``GaudiTrainingArguments`` from the shared arguments plus the Gaudi ones."""
    from llava_gemma.model import gaudi_repairs

    _, _, arguments_class = _optimum_habana()
    arguments = arguments_class(**common, **gaudi_argument_kwargs())  # runs adapt_transformers_to_gaudi()
    gaudi_repairs.repair()  # before the model loads: its Gemma layer and CLIP attention are wrong
    return arguments


def gaudi_trainer(*, model, args, precision: str, train_dataset, data_collator, callbacks=None, mixin=None):
    config_class, trainer_class, _ = _optimum_habana()
    if mixin is not None:  # e.g. the grouped sampler of train/sampler.py
        trainer_class = type("Grouped" + trainer_class.__name__, (mixin, trainer_class), {})
    return trainer_class(model=model, gaudi_config=config_class(**gaudi_config_kwargs(precision)), args=args,
                         train_dataset=train_dataset, data_collator=data_collator, callbacks=callbacks)
