"""DeepSpeed configs for the two stages, per backend.

The batch values are written out from the ``BatchPlan`` (not "auto"): HF Trainer then checks its
own arguments against them, and DeepSpeed asserts micro-batch x accumulation x world size ==
global batch when the engine starts, so a wrong device count stops the run instead of silently
training with another batch. The remaining "auto" values are filled by the Trainer from its
arguments (learning rate, clipping, ...).

cuda and cpu use torch's AdamW through DeepSpeed (``torch_adam``; fused on cuda), never DeepSpeed's
fused_adam op, which is compiled on the node and needs nvcc there. A stage that gives the connector its
own learning rate uses the Trainer's AdamW with param groups instead (as LLaVA's trainer does for
``mm_projector_lr``; ``adamw_torch_fused`` on cuda, train/trainer_setup.py).
hpu uses the Gaudi form of optimum-habana's docs: no optimizer section (GaudiTrainer hands
DeepSpeed Habana's FusedAdamW, see train/gaudi.py), and overlap_comm, reduce_scatter and
contiguous_gradients off, as in Habana's validated ZeRO configs.
"""

from __future__ import annotations

from llava_gemma.study.batch_plan import BatchPlan


def deepspeed_config(zero_stage: int, precision: str, backend: str, batch: BatchPlan,
                     client_optimizer: bool = False) -> dict:
    """``client_optimizer``: the Trainer builds the optimizer (param groups with their own rates) and
    hands it to DeepSpeed, so the config names none."""
    config: dict = {
        "train_batch_size": batch.global_batch_size,
        "train_micro_batch_size_per_gpu": batch.micro_batch_size,
        "gradient_accumulation_steps": batch.accumulation_steps,
        "gradient_clipping": "auto",
        "zero_optimization": _zero_section(zero_stage, backend),
        "bf16": {"enabled": precision == "bf16"},
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
    }
    if backend != "hpu" and not client_optimizer:
        params = {"lr": "auto", "betas": "auto", "eps": "auto", "weight_decay": "auto", "torch_adam": True}
        if backend == "cuda":
            params["fused"] = True  # reaches torch.optim.AdamW(fused=True): one CUDA kernel, nothing to compile
        config["optimizer"] = {"type": "AdamW", "params": params}
    return config


def _zero_section(zero_stage: int, backend: str) -> dict:
    if backend == "hpu":
        zero: dict = {"stage": zero_stage, "overlap_comm": False, "reduce_scatter": False,
                      "contiguous_gradients": False}
    else:
        zero = {"stage": zero_stage, "contiguous_gradients": True, "overlap_comm": backend == "cuda"}
    if zero_stage == 3:
        zero.update({
            "stage3_gather_16bit_weights_on_model_save": True,  # save_model writes whole weights
            "stage3_param_persistence_threshold": "auto",
            "stage3_prefetch_bucket_size": "auto",
            "reduce_bucket_size": "auto",
        })
    return zero
