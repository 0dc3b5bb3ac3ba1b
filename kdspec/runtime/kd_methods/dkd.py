"""Decoupled Knowledge Distillation (Zhao, Cui, Song, Qiu & Liang, CVPR 2022).

With ``p = softmax(z / T)`` over the ``C`` classes and ``t`` the true class of a sample:

- binary probabilities ``b = [p_t, 1 - p_t]`` (target, all non-targets together);
- non-target probabilities ``p^_k = p_k / (1 - p_t)`` for ``k != t`` (a distribution over the
  ``C - 1`` other classes);
- ``TCKD = KL(b^teacher || b^student)`` and ``NCKD = KL(p^^teacher || p^^student)``.

The paper's decomposition of Hinton's soft term is ``KD = TCKD + (1 - p_t^teacher) * NCKD``
(per sample, at one T). DKD weights the two parts freely:
``L_DKD = (alpha * TCKD + beta * NCKD) * T^2``, averaged over the batch, and the whole loss is
``ce_weight * CE(z_s, y) + w(epoch) * L_DKD`` with a linear warm-up
``w = min(epoch / warmup, 1)`` counted from epoch 1 (the authors' trainer).

Defaults of the authors' code for CIFAR-100 (mdistiller, ``engine/cfg.py``): ``ce_weight = 1``,
``alpha = 1``, ``beta = 8``, ``T = 4``, ``warmup = 20`` epochs (their configs for the
WRN-40-2 / WRN-16-2 and VGG13 / VGG8 pairs set ``beta = 6``).

Everything is computed from log-probabilities (log-softmax and log-sum-exp), so a target
probability of 1 in float32 gives a finite NCKD instead of ``0 * log 0``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from kdspec.runtime.kd_methods.logit_standardization import standardize_logits
from kdspec.runtime.losses import at_least_float32


def _relative_entropy(log_p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """``sum_k p_k (log p_k - log q_k)`` over the last dimension, with ``0 log 0 = 0`` (entries
    where ``p_k = 0``, ``log p_k = -inf``, add nothing)."""
    p = log_p.exp()
    terms = torch.where(p > 0, p * (log_p - log_q), torch.zeros_like(p))
    return terms.sum(dim=-1)


def _binary_and_rest(log_p: torch.Tensor, target: torch.Tensor
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(log b, log p^)``: ``[B, 2]`` log-probabilities of target vs the rest, and ``[B, C]``
    log-probabilities renormalised over the non-target classes (``-inf`` at the target).
    ``target``: the ``[B, C]`` one-hot mask of the true classes."""
    log_target = log_p[target].view(-1, 1)
    masked = log_p.masked_fill(target, float("-inf"))
    log_rest = torch.logsumexp(masked, dim=1, keepdim=True)
    return torch.cat([log_target, log_rest], dim=1), masked - log_rest


def decoupled_kd_terms(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    *,
    temperature: float,
    logit_standardization: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample ``(TCKD, NCKD)`` at temperature ``T``, without the ``T^2`` factor.

    student_logits, teacher_logits: ``[B, C]`` with ``C >= 2`` (half types computed in
    float32; the teacher is detached). labels: int64 ``[B]``. ``logit_standardization``:
    z-score both first (:func:`standardize_logits`). Returns two ``[B]`` tensors.
    """
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(f"student logits {tuple(student_logits.shape)} and teacher logits "
                         f"{tuple(teacher_logits.shape)} differ in shape")
    if student_logits.shape[1] < 2:
        raise ValueError("DKD needs at least 2 classes")
    zs = at_least_float32(student_logits)
    zt = at_least_float32(teacher_logits.detach()).to(zs.dtype)
    if logit_standardization:
        zs, zt = standardize_logits(zs), standardize_logits(zt)
    target = F.one_hot(labels, zs.shape[1]).bool()
    binary_s, rest_s = _binary_and_rest(F.log_softmax(zs / temperature, dim=1), target)
    binary_t, rest_t = _binary_and_rest(F.log_softmax(zt / temperature, dim=1), target)
    tckd = _relative_entropy(binary_t, binary_s)
    nckd = _relative_entropy(rest_t, rest_s.masked_fill(target, 0.0))
    return tckd, nckd


def dkd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    *,
    temperature: float,
    alpha: float,
    beta: float,
    logit_standardization: bool = False,
) -> torch.Tensor:
    """``(alpha * TCKD + beta * NCKD) * T^2``, averaged over the batch: a scalar of at least
    float32 (the distillation term only; CE and the warm-up are the caller's)."""
    tckd, nckd = decoupled_kd_terms(student_logits, teacher_logits, labels,
                                    temperature=temperature,
                                    logit_standardization=logit_standardization)
    return (alpha * tckd + beta * nckd).mean() * temperature**2


def dkd_warmup_factor(epoch: int, warmup: int) -> float:
    """The weight of the DKD term in ``epoch`` (0-based, as kdspec counts): ``min((epoch + 1) /
    warmup, 1)``, which is the authors' ``min(epoch / warmup, 1)`` with epochs counted from 1;
    ``warmup = 0`` means no warm-up."""
    if epoch < 0 or warmup < 0:
        raise ValueError(f"epoch ({epoch}) and warmup ({warmup}) must be >= 0")
    return 1.0 if warmup == 0 else min((epoch + 1) / warmup, 1.0)
