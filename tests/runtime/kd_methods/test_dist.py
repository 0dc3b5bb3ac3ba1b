"""DIST against Pearson's correlation as statistics defines it, element by element."""

from __future__ import annotations

import pytest
import torch

from kdspec.runtime.kd_methods.dist import (
    COSINE_EPSILON,
    dist_loss,
    dist_relations,
    pearson_distance,
)
from tests.runtime.kd_methods.oracles import FLOAT64_TOLERANCE, centred_norm, pearson, softmax

STUDENT = torch.tensor([[1.0, 2.0, 0.0, -1.0], [0.5, -1.0, 2.0, 0.3], [3.0, 3.5, -2.0, 0.0]],
                       dtype=torch.float64)
TEACHER = torch.tensor([[3.0, 1.0, 0.0, 0.5], [0.0, 0.2, 1.0, -0.5], [0.2, 4.0, -1.0, 1.0]],
                       dtype=torch.float64)


def _relations(t: float) -> tuple[float, float, float]:
    """(L_inter, L_intra, bound): the paper's relations without the code's epsilon, and how
    far the epsilon can move them (|cos| <= 1, so each distance moves by at most
    eps / (||u_c|| ||v_c||))."""
    ys = [softmax(row, t) for row in STUDENT.tolist()]
    yt = [softmax(row, t) for row in TEACHER.tolist()]
    columns_s = [list(c) for c in zip(*ys, strict=True)]
    columns_t = [list(c) for c in zip(*yt, strict=True)]
    inter = [1 - pearson(u, v) for u, v in zip(ys, yt, strict=True)]
    intra = [1 - pearson(u, v) for u, v in zip(columns_s, columns_t, strict=True)]
    bound = max(COSINE_EPSILON / (centred_norm(u) * centred_norm(v))
                for u, v in [*zip(ys, yt, strict=True), *zip(columns_s, columns_t, strict=True)])
    return sum(inter) / len(inter), sum(intra) / len(intra), bound


@pytest.mark.parametrize("t", [1.0, 4.0])
def test_relations_match_pearson_over_classes_and_over_the_batch(t: float) -> None:
    inter, intra = dist_relations(STUDENT, TEACHER, temperature=t)
    want_inter, want_intra, bound = _relations(t)
    assert abs(inter.item() - want_inter) <= bound + FLOAT64_TOLERANCE
    assert abs(intra.item() - want_intra) <= bound + FLOAT64_TOLERANCE


def test_loss_weights_the_relations_and_scales_by_t_squared() -> None:
    t, beta, gamma = 4.0, 2.0, 3.0
    want_inter, want_intra, bound = _relations(t)
    got = dist_loss(STUDENT, TEACHER, temperature=t, beta=beta, gamma=gamma)
    want = t * t * (beta * want_inter + gamma * want_intra)
    assert abs(got.item() - want) <= t * t * (beta + gamma) * bound + FLOAT64_TOLERANCE


def test_perfectly_correlated_vectors_are_at_distance_zero() -> None:
    u = torch.tensor([[0.1, 0.4, 0.2, 0.3], [0.7, 0.1, 0.1, 0.1]], dtype=torch.float64)
    v = 3.0 * u + 2.0
    got = pearson_distance(u, v, dim=1)
    for i, row in enumerate(u.tolist()):
        # 1 - cos with the epsilon: eps / (||u_c|| ||v_c|| + eps) exactly, in exact arithmetic.
        norms = centred_norm(row) * centred_norm([3 * a + 2 for a in row])
        assert got[i].item() == pytest.approx(COSINE_EPSILON / (norms + COSINE_EPSILON),
                                              abs=FLOAT64_TOLERANCE)
    assert (pearson_distance(u, -v, dim=1) > 2 - 1e-6).all()


def test_a_student_equal_to_its_teacher_costs_only_the_epsilon() -> None:
    """With u = v each distance is 1 - ||u_c||^2 / (||u_c||^2 + eps) = eps / (||u_c||^2 + eps),
    a few 1e-7 here rather than 0: the price of the code's epsilon, computed exactly."""
    t = 4.0
    probabilities = [softmax(row, t) for row in TEACHER.tolist()]
    columns = [list(c) for c in zip(*probabilities, strict=True)]
    inter = [COSINE_EPSILON / (centred_norm(u) ** 2 + COSINE_EPSILON) for u in probabilities]
    intra = [COSINE_EPSILON / (centred_norm(u) ** 2 + COSINE_EPSILON) for u in columns]
    want = t * t * (sum(inter) / len(inter) + sum(intra) / len(intra))
    got = dist_loss(TEACHER, TEACHER, temperature=t, beta=1.0, gamma=1.0)
    assert got.item() == pytest.approx(want, abs=FLOAT64_TOLERANCE)


def test_gradients_are_finite_and_reach_the_student_only() -> None:
    student = STUDENT.clone().float().requires_grad_(True)
    teacher = TEACHER.clone().float().requires_grad_(True)
    dist_loss(student, teacher, temperature=4.0, beta=1.0, gamma=1.0).backward()
    assert student.grad is not None and torch.isfinite(student.grad).all()
    assert teacher.grad is None


def test_half_precision_is_computed_in_float32() -> None:
    got = dist_loss(STUDENT.half(), TEACHER.half(), temperature=4.0, beta=1.0, gamma=1.0)
    want = dist_loss(STUDENT.half().double(), TEACHER.half().double(), temperature=4.0,
                     beta=1.0, gamma=1.0)
    assert got.dtype == torch.float32
    assert got.item() == pytest.approx(want.item(), rel=1e-5)
