"""Attention transfer against the maps computed position by position."""

from __future__ import annotations

import math

import pytest
import torch

from kdspec.runtime.kd_methods.attention_transfer import attention_map, attention_transfer_loss
from tests.runtime.kd_methods.oracles import FLOAT64_TOLERANCE

Map = list[list[float]]  # [B][H * W]


def _map(feature: torch.Tensor, p: float = 2.0) -> Map:
    """Q(f): the mean over channels of |f|^p at each position, divided by its L2 norm."""
    out = []
    for sample in feature.tolist():
        channels, height, width = len(sample), len(sample[0]), len(sample[0][0])
        q = [sum(abs(sample[c][h][w]) ** p for c in range(channels)) / channels
             for h in range(height) for w in range(width)]
        norm = math.sqrt(sum(v * v for v in q))
        out.append([v / norm for v in q])
    return out


def _mse(a: Map, b: Map) -> float:
    diffs = [(x - y) ** 2 for ra, rb in zip(a, b, strict=True) for x, y in zip(ra, rb, strict=True)]
    return sum(diffs) / len(diffs)


def _pool2(feature: torch.Tensor) -> torch.Tensor:
    """2x2 average pooling written out (what adaptive pooling does for an exact halving)."""
    b, c, h, w = feature.shape
    out = torch.empty(b, c, h // 2, w // 2, dtype=feature.dtype)
    for i in range(h // 2):
        for j in range(w // 2):
            out[:, :, i, j] = feature[:, :, 2 * i:2 * i + 2, 2 * j:2 * j + 2].sum((2, 3)) / 4
    return out


def test_map_is_the_normalised_channel_mean_of_squares() -> None:
    f = torch.randn(2, 3, 4, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    got = attention_map(f).tolist()
    for row, want in zip(got, _map(f), strict=True):
        assert row == pytest.approx(want, rel=FLOAT64_TOLERANCE, abs=FLOAT64_TOLERANCE)


def test_loss_sums_the_stages_and_pools_the_larger_map() -> None:
    g = torch.Generator().manual_seed(2)
    student = [torch.randn(2, 4, 8, 8, dtype=torch.float64, generator=g),
               torch.randn(2, 8, 4, 4, dtype=torch.float64, generator=g)]
    teacher = [torch.randn(2, 16, 4, 4, dtype=torch.float64, generator=g),   # student larger
               torch.randn(2, 32, 8, 8, dtype=torch.float64, generator=g)]   # teacher larger
    want = (_mse(_map(_pool2(student[0])), _map(teacher[0]))
            + _mse(_map(student[1]), _map(_pool2(teacher[1]))))
    got = attention_transfer_loss(student, teacher)
    assert got.item() == pytest.approx(want, rel=FLOAT64_TOLERANCE)


def test_identical_features_cost_nothing() -> None:
    features = [torch.randn(3, 5, 6, 6), torch.randn(3, 7, 3, 3)]
    assert attention_transfer_loss(features, [f.clone() for f in features]).item() == 0.0


def test_gradients_are_finite_and_reach_the_student_only() -> None:
    student = [torch.randn(2, 4, 4, 4, requires_grad=True)]
    teacher = [torch.randn(2, 6, 4, 4, requires_grad=True)]
    attention_transfer_loss(student, teacher).backward()
    assert student[0].grad is not None and torch.isfinite(student[0].grad).all()
    assert teacher[0].grad is None


def test_half_precision_is_computed_in_float32_and_stage_counts_must_match() -> None:
    s, t = torch.randn(2, 4, 4, 4), torch.randn(2, 6, 4, 4)
    got = attention_transfer_loss([s.half()], [t.half()])
    assert got.dtype == torch.float32
    assert got.item() == pytest.approx(
        attention_transfer_loss([s.half().double()], [t.half().double()]).item(), rel=1e-5)
    with pytest.raises(ValueError, match="pairs stages"):
        attention_transfer_loss([s, s], [t])
