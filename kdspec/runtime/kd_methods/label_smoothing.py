"""The label-smoothing control arm: a student trained on smoothed labels instead of a teacher's
outputs, to tell what distillation adds beyond softening the targets (label smoothing as in
Szegedy, Vanhoucke, Ioffe, Shlens & Wojna, "Rethinking the Inception Architecture for Computer
Vision", CVPR 2016; as a control for KD, Yuan, Tay, Li, Wang & Feng, "Revisiting Knowledge
Distillation via Label Smoothing Regularization", CVPR 2020).

Targets over ``C`` classes for a label ``y``: ``q = (1 - eps) * onehot(y) + eps / C`` (the
convention of ``torch.nn.functional.cross_entropy(label_smoothing=eps)``), and the loss is
``L_LS = mean over B of -sum_k q_k log softmax(z_s)_k``.

*Matched* epsilon: the teacher's soft mass at ``T`` is ``m = mean over the training samples of
(1 - softmax(z_t / T)_y)``, the probability its tempered softmax puts off the true class. The
smoothed targets put ``eps * (C - 1) / C`` off the true class, so ``eps = m * C / (C - 1)``
matches it; capped at 1 (uniform targets) for a teacher that is on average below chance on the
true class.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from kdspec.runtime.losses import at_least_float32


def smoothed_targets(labels: torch.Tensor, num_classes: int, epsilon: float,
                     *, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``q``: ``[B, C]`` rows summing to 1. labels: int64 ``[B]``; epsilon in ``[0, 1]``."""
    if not 0.0 <= epsilon <= 1.0:
        raise ValueError(f"epsilon must be in [0, 1], found {epsilon}")
    onehot = F.one_hot(labels, num_classes).to(dtype)
    return (1.0 - epsilon) * onehot + epsilon / num_classes


def label_smoothing_loss(student_logits: torch.Tensor, labels: torch.Tensor, *,
                         epsilon: float) -> torch.Tensor:
    """``L_LS``: cross-entropy with the smoothed targets, averaged over the batch.
    student_logits: ``[B, C]`` (half types computed in float32). A scalar."""
    z = at_least_float32(student_logits)
    targets = smoothed_targets(labels, z.shape[1], epsilon, dtype=z.dtype)
    return -(targets * F.log_softmax(z, dim=1)).sum(dim=1).mean()


def off_target_mass(teacher_logits: torch.Tensor, labels: torch.Tensor, *,
                    temperature: float) -> torch.Tensor:
    """``1 - softmax(z_t / T)_y`` per sample: ``[B]`` (in at least float32). Summed over the
    training set and divided by its size, this is the teacher's soft mass ``m``."""
    z = at_least_float32(teacher_logits.detach())
    log_true = F.log_softmax(z / temperature, dim=1).gather(1, labels[:, None]).squeeze(1)
    return -torch.expm1(log_true)


def matched_epsilon(soft_mass: float, num_classes: int) -> float:
    """The epsilon whose targets put ``soft_mass`` off the true class: ``min(1, m * C / (C -
    1))`` (see the module docstring)."""
    if num_classes < 2:
        raise ValueError("label smoothing needs at least 2 classes")
    if not 0.0 <= soft_mass <= 1.0:
        raise ValueError(f"a soft mass is a probability, found {soft_mass}")
    return min(1.0, soft_mass * num_classes / (num_classes - 1))
