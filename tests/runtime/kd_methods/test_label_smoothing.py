"""The label-smoothing control: targets, loss, and the epsilon matched to a teacher."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from kdspec.runtime.kd_methods.label_smoothing import (
    label_smoothing_loss,
    matched_epsilon,
    off_target_mass,
    smoothed_targets,
)
from tests.runtime.kd_methods.oracles import FLOAT64_TOLERANCE, softmax

LOGITS = torch.tensor([[1.0, 2.0, 0.0, -1.0], [0.5, -1.0, 2.0, 0.3]], dtype=torch.float64)
LABELS = torch.tensor([1, 3])


@pytest.mark.parametrize("epsilon", [0.0, 0.1, 0.5, 1.0])
def test_loss_is_cross_entropy_with_smoothed_targets(epsilon: float) -> None:
    want = 0.0
    for row, y in zip(LOGITS.tolist(), LABELS.tolist(), strict=True):
        p = softmax(row)
        q = [(1 - epsilon) * (k == y) + epsilon / 4 for k in range(4)]
        want -= sum(a * math.log(b) for a, b in zip(q, p, strict=True))
    got = label_smoothing_loss(LOGITS, LABELS, epsilon=epsilon)
    assert got.item() == pytest.approx(want / 2, rel=FLOAT64_TOLERANCE)
    # PyTorch's own implementation of the same convention.
    torch_loss = F.cross_entropy(LOGITS, LABELS, label_smoothing=epsilon)
    assert got.item() == pytest.approx(torch_loss.item(), rel=FLOAT64_TOLERANCE)


def test_targets_are_distributions() -> None:
    targets = smoothed_targets(LABELS, 4, 0.2, dtype=torch.float64)
    assert targets.sum(dim=1).tolist() == pytest.approx([1.0, 1.0])
    assert targets[0].tolist() == pytest.approx([0.05, 0.85, 0.05, 0.05])


def test_matched_epsilon_puts_the_teachers_soft_mass_off_the_true_class() -> None:
    t = 4.0
    masses = off_target_mass(LOGITS, LABELS, temperature=t)
    want = [1 - softmax(row, t)[y] for row, y in zip(LOGITS.tolist(), LABELS.tolist(),
                                                      strict=True)]
    assert masses.tolist() == pytest.approx(want, rel=FLOAT64_TOLERANCE)
    soft_mass = masses.mean().item()
    epsilon = matched_epsilon(soft_mass, 4)
    targets = smoothed_targets(LABELS, 4, epsilon, dtype=torch.float64)
    off_true = 1 - targets[torch.arange(2), LABELS]
    assert off_true.tolist() == pytest.approx([soft_mass, soft_mass], rel=FLOAT64_TOLERANCE)


def test_a_teacher_below_chance_gives_uniform_targets() -> None:
    assert matched_epsilon(0.9, 4) == 1.0
    assert matched_epsilon(0.0, 4) == 0.0
    with pytest.raises(ValueError):
        matched_epsilon(1.5, 4)


def test_half_precision_is_computed_in_float32_and_gradients_are_finite() -> None:
    logits = LOGITS.bfloat16().requires_grad_(True)
    got = label_smoothing_loss(logits, LABELS, epsilon=0.1)
    assert got.dtype == torch.float32
    got.backward()
    assert logits.grad is not None and torch.isfinite(logits.grad.float()).all()
    assert off_target_mass(LOGITS.half(), LABELS, temperature=2.0).dtype == torch.float32
