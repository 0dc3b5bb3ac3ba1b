"""The epoch loop on the real digits data: determinism, lockstep = solo, resume = uninterrupted,
divergence detection."""

from __future__ import annotations

import math

import pytest
import torch

from kdspec.plan import Run
from kdspec.runtime import checkpoints
from kdspec.runtime.data import load_dataset
from kdspec.runtime.interfaces import LoadedDataset
from kdspec.runtime.teacher_signal import LiveTeacher
from kdspec.runtime.training import (
    DIVERGENCE_FACTOR,
    BatchStream,
    EpochResult,
    LoopHooks,
    Trainee,
    check_loss,
    new_trainee,
    train_lockstep,
)
from tests.factories import dataset_spec, tiny_plan, tiny_recipe

pytestmark = pytest.mark.integration  # tiny real trainings on the digits data

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def digits() -> LoadedDataset:
    return load_dataset(dataset_spec("digits", train_subset=640), device=CPU)


def _plan(epochs: int = 1, lr: float = 0.05):
    return tiny_plan(teacher_arch="lenet5", student_arch="lenet5", temperatures=(2.0, 4.0, 8.0),
                     seeds=(0,), teacher_recipe=tiny_recipe(epochs=1, batch_size=128),
                     student_recipe=tiny_recipe(epochs=epochs, batch_size=128, lr=lr))


def _trainee(run: Run, data: LoadedDataset) -> Trainee:
    return new_trainee(run, in_channels=data.channels, image_size=data.image_size,
                       num_classes=data.num_classes, device=CPU)


def _teacher(data: LoadedDataset) -> LiveTeacher:
    """A teacher trained for one epoch here (its quality is irrelevant, only determinism)."""
    plan = _plan()
    teacher = _trainee(plan.runs_of(plan.studies[0], "teacher")[0], data)
    train_lockstep([teacher], BatchStream(data.train, seed=0, batch_size=128),
                   teacher=None, epochs=1)
    return LiveTeacher(teacher.model)


def _weights(trainee: Trainee) -> list[torch.Tensor]:
    return [p.detach().clone() for p in trainee.model.state_dict().values()]


def _distilled(plan) -> tuple[Run, ...]:
    return plan.runs_of(plan.studies[0], "distilled")


def test_initial_weights_depend_on_the_seed_only(digits: LoadedDataset) -> None:
    run = _distilled(_plan())[0]
    first = _weights(_trainee(run, digits))
    torch.rand(1000)  # moving the global RNG must not matter
    second = _weights(_trainee(run, digits))
    assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True))
    other = run.model_copy(update={"seed": 1})
    assert not all(torch.equal(a, b)
                   for a, b in zip(first, _weights(_trainee(other, digits)), strict=True))


def test_the_same_run_twice_gives_identical_weights(digits: LoadedDataset) -> None:
    plan = _plan(epochs=2)
    run = plan.runs_of(plan.studies[0], "student")[0]
    results = []
    for _ in range(2):
        trainee = _trainee(run, digits)
        train_lockstep([trainee], BatchStream(digits.train, seed=run.seed, batch_size=128),
                       teacher=None, epochs=2)
        results.append(_weights(trainee))
    assert all(torch.equal(a, b) for a, b in zip(*results, strict=True))


def test_lockstep_members_equal_their_solo_training(digits: LoadedDataset) -> None:
    teacher = _teacher(digits)
    runs = _distilled(_plan(epochs=2))
    group = [_trainee(r, digits) for r in runs]
    train_lockstep(group, BatchStream(digits.train, seed=0, batch_size=128),
                   teacher=teacher, epochs=2)
    for run, member in zip(runs, group, strict=True):
        solo = _trainee(run, digits)
        train_lockstep([solo], BatchStream(digits.train, seed=0, batch_size=128),
                       teacher=teacher, epochs=2)
        assert all(torch.equal(a, b)
                   for a, b in zip(_weights(member), _weights(solo), strict=True)), run.temperature
    # Different temperatures really trained differently.
    assert not torch.equal(_weights(group[0])[0], _weights(group[1])[0])


def _straight_and_resumed(run: Run, data: LoadedDataset, folder) -> tuple[Trainee, Trainee]:
    """``run`` trained 3 epochs straight through, and trained 1 epoch, checkpointed, restored
    into a fresh trainee and trained on to 3."""
    straight = _trainee(run, data)
    train_lockstep([straight], BatchStream(data.train, seed=0, batch_size=128),
                   teacher=None, epochs=3)
    interrupted = _trainee(run, data)
    train_lockstep([interrupted], BatchStream(data.train, seed=0, batch_size=128),
                   teacher=None, epochs=1)
    path = checkpoints.save(checkpoints.resume_state(interrupted), folder / "last.pt")
    resumed = _trainee(run, data)
    checkpoints.restore_trainee(resumed, checkpoints.load(path))
    assert resumed.epochs_done == 1
    train_lockstep([resumed], BatchStream(data.train, seed=0, batch_size=128),
                   teacher=None, epochs=3)
    return straight, resumed


