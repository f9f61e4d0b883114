"""The Trainer side of packed training: one Trainer batch is one rank's share of one optimizer step.

Packing makes the number of micro-batches per step vary (a step of short samples fills fewer rows),
which HF Trainer's fixed ``gradient_accumulation_steps`` cannot express. So the Trainer runs with
accumulation 1 and one "batch" per step (train/packing.py deals the parts), and ``training_step``
loops over the part's micro-batches: forward, loss, backward each, gradients synchronised only after
the last (DDP's ``no_sync``; DeepSpeed's gradient-accumulation boundary, which its engine lets a
client set before each forward and backward; accelerate's backward steps the engine at the boundary).

The loss of a micro-batch is its summed cross-entropy over the supervised tokens of the whole step
(all micro-batches, all ranks), times the rank count because DDP and DeepSpeed average gradients
over ranks: the step's gradient is that of the mean over its supervised tokens, exactly as an
unpacked step with transformers' items-in-batch normalisation (train/supervised_loss.py).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np

from llava_gemma.train.packing import PackedStepSampler
from llava_gemma.train.supervised_loss import supervised_loss


@dataclass(frozen=True)
class PackingPlan:
    """What the packed sampler needs beyond the dataset: the unpacked run's batch plan (its steps are
    the packed run's) and the row shape."""

    micro_batch: int  # the unpacked micro-batch: it decides the sampler's order, hence the steps
    global_batch: int
    row_length: int
    rows: int  # rows per micro-batch
    tokens: np.ndarray  # tokens per sample with this tower's image tokens
    items: np.ndarray  # supervised (shifted) labels per sample


class PackedStepMixin:
    """Put before a Trainer class (HF's or GaudiTrainer); needs ``packing`` (a ``PackingPlan``) and a
    ``train_dataset`` of ``PackedSteps`` around the prepared samples."""

    packing: PackingPlan
    group_by_modality = True
    length_group_steps = 1

    def _get_train_sampler(self, train_dataset=None):
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        samples = dataset.samples
        seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
        plan = self.packing
        return PackedStepSampler(samples.lengths, samples.has_image(), plan.tokens, plan.items,
                                 micro_batch=plan.micro_batch, global_batch=plan.global_batch,
                                 world_size=self.args.world_size, row_length=plan.row_length, rows=plan.rows,
                                 seed=seed, grouped=self.group_by_modality,
                                 group_steps=self.length_group_steps)

    def training_step(self, model, inputs, num_items_in_batch=None):
        model.train()
        if hasattr(self.optimizer, "train") and callable(self.optimizer.train):
            self.optimizer.train()
        inputs = self._prepare_inputs(inputs)
        micro_batches, step_items = inputs["micro_batches"], inputs["step_items"]
        unwrapped = self.accelerator.unwrap_model(model)
        ranks = self.accelerator.num_processes  # DDP and DeepSpeed average gradients over the ranks
        boundary = getattr(model, "set_gradient_accumulation_boundary", None)  # the DeepSpeed engine
        backward_kwargs = {"scale_wrt_gas": False} if boundary is not None else {}
        total = None
        for k, batch in enumerate(micro_batches):
            last = k == len(micro_batches) - 1
            self.accelerator.gradient_state._set_sync_gradients(last)
            if boundary is not None:
                boundary(last)  # before the forward, as DeepSpeed asks
            context = contextlib.nullcontext() if last else self.accelerator.no_sync(model)
            with context:
                with self.compute_loss_context_manager():
                    loss, _ = supervised_loss(model, batch, unwrapped=unwrapped, num_items_in_batch=step_items,
                                              chunk_rows=self.head_chunk_rows)
                    loss = loss * ranks
                self.accelerator.backward(loss, **backward_kwargs)
            _mark_step(self.args)
            total = loss.detach() if total is None else total + loss.detach()
        self.accelerator.gradient_state._set_sync_gradients(True)
        return total


def _mark_step(args) -> None:
    """Gaudi lazy mode: cut the graph after each micro-batch's backward, as GaudiTrainer does."""
    if getattr(args, "use_lazy_mode", False):
        import habana_frameworks.torch.core as htcore

        htcore.mark_step()
