"""Attention transfer (Zagoruyko & Komodakis, "Paying More Attention to Attention: Improving
the Performance of Convolutional Neural Networks via Attention Transfer", ICLR 2017).

The attention map of a feature ``f`` ``[B, C, H, W]`` is ``Q(f) = q / ||q||_2`` with
``q = mean over channels of |f|^p``, flattened to ``[B, H * W]`` (``p = 2``; the paper sums over
channels, which the normalisation makes the same). For the paired stages ``j`` of teacher and
student:

``L_AT = sum_j mean over B and H * W of (Q(f_s^j) - Q(f_t^j))^2``

as in the CRD benchmark's code (RepDistiller, ``Attention``): where the spatial sizes differ,
the larger map is average-pooled to the smaller (``adaptive_avg_pool2d``). The whole loss is
``ce_weight * CE(z_s, y) + weight * L_AT`` with ``ce_weight = 1`` and ``weight = 1000`` (their
CIFAR-100 command).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from kdspec.runtime.losses import at_least_float32


def attention_map(feature: torch.Tensor, *, p: float = 2.0) -> torch.Tensor:
    """``Q(f)``: ``[B, C, H, W]`` -> ``[B, H * W]``, each row of unit L2 norm (a row of zeros
    stays zeros). Half types computed in float32."""
    f = at_least_float32(feature)
    return F.normalize(f.abs().pow(p).mean(dim=1).flatten(1), dim=1)


def _same_size(student: torch.Tensor, teacher: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor]:
    s_height, t_height = student.shape[2], teacher.shape[2]
    if s_height > t_height:
        student = F.adaptive_avg_pool2d(student, (t_height, teacher.shape[3]))
    elif s_height < t_height:
        teacher = F.adaptive_avg_pool2d(teacher, (s_height, student.shape[3]))
    return student, teacher


def attention_transfer_loss(student_features: Sequence[torch.Tensor],
                            teacher_features: Sequence[torch.Tensor], *,
                            p: float = 2.0) -> torch.Tensor:
    """``L_AT`` summed over the stage pairs (the teacher's features detached).

    student_features, teacher_features: the same number of ``[B, C_j, H_j, W_j]`` maps, paired
    in order; channels may differ within a pair, so may spatial sizes (pooled, see above).
    Returns a scalar of at least float32.
    """
    if len(student_features) != len(teacher_features) or not student_features:
        raise ValueError(f"attention transfer pairs stages: {len(student_features)} student "
                         f"and {len(teacher_features)} teacher features")
    terms = []
    for student, teacher in zip(student_features, teacher_features, strict=True):
        s, t = _same_size(student, teacher.detach())
        student_map = attention_map(s, p=p)
        terms.append((student_map - attention_map(t, p=p).to(student_map.dtype)).pow(2).mean())
    return torch.stack(terms).sum()
