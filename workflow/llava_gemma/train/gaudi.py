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

import importlib.util

from llava_gemma.errors import UserError

# Steps left out of GaudiTrainer's throughput figure: lazy mode compiles graphs in the first steps.
THROUGHPUT_WARMUP_STEPS = 3


class OptimumHabanaUnavailable(UserError, RuntimeError):
    pass


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
    _, _, arguments_class = _optimum_habana()
    return arguments_class(**common, **gaudi_argument_kwargs())


def gaudi_trainer(*, model, args, precision: str, train_dataset, data_collator, callbacks=None, mixin=None):
    config_class, trainer_class, _ = _optimum_habana()
    if mixin is not None:  # e.g. the grouped sampler of train/sampler.py
        trainer_class = type("Grouped" + trainer_class.__name__, (mixin, trainer_class), {})
    return trainer_class(model=model, gaudi_config=config_class(**gaudi_config_kwargs(precision)), args=args,
                         train_dataset=train_dataset, data_collator=data_collator, callbacks=callbacks)
