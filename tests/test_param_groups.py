"""The connector's own learning rate (LLaVA's mm_projector_lr): param groups and the schedule."""

from __future__ import annotations

import torch
from llava_gemma.train.param_groups import split_connector_group


def test_connector_moves_to_its_own_groups_with_their_rate():
    lm, connector = torch.nn.Linear(4, 4), torch.nn.Linear(4, 4)
    decay = [lm.weight, connector.weight]
    no_decay = [lm.bias, connector.bias]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                                  lr=1e-4)
    split_connector_group(optimizer, list(connector.parameters()), 1e-3)
    groups = [(g["lr"], g["weight_decay"], {id(p) for p in g["params"]}) for g in optimizer.param_groups]
    assert (1e-4, 0.1, {id(lm.weight)}) in groups and (1e-4, 0.0, {id(lm.bias)}) in groups
    assert (1e-3, 0.1, {id(connector.weight)}) in groups and (1e-3, 0.0, {id(connector.bias)}) in groups
    # A schedule built afterwards scales each group from its own rate.
    sched = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.5)
    assert sorted(g["lr"] for g in optimizer.param_groups) == [5e-5, 5e-5, 5e-4, 5e-4]
    assert sched.base_lrs.count(1e-3) == 2


def test_deepspeed_config_leaves_the_optimizer_to_the_trainer_with_a_connector_rate():
    from llava_gemma.study.batch_plan import plan_batch
    from llava_gemma.train.deepspeed_config import deepspeed_config

    plan = plan_batch(8, 1, 8, stage="stage2")
    assert "optimizer" in deepspeed_config(2, "fp32", "cpu", plan)
    assert "optimizer" not in deepspeed_config(2, "fp32", "cpu", plan, client_optimizer=True)
