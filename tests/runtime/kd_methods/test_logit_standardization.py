"""Logit standardization: z-scores per sample, and the KD loss on them."""

from __future__ import annotations

import pytest
import torch

from kdspec.plan import KDLoss
from kdspec.runtime.kd_methods.logit_standardization import standardize_logits
from kdspec.runtime.losses import distillation_loss, kd_loss
from tests.runtime.kd_methods.oracles import FLOAT64_TOLERANCE, kl, sample_sd, softmax

LOGITS = torch.tensor([[1.0, 2.0, 0.0, -1.0], [10.0, -3.0, 2.0, 0.3]], dtype=torch.float64)
TEACHER = torch.tensor([[3.0, 1.0, 0.0, 0.5], [0.0, 0.2, 1.0, -0.5]], dtype=torch.float64)
LABELS = torch.tensor([0, 2])


def _z(row: list[float]) -> list[float]:
    m, sd = sum(row) / len(row), sample_sd(row)
    return [(v - m) / (sd + 1e-7) for v in row]


def test_each_row_is_z_scored_with_the_sample_deviation() -> None:
    got = standardize_logits(LOGITS)
    for row, want in zip(got.tolist(), (_z(r) for r in LOGITS.tolist()), strict=True):
        assert row == pytest.approx(want, rel=FLOAT64_TOLERANCE, abs=FLOAT64_TOLERANCE)


def test_positive_affine_maps_of_the_logits_standardize_alike() -> None:
    # Z(a z + b) = Z(z) up to the 1e-7 in the denominator: relative 1e-7 / sd of each row.
    got, base = standardize_logits(3.0 * LOGITS + 5.0), standardize_logits(LOGITS)
    assert torch.allclose(got, base, rtol=1e-6, atol=1e-6)


def _loss(*, hard: float, soft: float) -> KDLoss:
    return KDLoss(hard_weight=hard, soft_weight=soft, logit_standardization=True,
                  convention="test")


def test_kd_with_standardization_is_kd_on_z_scores() -> None:
    t = 2.0
    got = distillation_loss(LOGITS, TEACHER, LABELS, temperature=t,
                            loss=_loss(hard=0.0, soft=1.0))
    want = sum(kl(softmax(_z(zt), t), softmax(_z(zs), t))
               for zs, zt in zip(LOGITS.tolist(), TEACHER.tolist(), strict=True)) / 2 * t * t
    assert got.item() == pytest.approx(want, rel=FLOAT64_TOLERANCE)


def test_the_hard_term_keeps_the_raw_logits() -> None:
    with_z = distillation_loss(LOGITS, TEACHER, LABELS, temperature=2.0,
                               loss=_loss(hard=1.0, soft=0.0))
    raw = kd_loss(LOGITS, TEACHER, LABELS, temperature=2.0, hard_weight=1.0, soft_weight=0.0)
    assert with_z.item() == raw.item()


def test_half_precision_is_computed_in_float32_and_gradients_are_finite() -> None:
    logits = LOGITS.bfloat16().requires_grad_(True)
    out = standardize_logits(logits)
    assert out.dtype == torch.float32
    out.pow(2).sum().backward()
    assert logits.grad is not None and torch.isfinite(logits.grad.float()).all()
    constant = torch.zeros(1, 5, requires_grad=True)
    standardize_logits(constant).sum().backward()
    assert torch.isfinite(constant.grad).all()  # a constant row: the epsilon keeps it finite
