"""The Trainer and its arguments for each backend: one entry point, three backends.

cpu and cuda run HF ``Trainer``; hpu runs optimum-habana's ``GaudiTrainer`` (train/gaudi.py). All
three share the arguments below and DeepSpeed (train/deepspeed_config.py); the batch values come
from the global batch and the process count (study/batch_plan.py).
"""

from __future__ import annotations

from pathlib import Path

from transformers import Trainer, TrainingArguments

from llava_gemma.study.batch_plan import BatchPlan, plan_batch
from llava_gemma.study.config import StageConfig
from llava_gemma.train.backends import TRAITS
from llava_gemma.train.deepspeed_config import deepspeed_config
from llava_gemma.train.gaudi import gaudi_trainer, gaudi_training_arguments
from llava_gemma.train.packed_step import PackedStepMixin, PackingPlan
from llava_gemma.train.param_groups import ConnectorLearningRateMixin
from llava_gemma.train.sampler import GroupedSamplerMixin, LongestFirstSamplerMixin
from llava_gemma.train.supervised_loss import SupervisedLossMixin


def common_arguments(stage: StageConfig, work_dir: Path, *, backend: str, precision: str, plan: BatchPlan,
                     seed: int, save_steps: int, gradient_checkpointing: bool | None = None) -> dict:
    """Keyword arguments of ``TrainingArguments`` that every backend shares (Gaudi's extends it)."""
    traits = TRAITS[backend]
    checkpointing = traits.gradient_checkpointing if gradient_checkpointing is None else gradient_checkpointing
    return dict(
        output_dir=str(work_dir),
        per_device_train_batch_size=plan.micro_batch_size,
        gradient_accumulation_steps=plan.accumulation_steps,
        learning_rate=stage.learning_rate,
        num_train_epochs=stage.epochs,
        max_steps=stage.max_steps or -1,
        lr_scheduler_type=stage.lr_scheduler,
        warmup_ratio=stage.warmup_ratio,
        weight_decay=stage.weight_decay,
        bf16=precision == "bf16",
        gradient_checkpointing=checkpointing,
        # Non-reentrant: the frozen tower's inputs need no grad, which the reentrant variant warns about.
        gradient_checkpointing_kwargs={"use_reentrant": False} if checkpointing else None,
        logging_steps=1,
        # Checkpoints for resuming (the resume logic lives in run_stage / train/checkpoints.py).
        save_strategy="steps" if save_steps else "no",
        save_steps=save_steps or 500,
        save_total_limit=2,
        save_safetensors=True,
        report_to=[],
        seed=seed,
        remove_unused_columns=False,
        dataloader_num_workers=traits.dataloader_workers,
        dataloader_drop_last=traits.drop_last_batch,
        disable_tqdm=True,
        use_cpu=backend == "cpu",
        # The Trainer's own AdamW (a connector rate of its own): torch's fused kernel on cuda, as DeepSpeed's is.
        **({"optim": "adamw_torch_fused"} if backend == "cuda" else {}),
        # A connector rate of its own needs the Trainer's optimizer (param groups), not DeepSpeed's.
        deepspeed=deepspeed_config(stage.zero_stage_for(backend), precision, backend, plan,
                                   client_optimizer=stage.connector_learning_rate is not None),
    )


def training_arguments(stage: StageConfig, work_dir: Path, *, backend: str, precision: str, world_size: int,
                       seed: int, save_steps: int, gradient_checkpointing: bool | None = None,
                       stage_name: str = "stage") -> TrainingArguments:
    """``TrainingArguments`` (cpu, cuda) or ``GaudiTrainingArguments`` (hpu) for one stage on
    ``world_size`` processes; ``gradient_checkpointing`` None takes the backend's default. A packed
    stage reads one step part per Trainer batch and accumulates inside it (train/packed_step.py)."""
    plan = plan_batch(stage.global_batch_size, world_size, stage.per_device_batch_size, stage=stage_name)
    if stage.packing_for(backend):
        plan = BatchPlan(world_size, world_size, 1, 1)
    common = common_arguments(stage, work_dir, backend=backend, precision=precision, plan=plan, seed=seed,
                              save_steps=save_steps, gradient_checkpointing=gradient_checkpointing)
    if backend == "hpu":
        return gaudi_training_arguments(common)
    return TrainingArguments(**common)


class MicroBatchMeanMixin:
    """LLaVA-1.5's normalisation: each micro-batch's mean loss, averaged over accumulation and ranks
    (Trainer then divides by the accumulation steps and passes no ``num_items_in_batch``)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.model_accepts_loss_kwargs = False


def trainer_mixin(group_by_modality_length: bool, connector_learning_rate: float | None,
                  packing: PackingPlan | None = None, loss_normalisation: str = "step_tokens",
                  length_group_steps: int = 1) -> type:
    """One class holding the Trainer behaviours a stage asks for; every stage takes the loss at
    supervised positions only (train/supervised_loss.py) and draws its longest step first (train/sampler.py);
    a packed stage packs each step's samples (train/packed_step.py)."""
    sampler = GroupedSamplerMixin if group_by_modality_length else LongestFirstSamplerMixin
    bases = ((PackedStepMixin,) if packing is not None else ()) + (SupervisedLossMixin, sampler) + (
        (ConnectorLearningRateMixin,) if connector_learning_rate is not None else ()) + (
        (MicroBatchMeanMixin,) if loss_normalisation == "micro_batch" else ())
    return type("StageMixin", bases, {"connector_learning_rate": connector_learning_rate, "packing": packing,
                                      "group_by_modality": group_by_modality_length,
                                      "length_group_steps": length_group_steps})


def make_trainer(backend: str, *, model, args: TrainingArguments, precision: str, train_dataset, data_collator,
                 callbacks=None, group_by_modality_length: bool = False,
                 connector_learning_rate: float | None = None, packing: PackingPlan | None = None,
                 loss_normalisation: str = "step_tokens", length_group_steps: int = 1) -> Trainer:
    """HF's Trainer, or GaudiTrainer on hpu; either one draws its batches from train/sampler.py
    (grouped with ``group_by_modality_length``, else a uniform shuffle; the longest step first),
    with ``connector_learning_rate`` the connector trains at its own rate (train/param_groups.py),
    and the loss is always the supervised positions' (train/supervised_loss.py), normalised over the
    step's supervised tokens or (``micro_batch``) as LLaVA-1.5's per-micro-batch mean. With
    ``packing`` the batches are packed step parts (train/packed_step.py)."""
    if packing is not None and loss_normalisation != "step_tokens":
        raise ValueError("packed training normalises the loss over the step's tokens only")
    mixin = trainer_mixin(group_by_modality_length, connector_learning_rate, packing, loss_normalisation,
                          length_group_steps)
    if backend == "hpu":
        return gaudi_trainer(model=model, args=args, precision=precision, train_dataset=train_dataset,
                             data_collator=data_collator, callbacks=callbacks, mixin=mixin)
    trainer_class = type("StageTrainer", (mixin, Trainer), {})
    return trainer_class(model=model, args=args, train_dataset=train_dataset, data_collator=data_collator,
                         callbacks=callbacks)
