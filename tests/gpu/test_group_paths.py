"""Lockstep groups, the teacher-logit cache, determinism and memory on the device under test.

What is deterministic, as tested here:
- CPU: the same run trained twice gives bit-identical weights, and a lockstep student equals
  the same student trained alone bit for bit (tests/runtime/test_lockstep_equivalence.py).
- CUDA: cuDNN's backward convolutions may accumulate with atomics in any order, so two runs
  agree to float32 rounding (about 1e-6 relative per step), not bitwise; with TF32 off
  (``configure_cuda_numerics``) they stay within 1e-3 after a short training. kdspec's resume
  and cache promises on CUDA are therefore "the same training up to rounding", and the docs
  say so (docs/speed.md, "Determinism").
"""

from __future__ import annotations

import pytest
import torch

from kdspec.plan import Plan, Run
from kdspec.runtime.data import load_dataset
from kdspec.runtime.interfaces import LoadedDataset, TeacherSignal
from kdspec.runtime.models import build_model
from kdspec.runtime.precision import configure_cuda_numerics
from kdspec.runtime.teacher_cache import (
    DEFAULT_MEMORY_FRACTION,
    CachedTeacher,
    default_memory_budget,
)
from kdspec.runtime.teacher_signal import LiveTeacher
from kdspec.runtime.training import BatchStream, Trainee, new_trainee, train_lockstep
from tests.factories import dataset_spec, tiny_plan, tiny_recipe

pytestmark = pytest.mark.gpu


def small_study(device: torch.device) -> tuple[Plan, LoadedDataset]:
    plan = tiny_plan(dataset=dataset_spec("digits", train_subset=192, test_subset=64,
                                          augment="crop_flip"),
                     temperatures=(1.0, 4.0, 16.0), seeds=(3,),
                     student_recipe=tiny_recipe(epochs=2, batch_size=48))
    return plan, load_dataset(plan.studies[0].dataset, device=device)


def a_teacher(data: LoadedDataset, device: torch.device) -> torch.nn.Module:
    torch.manual_seed(11)
    teacher = build_model("resnet20", in_channels=data.channels, image_size=data.image_size,
                          num_classes=data.num_classes).to(device)
    teacher.train()
    with torch.no_grad():  # BatchNorm statistics off their init, so eval mode matters
        teacher(data.train.render(torch.arange(64), torch.zeros(64, dtype=torch.long)))
    return teacher.eval()


def train(runs: tuple[Run, ...] | list[Run], data: LoadedDataset, signal: TeacherSignal,
          device: torch.device) -> list[Trainee]:
    trainees = [new_trainee(r, in_channels=data.channels, image_size=data.image_size,
                            num_classes=data.num_classes, device=device) for r in runs]
    recipe = runs[0].recipe
    train_lockstep(trainees,
                   BatchStream(data.train, seed=runs[0].seed, batch_size=recipe.batch_size),
                   teacher=signal, epochs=recipe.epochs)
    return trainees


def assert_same_weights(a: torch.nn.Module, b: torch.nn.Module, device: torch.device,
                        what: str) -> None:
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        if device.type == "cpu":
            assert torch.equal(x, y), f"{what}: {name} differs on the CPU"
        elif x.is_floating_point():
            torch.testing.assert_close(x, y, rtol=1e-3, atol=1e-3, msg=f"{what}: {name}")


def test_lockstep_students_equal_solo_students(device: torch.device) -> None:
    configure_cuda_numerics(device)
    plan, data = small_study(device)
    teacher = a_teacher(data, device)
    runs = plan.runs_of(plan.studies[0], "distilled")
    group = train(runs, data, LiveTeacher(teacher), device)
    for run, member in zip(runs, group, strict=True):
        (alone,) = train([run], data, LiveTeacher(teacher), device)
        assert_same_weights(member.model, alone.model, device, f"T={run.temperature:g}")


def test_the_same_run_twice_gives_the_same_weights(device: torch.device) -> None:
    configure_cuda_numerics(device)
    plan, data = small_study(device)
    teacher = a_teacher(data, device)
    run = plan.runs_of(plan.studies[0], "distilled")[1]
    (first,) = train([run], data, LiveTeacher(teacher), device)
    (second,) = train([run], data, LiveTeacher(teacher), device)
    assert_same_weights(first.model, second.model, device, "two identical trainings")


def test_cached_logits_equal_live_forwards(device: torch.device) -> None:
    configure_cuda_numerics(device)
    _, data = small_study(device)
    teacher = a_teacher(data, device)
    cached = CachedTeacher.compute(teacher, data.train, batch_size=100)
    live = LiveTeacher(teacher)
    for batch in data.train.epoch(seed=0, epoch=0, batch_size=48):
        torch.testing.assert_close(cached.logits(batch), live.logits(batch), rtol=1e-4,
                                   atol=1e-4)


def test_a_groups_peak_memory_leaves_the_cache_its_share(device: torch.device) -> None:
    """A lockstep group of four ResNet-20 students with a live ResNet-56 teacher at batch 128
    must fit in the memory the teacher cache leaves ((1 - DEFAULT_MEMORY_FRACTION) of what
    is free); and memory PyTorch caches but no tensor uses still counts as free."""
    if device.type != "cuda":
        pytest.skip("peak device memory is measured on CUDA only")
    budget_before = default_memory_budget(device)
    free_before = budget_before / DEFAULT_MEMORY_FRACTION
    torch.cuda.reset_peak_memory_stats(device)
    start = torch.cuda.memory_allocated(device)
    teacher = build_model("resnet56", in_channels=3, image_size=32, num_classes=100).to(device)
    students = [build_model("resnet20", in_channels=3, image_size=32, num_classes=100)
                .to(device) for _ in range(4)]
    optimizers = [torch.optim.SGD(s.parameters(), lr=0.1, momentum=0.9) for s in students]
    images = torch.randn(128, 3, 32, 32, device=device)
    labels = torch.randint(0, 100, (128,), device=device)
    with torch.no_grad():
        soft = teacher.eval()(images).softmax(1)
    for student, optimizer in zip(students, optimizers, strict=True):
        logits = student(images)
        loss = torch.nn.functional.cross_entropy(logits, labels) + torch.nn.functional.kl_div(
            logits.log_softmax(1), soft, reduction="batchmean")
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    peak = torch.cuda.max_memory_allocated(device) - start
    assert peak < (1 - DEFAULT_MEMORY_FRACTION) * free_before, (
        f"group peak {peak / 2**20:.0f} MiB vs {free_before / 2**20:.0f} MiB free")
    del teacher, students, optimizers, images, labels, soft, logits, loss
    scratch = torch.empty(2**30, dtype=torch.uint8, device=device)  # 1 GiB, then cached
    del scratch
    assert torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device) >= 2**30
    assert default_memory_budget(device) >= 0.99 * budget_before
