"""K fused students train exactly like K separate models (to float rounding)."""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Sequence

import pytest
import torch
from torch import nn

from bench.fused_students import (
    ERR_MIXED_ARCHS,
    FusedStudents,
    fused_distillation_losses,
    fused_distillation_step,
)
from kdspec.plan import KDLoss
from kdspec.runtime.losses import distillation_loss
from kdspec.runtime.models import build_model

LOSS = KDLoss(hard_weight=0.1, soft_weight=0.9, convention="alpha = 0.9 on the soft term")
TEMPERATURES = (2.0, 4.0, 8.0)


def conv_bn_student() -> nn.Sequential:
    """A small student with every layer kind the CIFAR models use (conv, BN, pooling, linear)."""
    return nn.Sequential(
        nn.Conv2d(1, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5),
    )


def students(make: Callable[[], nn.Sequential], k: int) -> list[nn.Sequential]:
    """K students, each initialised from its own seed (as K runs would be)."""
    models = []
    for seed in range(k):
        torch.manual_seed(100 + seed)
        models.append(make())
    return models


def sgd(params: list[torch.Tensor]) -> torch.optim.Optimizer:
    return torch.optim.SGD(params, lr=0.1, momentum=0.9, weight_decay=5e-4, nesterov=True)


def batches(steps: int, shape: tuple[int, ...] = (16, 1, 8, 8)) -> list[tuple[torch.Tensor, ...]]:
    gen = torch.Generator().manual_seed(7)
    return [(torch.randn(shape, generator=gen), torch.randint(0, 5, (shape[0],), generator=gen),
             3 * torch.randn(shape[0], 5, generator=gen)) for _ in range(steps)]


def train_separately(models: Sequence[nn.Module], data: list[tuple[torch.Tensor, ...]]) -> None:
    optimizers = [sgd(list(m.parameters())) for m in models]
    for images, labels, teacher in data:
        for model, opt, t in zip(models, optimizers, TEMPERATURES, strict=True):
            model.train()
            opt.zero_grad()
            distillation_loss(model(images), teacher, labels, temperature=t, loss=LOSS).backward()
            opt.step()


def train_fused(models: Sequence[nn.Module], data: list[tuple[torch.Tensor, ...]]) -> FusedStudents:
    fused = FusedStudents(models).train()
    opt = sgd(fused.parameters())
    for images, labels, teacher in data:
        fused_distillation_step(fused, opt, images, labels, teacher, temperatures=TEMPERATURES,
                                loss=LOSS)
    return fused


def float64(models: list[nn.Module]) -> list[nn.Module]:
    """The models in float64, where rounding (~1e-16) stays far below any tolerance below even
    after training steps amplify it, on any CPU's kernels (tests/README.md)."""
    return [m.double() for m in models]


def resnet20s(k: int) -> list[nn.Module]:
    """K ResNet-20s with distinct initial weights (one per seed)."""
    models = []
    for seed in range(k):
        torch.manual_seed(200 + seed)
        models.append(build_model("resnet20", in_channels=1, image_size=16, num_classes=5))
    return models


def copies(models: Sequence[nn.Module]) -> list[nn.Module]:
    return [copy.deepcopy(m) for m in models]


def max_relative_gap(got: torch.Tensor, expected: torch.Tensor) -> float:
    """Largest absolute difference relative to the larger magnitude of ``expected`` (or 1)."""
    return float((got - expected).abs().max()) / max(1.0, float(expected.abs().max()))


def assert_eval_outputs_equal(fused, separate, probe: torch.Tensor) -> None:  # type: ignore[no-untyped-def]
    """The fused students' eval-mode outputs on ``probe`` are each separate student's (float64:
    1e-9 relative holds after training steps on any CPU)."""
    with torch.no_grad():
        fused_eval = fused.eval()(probe)
        for k, model in enumerate(separate):
            assert max_relative_gap(fused_eval[k], model.eval()(probe)) < 1e-9


