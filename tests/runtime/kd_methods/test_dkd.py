"""DKD against the paper's definitions written out per sample, and its decomposition of KD."""

from __future__ import annotations

import math

import pytest
import torch

from kdspec.runtime.kd_methods.dkd import decoupled_kd_terms, dkd_loss, dkd_warmup_factor
from tests.runtime.kd_methods.oracles import FLOAT64_TOLERANCE, kl, sample_sd, softmax

STUDENT = torch.tensor([[1.0, 2.0, 0.0, -1.0], [0.5, -1.0, 2.0, 0.3], [3.0, 3.0, -2.0, 0.0]],
                       dtype=torch.float64)
TEACHER = torch.tensor([[3.0, 1.0, 0.0, 0.5], [0.0, 0.0, 1.0, -0.5], [0.2, 4.0, -1.0, 1.0]],
                       dtype=torch.float64)
LABELS = torch.tensor([0, 2, 1])


def _terms(zs: list[float], zt: list[float], y: int, t: float) -> tuple[float, float, float]:
    """(TCKD, NCKD, KD) of one sample from the paper's definitions."""
    ps, pt = softmax(zs, t), softmax(zt, t)
    binary_s, binary_t = [ps[y], 1 - ps[y]], [pt[y], 1 - pt[y]]
    rest_s = [p / (1 - ps[y]) for k, p in enumerate(ps) if k != y]
    rest_t = [p / (1 - pt[y]) for k, p in enumerate(pt) if k != y]
    return kl(binary_t, binary_s), kl(rest_t, rest_s), kl(pt, ps)


def _standardized(row: list[float]) -> list[float]:
    m, sd = sum(row) / len(row), sample_sd(row)
    return [(v - m) / (sd + 1e-7) for v in row]


@pytest.mark.parametrize("t", [1.0, 4.0, 8.0])
def test_terms_match_the_definitions_sample_by_sample(t: float) -> None:
    tckd, nckd = decoupled_kd_terms(STUDENT, TEACHER, LABELS, temperature=t)
    for i, (zs, zt, y) in enumerate(zip(STUDENT.tolist(), TEACHER.tolist(), LABELS.tolist(),
                                        strict=True)):
        want_tckd, want_nckd, _ = _terms(zs, zt, y, t)
        assert tckd[i].item() == pytest.approx(want_tckd, rel=FLOAT64_TOLERANCE,
                                               abs=FLOAT64_TOLERANCE)
        assert nckd[i].item() == pytest.approx(want_nckd, rel=FLOAT64_TOLERANCE,
                                               abs=FLOAT64_TOLERANCE)


@pytest.mark.parametrize("t", [1.0, 4.0])
def test_kd_is_tckd_plus_the_teachers_non_target_mass_times_nckd(t: float) -> None:
    """The paper's Eq. (the decomposition): KD = TCKD + (1 - p_t^teacher) * NCKD."""
    tckd, nckd = decoupled_kd_terms(STUDENT, TEACHER, LABELS, temperature=t)
    for i, (zs, zt, y) in enumerate(zip(STUDENT.tolist(), TEACHER.tolist(), LABELS.tolist(),
                                        strict=True)):
        _, _, kd = _terms(zs, zt, y, t)
        teacher_target = softmax(zt, t)[y]
        assert (tckd[i] + (1 - teacher_target) * nckd[i]).item() == pytest.approx(
            kd, rel=FLOAT64_TOLERANCE)


def test_loss_weights_the_terms_and_scales_by_t_squared() -> None:
    t, alpha, beta = 4.0, 1.0, 8.0
    got = dkd_loss(STUDENT, TEACHER, LABELS, temperature=t, alpha=alpha, beta=beta)
    parts = [_terms(zs, zt, y, t) for zs, zt, y in zip(STUDENT.tolist(), TEACHER.tolist(),
                                                        LABELS.tolist(), strict=True)]
    want = t * t * sum(alpha * a + beta * b for a, b, _ in parts) / len(parts)
    assert got.item() == pytest.approx(want, rel=FLOAT64_TOLERANCE)


def test_logit_standardization_applies_the_terms_to_z_scored_logits() -> None:
    t = 2.0
    got = dkd_loss(STUDENT, TEACHER, LABELS, temperature=t, alpha=1.0, beta=8.0,
                   logit_standardization=True)
    parts = [_terms(_standardized(zs), _standardized(zt), y, t)
             for zs, zt, y in zip(STUDENT.tolist(), TEACHER.tolist(), LABELS.tolist(),
                                  strict=True)]
    want = t * t * sum(a + 8.0 * b for a, b, _ in parts) / len(parts)
    assert got.item() == pytest.approx(want, rel=FLOAT64_TOLERANCE)


def test_identical_logits_give_zero() -> None:
    got = dkd_loss(STUDENT, STUDENT, LABELS, temperature=4.0, alpha=1.0, beta=8.0)
    assert got.item() == pytest.approx(0.0, abs=FLOAT64_TOLERANCE)


def test_gradients_are_finite_for_a_saturated_teacher() -> None:
    student = torch.tensor([[0.0, 50.0, -50.0], [1.0, 2.0, 3.0]], requires_grad=True)
    teacher = torch.tensor([[200.0, -200.0, 0.0], [0.0, 0.0, 300.0]])
    dkd_loss(student, teacher, torch.tensor([0, 2]), temperature=1.0, alpha=1.0,
             beta=8.0).backward()
    assert student.grad is not None and torch.isfinite(student.grad).all()


def test_half_precision_is_computed_in_float32() -> None:
    student, teacher = STUDENT.bfloat16(), TEACHER.bfloat16()
    got = dkd_loss(student, teacher, LABELS, temperature=4.0, alpha=1.0, beta=8.0)
    assert got.dtype == torch.float32
    want = dkd_loss(student.double(), teacher.double(), LABELS, temperature=4.0, alpha=1.0,
                    beta=8.0)
    # The same bf16 values computed in float32 and float64: float32 round-off only (~1e-7
    # relative per operation, a few dozen operations).
    assert got.item() == pytest.approx(want.item(), rel=1e-5)


@pytest.mark.parametrize(("epoch", "warmup", "factor"), [
    (0, 20, 1 / 20), (9, 20, 10 / 20), (19, 20, 1.0), (30, 20, 1.0), (0, 0, 1.0)])
def test_warmup_is_linear_from_the_first_epoch(epoch: int, warmup: int, factor: float) -> None:
    assert math.isclose(dkd_warmup_factor(epoch, warmup), factor)


def test_shape_mismatch_is_an_error() -> None:
    with pytest.raises(ValueError, match="differ in shape"):
        dkd_loss(STUDENT, TEACHER[:, :3], LABELS, temperature=4.0, alpha=1.0, beta=8.0)
