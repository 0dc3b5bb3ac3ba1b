"""FitNets: the regressor's geometry for each size relation, and the hint loss."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from kdspec.runtime.kd_methods.fitnet import HintRegressor, hint_loss


@pytest.mark.parametrize(("student", "teacher", "conv"), [
    ((16, 32, 32), (64, 16, 16), nn.Conv2d),           # H_s = 2 H_t: strided 3x3
    ((16, 8, 8), (64, 16, 16), nn.ConvTranspose2d),     # 2 H_s = H_t: transposed 4x4
    ((32, 16, 16), (128, 16, 16), nn.Conv2d),           # same size: a 1x1 convolution
    ((32, 7, 7), (128, 5, 5), nn.Conv2d),               # larger: a 3x3 valid convolution
])
def test_regressor_maps_the_guided_shape_to_the_hint_shape(
        student: tuple[int, int, int], teacher: tuple[int, int, int], conv: type) -> None:
    regressor = HintRegressor(student, teacher)
    assert type(regressor.conv) is conv
    out = regressor(torch.randn(2, *student))
    assert tuple(out.shape) == (2, *teacher)
    assert (out >= 0).all()  # BN then ReLU, as the benchmark's ConvReg


def test_a_smaller_student_map_by_another_factor_has_no_regressor() -> None:
    with pytest.raises(ValueError, match="no hint regressor"):
        HintRegressor((16, 4, 4), (64, 16, 16))


def test_hint_loss_is_the_mean_squared_difference_of_every_element() -> None:
    regressed = torch.arange(24, dtype=torch.float64).view(1, 2, 3, 4) / 7
    hint = torch.linspace(-1, 2, 24, dtype=torch.float64).view(1, 2, 3, 4)
    want = sum((a - b) ** 2 for a, b in zip(regressed.flatten().tolist(),
                                            hint.flatten().tolist(), strict=True)) / 24
    assert hint_loss(regressed, hint).item() == pytest.approx(want, rel=1e-12)
    assert hint_loss(hint, hint).item() == 0.0


def test_gradients_reach_the_regressor_and_the_student_not_the_teacher() -> None:
    torch.manual_seed(0)
    regressor = HintRegressor((8, 8, 8), (16, 4, 4))
    guided = torch.randn(3, 8, 8, 8, requires_grad=True)
    hint = torch.randn(3, 16, 4, 4, requires_grad=True)
    hint_loss(regressor(guided), hint).backward()
    assert guided.grad is not None and torch.isfinite(guided.grad).all()
    assert all(p.grad is not None for p in regressor.parameters())
    assert hint.grad is None


def test_half_precision_is_computed_in_float32() -> None:
    a, b = torch.randn(2, 4, 3, 3).bfloat16(), torch.randn(2, 4, 3, 3).bfloat16()
    got = hint_loss(a, b)
    assert got.dtype == torch.float32
    assert got.item() == pytest.approx(hint_loss(a.double(), b.double()).item(), rel=1e-6)