def test_one_fused_forward_and_backward_equals_separate_ones_in_float32() -> None:
    """Before any step, in float32: logits and every gradient of the fused students match the
    separate models' to float32 rounding. The tolerance is the rounding of the operations, not of
    a machine: a ResNet-20 forward adds ~600 products per output through ~20 layers, each sum
    off by up to ~sqrt(600) x 6e-8 ~ 1.5e-6 relative in any summation order, so 1e-4 relative to
    the largest value bounds it on any CPU; a wrong fusion (a student's weights, buffers or
    temperature mixed up) is off by O(1)."""
    separate = resnet20s(3)
    fused = FusedStudents(copies(separate)).train()
    images, labels, teacher = batches(steps=1, shape=(8, 1, 16, 16))[0]
    fused_logits = fused(images)
    fused_distillation_losses(fused_logits, teacher, labels, temperatures=TEMPERATURES,
                              loss=LOSS).sum().backward()
    for k, (model, t) in enumerate(zip(separate, TEMPERATURES, strict=True)):
        model.train()
        logits = model(images)
        assert max_relative_gap(fused_logits[k].detach(), logits.detach()) < 1e-4
        distillation_loss(logits, teacher, labels, temperature=t, loss=LOSS).backward()
        for name, param in model.named_parameters():
            grad = fused.params[name].grad
            assert grad is not None and param.grad is not None
            assert max_relative_gap(grad[k], param.grad) < 1e-4, f"student {k}: {name}"


def test_fused_training_equals_separate_training_in_float64() -> None:
    """The update path (optimizer steps, BatchNorm running statistics), in float64 so that two
    orders of summation differ by ~1e-16, which four SGD steps at lr 0.1 cannot lift anywhere
    near 1e-9."""
    data = [tuple(t.double() if t.is_floating_point() else t for t in b)
            for b in batches(steps=4)]
    separate = float64(students(conv_bn_student, 3))
    fused = train_fused(float64(students(conv_bn_student, 3)), data)
    train_separately(separate, data)
    probe = torch.randn(10, 1, 8, 8, generator=torch.Generator().manual_seed(9),
                        dtype=torch.float64)
    assert_eval_outputs_equal(fused, separate, probe)
    # The BatchNorm running statistics moved as each student's own did.
    for k, model in enumerate(separate):
        bn = model[1]
        assert isinstance(bn, nn.BatchNorm2d)
        torch.testing.assert_close(fused.buffers["1.running_var"][k], bn.running_var,
                                   rtol=1e-9, atol=1e-12)
        assert int(fused.buffers["1.num_batches_tracked"][k]) == 4


def test_fused_resnet20_training_equals_separate_resnet20s_in_float64() -> None:
    data = [tuple(t.double() if t.is_floating_point() else t for t in b)
            for b in batches(steps=2, shape=(8, 1, 16, 16))]
    separate = float64(resnet20s(3))
    fused = train_fused(copies(separate), data)
    train_separately(separate, data)
    probe = torch.randn(6, 1, 16, 16, generator=torch.Generator().manual_seed(3),
                        dtype=torch.float64)
    assert_eval_outputs_equal(fused, separate, probe)


def test_write_to_gives_back_models_with_the_fused_weights() -> None:
    data = batches(steps=2)
    fused = train_fused(students(conv_bn_student, 3), data)
    targets = students(conv_bn_student, 3)
    fused.write_to(targets)
    probe = torch.randn(4, 1, 8, 8)
    with torch.no_grad():
        stacked = fused.eval()(probe)
        for k, model in enumerate(targets):
            torch.testing.assert_close(model.eval()(probe), stacked[k], rtol=1e-5, atol=1e-5)
    # Exact copies of every parameter and buffer, not just close outputs.
    for k, model in enumerate(targets):
        for name, value in model.state_dict().items():
            stacked_value = {**fused.params, **fused.buffers}[name][k]
            assert torch.equal(value, stacked_value), f"student {k}: {name}"


def test_students_that_start_equal_stay_apart_by_temperature_only() -> None:
    torch.manual_seed(0)
    one = conv_bn_student()
    fused = FusedStudents([one, one, one]).train()
    images, labels, teacher = batches(steps=1)[0]
    losses = fused_distillation_losses(fused(images), teacher, labels,
                                       temperatures=TEMPERATURES, loss=LOSS)
    for k, t in enumerate(TEMPERATURES):
        torch.testing.assert_close(
            losses[k], distillation_loss(one.train()(images), teacher, labels, temperature=t,
                                         loss=LOSS), rtol=1e-5, atol=1e-6)
    assert losses.shape == (3,) and len(set(losses.tolist())) == 3


def test_fusing_different_architectures_is_refused() -> None:
    with pytest.raises(ValueError, match=re.escape(ERR_MIXED_ARCHS)):
        FusedStudents([conv_bn_student(), nn.Sequential(nn.Flatten(), nn.Linear(64, 5))])


def test_losses_need_one_temperature_per_student() -> None:
    with pytest.raises(ValueError, match="temperatures"):
        fused_distillation_losses(torch.zeros(2, 4, 5), torch.zeros(4, 5),
                                  torch.zeros(4, dtype=torch.long), temperatures=(2.0,), loss=LOSS)
