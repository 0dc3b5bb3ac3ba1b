"""Optimizers and learning-rate schedules built from a plan's :class:`Recipe`.

The learning rate changes once per epoch (not per batch): a schedule is a function of the epoch
index alone, so a run resumed from the checkpoint of epoch k continues with exactly the rate it
would have had, and the ``lr`` metric logged per epoch is the rate that epoch trained with. The
one per-step part is ``warmup_steps`` (transformer fine-tuning): during the first steps the
epoch's rate is scaled by a factor that depends on the step number alone.
"""

from __future__ import annotations

import math

import torch
from torch.optim import SGD, Adam, AdamW, Optimizer
from torch.optim.lr_scheduler import LambdaLR, LRScheduler

from kdspec.plan import Recipe, Schedule


def build_optimizer(model: torch.nn.Module, recipe: Recipe) -> Optimizer:
    """The recipe's optimizer over every parameter of ``model`` (weight decay on all of them,
    as the CIFAR ResNet recipes of He et al. do)."""
    params = list(model.parameters())
    if recipe.optimizer == "sgd":
        return SGD(params, lr=recipe.lr, momentum=recipe.momentum, nesterov=recipe.nesterov,
                   weight_decay=recipe.weight_decay)
    if recipe.optimizer == "adam":
        return Adam(params, lr=recipe.lr, weight_decay=recipe.weight_decay)
    return AdamW(params, lr=recipe.lr, weight_decay=recipe.weight_decay)


def lr_factor(schedule: Schedule, epoch: int, epochs: int) -> float:
    """Multiplier of the base learning rate during ``epoch`` (0-based) of ``epochs``.

    - warmup: linear from ``1 / (warmup_epochs + 1)`` up to 1 over the first ``warmup_epochs``;
    - constant: 1;
    - cosine: ``0.5 * (1 + cos(pi * e / E))`` over the epochs after warmup (e from 0, E of them),
      so the first epoch trains at the full rate and the last one close to 0;
    - linear: ``1 - e / E`` over the same epochs (the decay of BERT fine-tuning, per epoch);
    - step / multistep: ``gamma ** (number of milestones <= epoch)`` (milestones are 1-based
      epoch numbers: milestone 100 means the rate drops from the 101st epoch on; the plan has
      one list for both kinds, so they behave the same).
    """
    if epoch < schedule.warmup_epochs:
        return (epoch + 1) / (schedule.warmup_epochs + 1)
    if schedule.kind == "constant":
        return 1.0
    if schedule.kind in ("cosine", "linear"):
        span = max(epochs - schedule.warmup_epochs, 1)
        progress = (epoch - schedule.warmup_epochs) / span
        if schedule.kind == "linear":
            return 1.0 - progress
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    passed = sum(1 for m in schedule.milestones if m <= epoch)
    return float(schedule.gamma**passed)


def warmup_factor(schedule: Schedule, step: int) -> float:
    """Multiplier of the epoch's rate at optimizer step ``step`` (0-based, counted from the
    run's first step): ``(step + 1) / warmup_steps`` during the first ``warmup_steps``, then 1.
    A function of the step alone, so a resumed run continues it exactly."""
    if step < schedule.warmup_steps:
        return (step + 1) / schedule.warmup_steps
    return 1.0


def set_step_rate(optimizer: Optimizer, scheduler: LRScheduler, factor: float) -> None:
    """Train the next step at the scheduler's epoch rate times ``factor`` (the per-epoch
    scheduler recomputes from its base rate, so the factor never accumulates)."""
    for group, rate in zip(optimizer.param_groups, scheduler.get_last_lr(), strict=True):
        group["lr"] = rate * factor


def build_scheduler(optimizer: Optimizer, recipe: Recipe) -> LambdaLR:
    """A per-epoch scheduler: call ``step()`` once at the end of every epoch."""
    return LambdaLR(optimizer,
                    lr_lambda=lambda epoch: lr_factor(recipe.schedule, epoch, recipe.epochs))


def current_lr(optimizer: Optimizer) -> float:
    """The learning rate of the first parameter group (kdspec uses one group)."""
    return float(optimizer.param_groups[0]["lr"])
