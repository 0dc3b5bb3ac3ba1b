"""Training losses as pure functions: cross-entropy for teachers and non-distilled students, and
Hinton's knowledge-distillation loss for distilled students.

Nothing here holds state or touches a model, so the same function serves a student trained alone
and K students trained in lockstep on one shared batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from kdspec.plan import KDLoss
from kdspec.runtime.kd_methods.logit_standardization import standardize_logits


def at_least_float32(t: torch.Tensor) -> torch.Tensor:
    """``t`` in float32 if it is a half type (bf16, fp16), else unchanged: float32 stays
    float32 and float64 stays float64 (the equivalence tests train in float64)."""
    return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t


def hard_label_loss(student_logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy ``CE(z_s, y)``.

    student_logits: ``[B, C]`` (any float dtype; half types computed in float32).
    labels: int64 ``[B]``.
    Returns a scalar of at least float32.
    """
    return F.cross_entropy(at_least_float32(student_logits), labels)


def kd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    *,
    temperature: float,
    hard_weight: float,
    soft_weight: float,
    t_squared: bool = True,
) -> torch.Tensor:
    """Hinton et al. (2015) distillation loss, averaged over the batch.

    ``L = hard_weight * CE(z_s, y) + soft_weight * s * KL(softmax(z_t / T) || softmax(z_s / T))``
    with ``s = T**2`` when ``t_squared`` (it keeps the soft term's gradient magnitude independent
    of T) and ``s = 1`` otherwise. The KL is summed over classes and averaged over the batch
    (``reduction="batchmean"``, the mathematically correct mean of a KL).

    student_logits: ``[B, C]``, with gradient.
    teacher_logits: ``[B, C]``, no gradient needed (detached here).
    labels: int64 ``[B]``.
    Returns a scalar of at least float32. Half-precision logits are computed in float32 whatever
    the autocast dtype, so bf16 training does not lose the small soft-target differences at high
    T; float64 logits stay float64.
    """
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(
            f"student logits {tuple(student_logits.shape)} and teacher logits "
            f"{tuple(teacher_logits.shape)} differ in shape"
        )
    zs = at_least_float32(student_logits)
    zt = at_least_float32(teacher_logits.detach()).to(zs.dtype)
    log_p_student = F.log_softmax(zs / temperature, dim=1)
    log_p_teacher = F.log_softmax(zt / temperature, dim=1)
    soft = F.kl_div(log_p_student, log_p_teacher, reduction="batchmean", log_target=True)
    scale = temperature**2 if t_squared else 1.0
    loss = soft_weight * scale * soft
    if hard_weight != 0.0:
        loss = loss + hard_weight * F.cross_entropy(zs, labels)
    return loss


def distillation_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    *,
    temperature: float,
    loss: KDLoss,
) -> torch.Tensor:
    """:func:`kd_loss` with the weights, T^2 convention and logit standardization of a plan's
    :class:`KDLoss`. With logit standardization (Sun et al. 2024) the soft term compares the
    z-scores of both logits over the classes
    (:func:`~kdspec.runtime.kd_methods.logit_standardization.standardize_logits`); the hard term
    keeps the raw student logits."""
    if not loss.logit_standardization:
        return kd_loss(student_logits, teacher_logits, labels, temperature=temperature,
                       hard_weight=loss.hard_weight, soft_weight=loss.soft_weight,
                       t_squared=loss.t_squared)
    soft = kd_loss(standardize_logits(student_logits), standardize_logits(teacher_logits.detach()),
                   labels, temperature=temperature, hard_weight=0.0,
                   soft_weight=loss.soft_weight, t_squared=loss.t_squared)
    if loss.hard_weight == 0.0:
        return soft
    return soft + loss.hard_weight * hard_label_loss(student_logits, labels)
