"""The connector's own learning rate in a stage that also trains the LM (LLaVA's ``mm_projector_lr``).

LLaVA's trainer gives the projector a separate learning rate when ``mm_projector_lr`` is set; the
LLaVA-1.5 recipe leaves it unset (one rate for everything), so the paper config does too. The toy
study sets it: its LMs arrive with a skill that a connector-sized rate would erase, while a fresh
connector (the `skip` cells) needs that rate to learn anything in a few hundred steps.
"""

from __future__ import annotations

import torch


def split_connector_group(optimizer: torch.optim.Optimizer, connector: list[torch.nn.Parameter],
                          learning_rate: float) -> None:
    """Move the connector's parameters out of every group into groups of their own at ``learning_rate``.

    Runs before the first step (no optimizer state yet) and before the scheduler is built, so the
    schedule scales each group from its own starting rate. Other hyperparameters (weight decay,
    betas) stay those of the group a parameter came from.
    """
    ids = {id(p) for p in connector}
    for group in list(optimizer.param_groups):
        moved = [p for p in group["params"] if id(p) in ids]
        if not moved:
            continue
        group["params"] = [p for p in group["params"] if id(p) not in ids]
        optimizer.add_param_group({**{k: v for k, v in group.items() if k != "params"}, "params": moved,
                                   "lr": learning_rate, "initial_lr": learning_rate})
    optimizer.param_groups[:] = [g for g in optimizer.param_groups if g["params"]]


class ConnectorLearningRateMixin:
    """Put before a Trainer class: after the Trainer builds its optimizer, the connector gets its rate."""

    connector_learning_rate: float

    def create_optimizer(self):
        optimizer = super().create_optimizer()
        projector = self.model.model.multi_modal_projector
        target = getattr(optimizer, "optimizer", optimizer)  # accelerate may wrap it
        split_connector_group(target, [p for p in projector.parameters() if p.requires_grad],
                              self.connector_learning_rate)
        return optimizer
