"""K fused students train exactly like K separate models (to float rounding)."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

import pytest
import torch
from torch import nn

from kdspec.plan import KDLoss
from kdspec.runtime.fused_students import (
    ERR_MIXED_ARCHS,
    FusedStudents,
    fused_distillation_losses,
    fused_distillation_step,
)
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


def test_fused_training_equals_separate_training() -> None:
    data = batches(steps=4)
    separate = students(conv_bn_student, 3)
    fused = train_fused(students(conv_bn_student, 3), data)
    train_separately(separate, data)
    probe = torch.randn(10, 1, 8, 8, generator=torch.Generator().manual_seed(9))
    with torch.no_grad():
        fused_eval = fused.eval()(probe)
        for k, model in enumerate(separate):
            expected = model.eval()(probe)
            assert (fused_eval[k] - expected).abs().max() < 1e-5
    # The BatchNorm running statistics moved as each student's own did.
    for k, model in enumerate(separate):
        bn = model[1]
        assert isinstance(bn, nn.BatchNorm2d)
        torch.testing.assert_close(fused.buffers["1.running_var"][k], bn.running_var)
        assert int(fused.buffers["1.num_batches_tracked"][k]) == 4


def test_fused_resnet20_equals_separate_resnet20s() -> None:
    def resnet20() -> nn.Module:
        return build_model("resnet20", in_channels=1, image_size=16, num_classes=5)

    data = batches(steps=2, shape=(8, 1, 16, 16))
    separate = [resnet20() for _ in range(3)]
    fused_models = [resnet20() for _ in range(3)]
    for a, b in zip(separate, fused_models, strict=True):
        b.load_state_dict(a.state_dict())
    fused = train_fused(fused_models, data)
    train_separately(separate, data)
    probe = torch.randn(6, 1, 16, 16, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        fused_eval = fused.eval()(probe)
        for k, model in enumerate(separate):
            expected = model.eval()(probe)
            # Relative to the logits' size: after two steps at lr 0.1 the eval-mode logits reach
            # ~30, where float32 rounding alone is ~4e-6 per operation (measured: ~1.5e-6 x max).
            scale = max(1.0, float(expected.abs().max()))
            assert (fused_eval[k] - expected).abs().max() < 1e-5 * scale


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
