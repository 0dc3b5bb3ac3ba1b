"""DIST (Huang, You, Wang, Qian & Xu, "Knowledge Distillation from A Stronger Teacher", NeurIPS
2022): match the *relations* of the teacher's probabilities, not their values.

With ``Y^s = softmax(z_s / T)`` and ``Y^t = softmax(z_t / T)``, both ``[B, C]``, and the Pearson
distance ``d_p(u, v) = 1 - rho(u, v)`` (``rho``: Pearson's correlation, the cosine similarity of
the centred vectors):

- inter-class relation: ``L_inter = (1 / B) * sum_i d_p(Y^s_i,:, Y^t_i,:)`` (each sample's
  probabilities over the classes);
- intra-class relation: ``L_intra = (1 / C) * sum_j d_p(Y^s_:,j, Y^t_:,j)`` (each class's
  probabilities over the batch);
- ``L_DIST = T^2 * (beta * L_inter + gamma * L_intra)``; the whole loss is
  ``ce_weight * CE(z_s, y) + L_DIST``.

``rho`` is linear-invariant: ``d_p(u, a * u + b) = 0`` for ``a > 0``, so the student need not
reproduce the teacher's confidence, only its ranking and spread. As in the authors' code the
cosine's denominator has ``1e-8`` added (a constant vector has no correlation; it then gives
``d_p = 1`` instead of NaN). Defaults of the authors' code (``DIST(beta=1, gamma=1)``, loss
weights 1 in their KD wrapper; ``tau = 4`` in their CIFAR-100 runs, ``tau = 1`` on ImageNet).
"""

from __future__ import annotations

from typing import Final

import torch
import torch.nn.functional as F

from kdspec.runtime.losses import at_least_float32

#: Added to the product of norms in the cosine, as in the authors' code.
COSINE_EPSILON: Final = 1e-8


def pearson_distance(u: torch.Tensor, v: torch.Tensor, *, dim: int) -> torch.Tensor:
    """``1 - rho(u, v)`` along ``dim``: 0 for perfectly correlated vectors, 2 for perfectly
    anti-correlated ones. ``u``, ``v``: equal shapes; returns the shape without ``dim``."""
    if u.shape != v.shape:
        raise ValueError(f"shapes {tuple(u.shape)} and {tuple(v.shape)} differ")
    cu = u - u.mean(dim=dim, keepdim=True)
    cv = v - v.mean(dim=dim, keepdim=True)
    cosine = (cu * cv).sum(dim=dim) / (cu.norm(dim=dim) * cv.norm(dim=dim) + COSINE_EPSILON)
    return 1.0 - cosine


def dist_relations(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, *, temperature: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(L_inter, L_intra)`` at temperature ``T``, without the ``T^2`` factor.

    student_logits, teacher_logits: ``[B, C]`` (half types computed in float32; the teacher
    is detached). ``L_intra`` needs ``B >= 2`` to mean anything (one sample has no spread
    over the batch: its distance is 1). Returns two scalars.
    """
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(f"student logits {tuple(student_logits.shape)} and teacher logits "
                         f"{tuple(teacher_logits.shape)} differ in shape")
    zs = at_least_float32(student_logits)
    zt = at_least_float32(teacher_logits.detach()).to(zs.dtype)
    ys = F.softmax(zs / temperature, dim=1)
    yt = F.softmax(zt / temperature, dim=1)
    inter = pearson_distance(ys, yt, dim=1).mean()
    intra = pearson_distance(ys, yt, dim=0).mean()
    return inter, intra


def dist_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    *,
    temperature: float,
    beta: float,
    gamma: float,
) -> torch.Tensor:
    """``T^2 * (beta * L_inter + gamma * L_intra)``: a scalar of at least float32 (the
    distillation term only; the CE term is the caller's)."""
    inter, intra = dist_relations(student_logits, teacher_logits, temperature=temperature)
    return temperature**2 * (beta * inter + gamma * intra)
