"""The KD loss against a hand computation on a 2-sample, 3-class batch."""

from __future__ import annotations

import math

import pytest
import torch

from kdspec.plan import KDLoss
from kdspec.runtime.losses import distillation_loss, hard_label_loss, kd_loss

STUDENT = torch.tensor([[1.0, 2.0, 0.0], [0.5, -1.0, 2.0]])
TEACHER = torch.tensor([[3.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
LABELS = torch.tensor([0, 2])


def _softmax(row: list[float], t: float) -> list[float]:
    exps = [math.exp(v / t) for v in row]
    total = sum(exps)
    return [e / total for e in exps]


def _hand_kd(t: float, hard: float, soft: float, t_squared: bool) -> float:
    """The Hinton loss written out with Python floats, one sample at a time."""
    kl_total = 0.0
    ce_total = 0.0
    for zs, zt, y in zip(STUDENT.tolist(), TEACHER.tolist(), LABELS.tolist(), strict=True):
        ps, pt = _softmax(zs, t), _softmax(zt, t)
        kl_total += sum(q * math.log(q / p) for p, q in zip(ps, pt, strict=True))
        ce_total += -math.log(_softmax(zs, 1.0)[y])
    n = len(LABELS)
    scale = t * t if t_squared else 1.0
    return hard * ce_total / n + soft * scale * kl_total / n


@pytest.mark.parametrize("t", [1.0, 2.0, 4.0, 20.0])
@pytest.mark.parametrize(("hard", "soft"), [(0.1, 0.9), (0.5, 0.5), (0.0, 1.0)])
def test_kd_loss_matches_hand_computation(t: float, hard: float, soft: float) -> None:
    got = kd_loss(STUDENT, TEACHER, LABELS, temperature=t, hard_weight=hard, soft_weight=soft)
    # float32 log-softmax differences carry ~1e-7 absolute error; T^2 = 400 magnifies it at T=20.
    assert got.item() == pytest.approx(_hand_kd(t, hard, soft, True), rel=1e-4)


def test_without_t_squared_the_soft_term_is_not_scaled() -> None:
    got = kd_loss(STUDENT, TEACHER, LABELS, temperature=4.0, hard_weight=0.2, soft_weight=0.8,
                  t_squared=False)
    assert got.item() == pytest.approx(_hand_kd(4.0, 0.2, 0.8, False), rel=1e-5)


def test_identical_logits_leave_only_the_hard_term() -> None:
    got = kd_loss(STUDENT, STUDENT, LABELS, temperature=3.0, hard_weight=0.3, soft_weight=0.7)
    assert got.item() == pytest.approx(0.3 * hard_label_loss(STUDENT, LABELS).item(), rel=1e-5)


def test_gradient_flows_to_the_student_only() -> None:
    student = STUDENT.clone().requires_grad_(True)
    teacher = TEACHER.clone().requires_grad_(True)
    kd_loss(student, teacher, LABELS, temperature=2.0, hard_weight=0.5, soft_weight=0.5).backward()
    assert student.grad is not None and student.grad.abs().sum() > 0
    assert teacher.grad is None


def test_bf16_logits_are_computed_in_float32() -> None:
    got = kd_loss(STUDENT.bfloat16(), TEACHER.bfloat16(), LABELS, temperature=2.0,
                  hard_weight=0.1, soft_weight=0.9)
    assert got.dtype == torch.float32
    assert got.item() == pytest.approx(_hand_kd(2.0, 0.1, 0.9, True), rel=2e-2)


def test_plan_loss_weights_are_used() -> None:
    spec = KDLoss(hard_weight=0.25, soft_weight=0.75, convention="alpha on soft")
    got = distillation_loss(STUDENT, TEACHER, LABELS, temperature=5.0, loss=spec)
    assert got.item() == pytest.approx(_hand_kd(5.0, 0.25, 0.75, True), rel=1e-5)


def test_shape_mismatch_is_an_error() -> None:
    with pytest.raises(ValueError, match="differ in shape"):
        kd_loss(STUDENT, TEACHER[:, :2], LABELS, temperature=2.0, hard_weight=0.5,
                soft_weight=0.5)


def test_plan_loss_standardizes_the_logits_when_it_says_so() -> None:
    spec = KDLoss(hard_weight=0.25, soft_weight=0.75, convention="alpha on soft",
                  logit_standardization=True)
    student, teacher = STUDENT.double(), TEACHER.double()  # float64: one rounding budget
    got = distillation_loss(student, teacher, LABELS, temperature=2.0, loss=spec)
    # the soft term on z-scores (rows: mean 0, sample sd 1), the hard term on the raw logits
    def z(t: torch.Tensor) -> torch.Tensor:
        return (t - t.mean(1, keepdim=True)) / (t.std(1, keepdim=True) + 1e-7)

    want = (kd_loss(z(student), z(teacher), LABELS, temperature=2.0, hard_weight=0.0,
                    soft_weight=0.75)
            + 0.25 * torch.nn.functional.cross_entropy(student, LABELS))
    plain = kd_loss(student, teacher, LABELS, temperature=2.0, hard_weight=0.25,
                    soft_weight=0.75)
    assert got.item() == pytest.approx(want.item(), rel=1e-12) and got.item() != plain.item()