def test_resuming_from_a_checkpoint_equals_training_straight_through(digits: LoadedDataset,
                                                                     tmp_path) -> None:
    plan = _plan(epochs=3)
    run = plan.runs_of(plan.studies[0], "student")[0]
    straight, resumed = _straight_and_resumed(run, digits, tmp_path)
    assert all(torch.equal(a, b)
               for a, b in zip(_weights(straight), _weights(resumed), strict=True))


def test_epoch_results_report_loss_and_the_epochs_learning_rate(digits: LoadedDataset) -> None:
    plan = _plan(epochs=2)
    run = plan.runs_of(plan.studies[0], "student")[0]
    seen: list[EpochResult] = []
    trainee = _trainee(run, digits)
    train_lockstep([trainee], BatchStream(digits.train, seed=0, batch_size=128),
                   teacher=None, epochs=2,
                   hooks=LoopHooks(on_epoch_end=seen.extend))
    assert [r.epoch for r in seen] == [0, 1]
    assert seen[0].lr == pytest.approx(0.05)  # cosine: full rate in the first epoch
    assert seen[1].lr == pytest.approx(0.05 * 0.5 * (1 + math.cos(math.pi / 2)))
    assert seen[1].train_loss < seen[0].train_loss
    assert all(r.failure is None for r in seen) and trainee.epochs_done == 2


def test_a_nan_loss_fails_only_that_member(digits: LoadedDataset) -> None:
    plan = _plan(epochs=2)
    good_run = plan.runs_of(plan.studies[0], "student")[0]
    bad_run = good_run.model_copy(update={"recipe": tiny_recipe(epochs=2, batch_size=128,
                                                                lr=1e10)})
    good, bad = _trainee(good_run, digits), _trainee(bad_run, digits)
    seen: list[EpochResult] = []
    train_lockstep([good, bad], BatchStream(digits.train, seed=0, batch_size=128), teacher=None,
                   epochs=2, hooks=LoopHooks(on_epoch_end=seen.extend))
    assert bad.failure is not None and good.failure is None
    assert [r.trainee is bad for r in seen].count(True) == 1  # stopped after its first epoch
    assert good.epochs_done == 2


def test_check_loss_rules() -> None:
    assert check_loss(1.0, 2.0, 0) is None
    assert "non-finite" in (check_loss(float("nan"), 2.0, 0) or "")
    assert "non-finite" in (check_loss(float("inf"), 2.0, 3) or "")
    assert "diverging" in (check_loss(2.0 * DIVERGENCE_FACTOR + 1, 2.0, 1) or "")
    assert check_loss(2.0 * DIVERGENCE_FACTOR - 1, 2.0, 1) is None


def test_members_must_start_at_the_same_epoch(digits: LoadedDataset) -> None:
    a, b = (_trainee(r, digits) for r in _distilled(_plan())[:2])
    b.epochs_done = 1
    with pytest.raises(ValueError, match="same epoch"):
        train_lockstep([a, b], BatchStream(digits.train, seed=0, batch_size=128), teacher=None,
                       epochs=2)


def test_warmup_steps_resume_exactly_and_change_the_result(digits: LoadedDataset,
                                                           tmp_path) -> None:
    from kdspec.plan import Schedule

    plan = _plan(epochs=3)
    run = plan.runs_of(plan.studies[0], "student")[0]
    warm = run.model_copy(update={"recipe": run.recipe.model_copy(update={
        "schedule": Schedule(kind="linear", warmup_steps=7)})})  # 5 batches an epoch
    straight, resumed = _straight_and_resumed(warm, digits, tmp_path)
    assert all(torch.equal(a, b)
               for a, b in zip(_weights(straight), _weights(resumed), strict=True))
    cold = _trainee(run.model_copy(update={"recipe": run.recipe.model_copy(update={
        "schedule": Schedule(kind="linear")})}), digits)
    train_lockstep([cold], BatchStream(digits.train, seed=0, batch_size=128),
                   teacher=None, epochs=3)
    assert not all(torch.equal(a, b)
                   for a, b in zip(_weights(straight), _weights(cold), strict=True))
