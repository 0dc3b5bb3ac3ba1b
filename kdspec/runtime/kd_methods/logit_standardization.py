"""Logit standardization (Sun, Ren, Li, Wang & Cao, "Logit Standardization in Knowledge
Distillation", CVPR 2024): each sample's logits are z-scored over the classes before the
tempered softmax, for the teacher and the student alike, so that the student matches the
teacher's *relations* between classes rather than the range of its logits.

``Z(z)_k = (z_k - mean(z)) / (std(z) + 1e-7)`` over the ``C`` classes of one sample, with the
standard deviation of the authors' code (``torch.std``: Bessel's correction, divisor ``C - 1``)
and their ``1e-7`` in the denominator. Kd and DKD then apply ``softmax(Z(z) / T)``; the authors
use a base temperature of 2 (3 for some CIFAR-100 pairs) and a KD weight of 9 with a CE weight of
0.1 (their README's commands).
"""

from __future__ import annotations

from typing import Final

import torch

#: Added to the standard deviation, as in the authors' code (a constant row stays finite).
STANDARDIZATION_EPSILON: Final = 1e-7
#: The base temperature the authors' CIFAR-100 commands use with standardized logits.
AUTHORS_BASE_TEMPERATURE: Final = 2.0


def standardize_logits(logits: torch.Tensor) -> torch.Tensor:
    """``(z - mean(z)) / (std(z) + 1e-7)`` over the last dimension (the classes).

    logits: ``[B, C]`` (any float dtype; half types computed in float32), ``C >= 2``.
    Returns ``[B, C]`` with mean 0 and sample standard deviation (divisor ``C - 1``) 1 per row,
    up to the ``1e-7``; gradients flow through the mean and the deviation.
    """
    if logits.shape[-1] < 2:
        raise ValueError(f"standardizing needs at least 2 classes, found {logits.shape[-1]}")
    z = logits.to(torch.promote_types(logits.dtype, torch.float32))  # half -> float32
    centred = z - z.mean(dim=-1, keepdim=True)
    return centred / (z.std(dim=-1, keepdim=True) + STANDARDIZATION_EPSILON)
