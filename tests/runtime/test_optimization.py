"""Learning-rate schedules per epoch and the recipe's optimizer."""

from __future__ import annotations

import math

import pytest
import torch

from kdspec.plan import Recipe, Schedule
from kdspec.runtime.optimization import (
    build_optimizer,
    build_scheduler,
    current_lr,
    lr_factor,
    set_step_rate,
    warmup_factor,
)


def test_cosine_starts_at_full_rate_and_decays() -> None:
    s = Schedule(kind="cosine")
    assert lr_factor(s, 0, 4) == 1.0
    assert lr_factor(s, 2, 4) == pytest.approx(0.5)
    assert lr_factor(s, 3, 4) == pytest.approx(0.5 * (1 + math.cos(math.pi * 3 / 4)))


def test_warmup_then_cosine() -> None:
    s = Schedule(kind="cosine", warmup_epochs=2)
    assert [lr_factor(s, e, 6) for e in range(3)] == pytest.approx([1 / 3, 2 / 3, 1.0])


def test_step_milestones_are_one_based_epoch_numbers() -> None:
    s = Schedule(kind="multistep", milestones=(2, 4), gamma=0.1)
    assert [lr_factor(s, e, 6) for e in range(6)] == pytest.approx(
        [1, 1, 0.1, 0.1, 0.01, 0.01])
    assert lr_factor(Schedule(kind="constant"), 5, 6) == 1.0


def test_scheduler_steps_once_per_epoch() -> None:
    model = torch.nn.Linear(2, 2)
    recipe = Recipe(epochs=4, batch_size=8, lr=0.2, schedule=Schedule(kind="step", milestones=(1,),
                                                                         gamma=0.5))
    opt = build_optimizer(model, recipe)
    sched = build_scheduler(opt, recipe)
    rates = []
    for _ in range(3):
        rates.append(current_lr(opt))
        opt.step()
        sched.step()
    assert rates == pytest.approx([0.2, 0.1, 0.1])


@pytest.mark.parametrize(("name", "cls"), [("sgd", torch.optim.SGD), ("adam", torch.optim.Adam),
                                           ("adamw", torch.optim.AdamW)])
def test_optimizer_kind_and_hyperparameters(name: str, cls: type) -> None:
    recipe = Recipe(epochs=1, batch_size=8, lr=0.01, optimizer=name, weight_decay=1e-3)  # type: ignore[arg-type]
    opt = build_optimizer(torch.nn.Linear(2, 2), recipe)
    assert isinstance(opt, cls)
    assert opt.param_groups[0]["weight_decay"] == 1e-3 and current_lr(opt) == 0.01


def test_linear_decays_from_the_full_rate_after_warmup() -> None:
    s = Schedule(kind="linear", warmup_epochs=1)
    assert [lr_factor(s, e, 5) for e in range(5)] == pytest.approx([0.5, 1.0, 0.75, 0.5, 0.25])


def test_warmup_steps_scale_the_epoch_rate_without_accumulating() -> None:
    s = Schedule(kind="constant", warmup_steps=4)
    assert [warmup_factor(s, k) for k in range(6)] == pytest.approx(
        [0.25, 0.5, 0.75, 1.0, 1.0, 1.0])
    model = torch.nn.Linear(2, 2)
    recipe = Recipe(epochs=2, batch_size=8, lr=0.2, schedule=s)
    opt = build_optimizer(model, recipe)
    sched = build_scheduler(opt, recipe)
    for step in range(6):  # the factor multiplies the scheduler's rate, never its own result
        set_step_rate(opt, sched, warmup_factor(s, step))
        assert current_lr(opt) == pytest.approx(0.2 * min(1.0, (step + 1) / 4))
