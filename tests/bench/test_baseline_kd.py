"""The benchmark's plain-PyTorch baseline keeps training correctly (so it cannot silently rot)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torchvision import transforms

from bench.baseline_kd import image_transforms, kd_loss, run_baseline, train_step
from kdspec.runtime.losses import distillation_loss
from kdspec.runtime.models import build_model
from tests.factories import dataset_spec, tiny_plan, tiny_recipe


def test_baseline_kd_loss_is_the_runtimes_hinton_loss() -> None:
    gen = torch.Generator().manual_seed(0)
    student, teacher = torch.randn(8, 10, generator=gen), torch.randn(8, 10, generator=gen)
    labels = torch.randint(0, 10, (8,), generator=gen)
    plan = tiny_plan()
    run = plan.runs_of(plan.studies[0], "distilled")[0]
    assert run.loss is not None and run.temperature is not None
    torch.testing.assert_close(
        kd_loss(student, teacher, labels, temperature=run.temperature,
                hard_weight=run.loss.hard_weight, soft_weight=run.loss.soft_weight),
        distillation_loss(student, teacher, labels, temperature=run.temperature, loss=run.loss))


def test_distilled_steps_reduce_the_loss_on_a_batch() -> None:
    plan = tiny_plan()
    run = plan.runs_of(plan.studies[0], "distilled")[0]
    torch.manual_seed(0)
    student = build_model("lenet5", in_channels=1, image_size=8, num_classes=10)
    teacher = build_model("resnet20", in_channels=1, image_size=8, num_classes=10).eval()
    optimizer = torch.optim.SGD(student.parameters(), lr=0.05, momentum=0.9)
    images, labels = torch.randn(32, 1, 8, 8), torch.randint(0, 10, (32,))
    losses = [train_step(student, optimizer, images, labels, teacher=teacher, run=run)
              for _ in range(5)]
    assert losses[-1] < losses[0]
    assert not teacher.training


@pytest.mark.parametrize(("preset", "kinds"), [
    ("none", []), ("flip", [transforms.RandomHorizontalFlip]),
    ("crop_flip", [transforms.RandomCrop, transforms.RandomHorizontalFlip]),
])
def test_transforms_follow_the_augmentation_preset(preset: str, kinds: list[type]) -> None:
    spec = dataset_spec("fashion_mnist", augment=preset)
    train_steps = [type(t) for t in image_transforms(spec, train=True).transforms]
    test_steps = [type(t) for t in image_transforms(spec, train=False).transforms]
    assert train_steps == [*kinds, transforms.ToTensor, transforms.Normalize]
    assert test_steps == [transforms.ToTensor, transforms.Normalize]


@pytest.mark.integration
def test_baseline_trains_every_run_of_a_tiny_study(tmp_path: Path) -> None:
    recipe = tiny_recipe(epochs=1, batch_size=32)
    plan = tiny_plan(dataset=dataset_spec("digits", train_subset=96, test_subset=64),
                     temperatures=(4.0,), seeds=(0,), teacher_recipe=recipe,
                     student_recipe=recipe)
    result = run_baseline(plan, plan.studies[0], device=torch.device("cpu"), workdir=tmp_path,
                          num_workers=0, log=lambda _line: None)
    assert [(r.role, r.temperature) for r in result.runs] == [
        ("teacher", None), ("student", None), ("distilled", 4.0)]
    assert all(0.0 <= r.test_acc <= 1.0 and r.train_images == 96 for r in result.runs)
    assert set(result.phase_seconds) == {"teachers", "nds", "ds"}
    assert result.activity_seconds["ds"]["teacher_forward"] > 0
    assert "teacher_forward" not in result.activity_seconds["nds"]
