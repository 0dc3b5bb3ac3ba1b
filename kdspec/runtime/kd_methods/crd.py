"""Contrastive Representation Distillation (Tian, Krishnan & Isola, ICLR 2020), as in the
authors' code (RepDistiller: ``crd/criterion.py``, ``crd/memory.py``).

The penultimate embeddings (the inputs of each model's classifier), ``h_s`` ``[B, d_s]`` and
``h_t`` ``[B, d_t]``, go through learned heads ``g(h) = W h + b`` then L2 normalisation, to
``v_s``, ``v_t`` ``[B, D]`` (``D = feat_dim = 128``). A memory bank keeps one unit vector per
training sample for each side, ``M_s`` and ``M_t`` ``[N, D]``. For a sample ``i`` and its
``K + 1`` contrast indices ``c_0 = i`` (the positive) and ``c_1..c_K`` (``K = nce_k = 16384``
samples of other classes, the code's "exact" mode, :mod:`crd_negatives`):

- student-anchored scores ``s_k = exp(<M_t[c_k], v_s> / tau) / Z_s``;
- teacher-anchored scores ``t_k = exp(<M_s[c_k], v_t> / tau) / Z_t``;

``tau = nce_t = 0.07``; ``Z_s``, ``Z_t`` are set once, on the first batch, to ``N`` times the
mean unnormalised score (then kept: they are state). The NCE loss of a ``[B, K + 1]`` score
matrix ``x``, with noise probability ``1 / N``, ``m = K`` and ``e = 1e-7``:

``L_NCE(x) = -(1 / B) * sum_i [log(x_i0 / (x_i0 + m / N + e))
+ sum_{k>=1} log((m / N) / (x_ik + m / N + e))]``

and ``L_CRD = L_NCE(s) + L_NCE(t)``; the whole loss is ``ce_weight * CE(z_s, y) + weight *
L_CRD`` with ``ce_weight = 1``, ``weight = 0.8`` (the authors' command). After the scores are
taken, the rows of the batch's own samples move: ``M[i] <- normalise(m_b * M[i] + (1 - m_b) *
v_i)`` with ``m_b = nce_m = 0.5``, for both banks. The banks start uniform in
``[-1 / sqrt(D / 3), 1 / sqrt(D / 3)]``.

:class:`ContrastMemory` is the only state: its buffers (both banks and both ``Z``) are in its
``state_dict``, so a checkpoint that saves it resumes the method exactly.
"""

from __future__ import annotations

import math
from typing import Final

import torch
import torch.nn.functional as F
from torch import nn

from kdspec.runtime.losses import at_least_float32

#: The ``e`` of the NCE loss, as in the authors' code.
NCE_EPSILON: Final = 1e-7


class EmbeddingHead(nn.Module):
    """``g``: ``[B, d]`` (or any ``[B, ...]``, flattened) -> ``[B, D]`` unit vectors; one per
    side, trained with the student."""

    def __init__(self, in_features: int, feat_dim: int) -> None:
        super().__init__()
        self.linear = nn.Linear(in_features, feat_dim)

    def forward(self, embedding: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.linear(embedding.flatten(1)), dim=1)


class ContrastMemory(nn.Module):
    """The two memory banks and the two normalising constants (buffers, no parameters).

    ``forward(v_s, v_t, index, contrast_index)`` returns the student- and teacher-anchored
    scores ``[B, K + 1]`` and then updates the rows ``index`` of both banks.
    """

    student_bank: torch.Tensor
    teacher_bank: torch.Tensor
    normalizers: torch.Tensor

    def __init__(self, feat_dim: int, n_data: int, *, nce_k: int, nce_t: float, nce_m: float,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        if not 0 < nce_k < n_data:
            raise ValueError(f"nce_k must be between 1 and the {n_data - 1} other samples, "
                             f"found {nce_k}")
        self.nce_k, self.nce_t, self.nce_m, self.n_data = nce_k, nce_t, nce_m, n_data
        bound = 1.0 / math.sqrt(feat_dim / 3)
        for name in ("student_bank", "teacher_bank"):
            start = torch.rand(n_data, feat_dim, generator=generator) * (2 * bound) - bound
            self.register_buffer(name, start)
        #: ``(Z_s, Z_t)``; negative until the first batch sets them.
        self.register_buffer("normalizers", torch.full((2,), -1.0))

    def forward(self, student: torch.Tensor, teacher: torch.Tensor, index: torch.Tensor,
                contrast_index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """student, teacher: ``[B, D]`` unit vectors (the heads' outputs); index: int64 ``[B]``
        (the samples' rows); contrast_index: int64 ``[B, K + 1]``, column 0 the positive.
        Returns ``(s, t)``, each ``[B, K + 1]`` in float32 (float64 stays float64)."""
        if contrast_index.shape[1] != self.nce_k + 1:
            raise ValueError(f"contrast_index has {contrast_index.shape[1]} columns; expected "
                             f"nce_k + 1 = {self.nce_k + 1}")
        v_s = at_least_float32(student)
        v_t = at_least_float32(teacher).to(v_s.dtype)
        batch, columns = contrast_index.shape
        flat = contrast_index.reshape(-1)
        bank_t = self.teacher_bank.index_select(0, flat).view(batch, columns, -1).to(v_s.dtype)
        bank_s = self.student_bank.index_select(0, flat).view(batch, columns, -1).to(v_s.dtype)
        raw_s = torch.exp(torch.bmm(bank_t, v_s.unsqueeze(2)).squeeze(2) / self.nce_t)
        raw_t = torch.exp(torch.bmm(bank_s, v_t.unsqueeze(2)).squeeze(2) / self.nce_t)
        with torch.no_grad():
            if self.normalizers[0] < 0:
                self.normalizers.copy_(torch.stack([raw_s.mean(), raw_t.mean()]).to(
                    self.normalizers.dtype) * self.n_data)
            self._move(self.student_bank, index, v_s)
            self._move(self.teacher_bank, index, v_t)
        z_s, z_t = (self.normalizers.to(v_s.dtype)).unbind()
        return raw_s / z_s, raw_t / z_t

    def _move(self, bank: torch.Tensor, index: torch.Tensor, vectors: torch.Tensor) -> None:
        mixed = bank.index_select(0, index) * self.nce_m + vectors.detach().to(
            bank.dtype) * (1 - self.nce_m)
        bank.index_copy_(0, index, F.normalize(mixed, dim=1))


def nce_loss(scores: torch.Tensor, n_data: int) -> torch.Tensor:
    """``L_NCE`` of a ``[B, K + 1]`` score matrix (column 0 the positive) against noise of
    probability ``1 / n_data``: a scalar (see the module docstring)."""
    x = at_least_float32(scores)
    negatives = x.shape[1] - 1
    noise = negatives / n_data
    log_positive = torch.log(x[:, 0] / (x[:, 0] + noise + NCE_EPSILON))
    log_negative = torch.log(noise / (x[:, 1:] + noise + NCE_EPSILON))
    return -(log_positive.sum() + log_negative.sum()) / x.shape[0]


def crd_loss(student_scores: torch.Tensor, teacher_scores: torch.Tensor,
             n_data: int) -> torch.Tensor:
    """``L_CRD = L_NCE(s) + L_NCE(t)``: a scalar (the distillation term only)."""
    return nce_loss(student_scores, n_data) + nce_loss(teacher_scores, n_data)
