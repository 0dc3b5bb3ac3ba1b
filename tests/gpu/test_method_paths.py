"""Every distillation method on the device under test: one lockstep group holding a member of
each (kd, dkd, dist, fitnet, at, crd, label smoothing matched and fixed), its teacher's one
forward per batch reading every member's feature points, the students in the device's training
layout (channels-last on CUDA). In fp32 each member equals the same run trained alone (bit for
bit on the CPU, to rounding on CUDA: see test_group_paths.py); under bf16 autocast, where the
device has it, every member trains to a finite loss with its method's modules on the device."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import pytest
import torch

from kdspec.plan import Run
from kdspec.runtime.data import load_dataset
from kdspec.runtime.interfaces import AutocastFactory, LoadedDataset
from kdspec.runtime.method_setup import MethodSetup, prepare_methods
from kdspec.runtime.precision import configure_cuda_numerics
from kdspec.runtime.teacher_signal import LiveTeacher, group_reads
from kdspec.runtime.training import (
    BatchStream,
    EpochResult,
    LoopHooks,
    Trainee,
    new_trainee,
    train_lockstep,
)
from tests.factories import dataset_spec, method_plan, tiny_recipe
from tests.gpu.test_group_paths import a_teacher, assert_same_weights
from tests.runtime.test_method_lockstep import METHODS

pytestmark = pytest.mark.gpu


def _study(device: torch.device) -> tuple[list[Run], LoadedDataset]:
    plan = method_plan(METHODS, dataset=dataset_spec("digits", train_subset=160, test_subset=32,
                                                     augment="crop_flip"),
                       teacher_arch="resnet20", temperatures=(4.0,), seeds=(3,),
                       student_recipe=tiny_recipe(epochs=2, batch_size=40, lr=0.02))
    return ([r for r in plan.runs if r.role == "distilled"],
            load_dataset(plan.studies[0].dataset, device=device))


def _train(runs: Sequence[Run], data: LoadedDataset, teacher: torch.nn.Module,
           device: torch.device, autocast: AutocastFactory = contextlib.nullcontext
           ) -> tuple[list[Trainee], list[EpochResult]]:
    trainees = [new_trainee(r, in_channels=data.channels, image_size=data.image_size,
                            num_classes=data.num_classes, device=device) for r in runs]
    prepare_methods(trainees, MethodSetup(data, teacher, teacher_autocast=autocast))
    reads = group_reads(runs)
    results: list[EpochResult] = []
    train_lockstep(trainees, BatchStream(data.train, seed=runs[0].seed,
                                         batch_size=runs[0].recipe.batch_size),
                   teacher=LiveTeacher(teacher, needs=reads.needs, autocast=autocast)
                   if reads.outputs else None,
                   epochs=runs[0].recipe.epochs, autocast=autocast,
                   hooks=LoopHooks(on_epoch_end=results.extend))
    return trainees, results


def test_every_method_in_one_group_equals_each_alone(device: torch.device) -> None:
    configure_cuda_numerics(device)
    runs, data = _study(device)
    teacher = a_teacher(data, device)
    group, results = _train(runs, data, teacher, device)
    assert all(r.failure is None for r in results), [r.failure for r in results]
    for member in group:
        (alone,), _ = _train([member.run], data, teacher, device)
        what = str(member.run.method)
        assert_same_weights(member.model, alone.model, device, what)
        if member.method is not None and alone.method is not None:
            assert_same_weights(member.method.learned(), alone.method.learned(), device, what)


def test_every_method_trains_under_bf16_autocast(device: torch.device) -> None:
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bf16")
    runs, data = _study(device)
    teacher = a_teacher(data, device)

    def autocast() -> contextlib.AbstractContextManager[object]:
        return torch.autocast(device.type, dtype=torch.bfloat16)

    group, results = _train(runs, data, teacher, device, autocast)
    assert all(r.failure is None and torch.isfinite(torch.tensor(r.train_loss))
               for r in results), [(str(r.trainee.run.method), r.train_loss) for r in results]
    for member in group:
        if member.method is not None:
            for tensor in member.method.learned().state_dict().values():
                assert tensor.device.type == device.type
