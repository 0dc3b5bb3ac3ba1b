"""FitNets (Romero, Ballas, Kahou, Chassang, Gatta & Bengio, "FitNets: Hints for Thin Deep
Nets", ICLR 2015): the student's *guided* layer learns to predict the teacher's *hint* layer
through a learned regressor ``r``:

``L_hint = mean over B, C_t, H_t, W_t of (r(f_s) - f_t)^2``

with ``f_s`` the student's guided feature ``[B, C_s, H_s, W_s]`` and ``f_t`` the teacher's
hint ``[B, C_t, H_t, W_t]``. As in the CRD benchmark's code (RepDistiller, ``ConvReg`` and
``HintLoss``), training is one stage, ``ce_weight * CE(z_s, y) + weight * L_hint`` with
``ce_weight = 1`` and ``weight = 100``, and the hint and guided layers are the second stage
outputs (their ``hint_layer = 2``).

The regressor, by the spatial sizes (the benchmark's rule, in this order):

- ``H_s = 2 H_t``: 3x3 convolution, stride 2, padding 1;
- ``2 H_s = H_t``: 4x4 transposed convolution, stride 2, padding 1;
- ``H_s >= H_t``: a ``(1 + H_s - H_t) x (1 + W_s - W_t)`` convolution, no padding;

each followed by batch normalisation over ``C_t`` channels and a ReLU. A student map smaller
than the teacher's by another factor has no regressor (``ValueError``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from kdspec.runtime.losses import at_least_float32

FeatureShape = tuple[int, int, int]  # (channels, height, width) of one sample's feature map


class HintRegressor(nn.Module):
    """``r``: maps the student's guided feature ``[B, C_s, H_s, W_s]`` to the teacher's hint
    shape ``[B, C_t, H_t, W_t]`` (convolution, batch norm, ReLU; see the module docstring).
    Trained with the student, by the same optimizer."""

    def __init__(self, student_shape: FeatureShape, teacher_shape: FeatureShape) -> None:
        super().__init__()
        s_channels, s_height, s_width = student_shape
        t_channels, t_height, t_width = teacher_shape
        self.conv: nn.Module
        if s_height == 2 * t_height:
            self.conv = nn.Conv2d(s_channels, t_channels, 3, stride=2, padding=1)
        elif 2 * s_height == t_height:
            self.conv = nn.ConvTranspose2d(s_channels, t_channels, 4, stride=2, padding=1)
        elif s_height >= t_height and s_width >= t_width:
            self.conv = nn.Conv2d(s_channels, t_channels,
                                  (1 + s_height - t_height, 1 + s_width - t_width))
        else:
            raise ValueError(f"no hint regressor maps a student feature {student_shape} to a "
                             f"teacher feature {teacher_shape} (C, H, W): the student map "
                             "must be twice, half, or at least the teacher's size")
        self.bn = nn.BatchNorm2d(t_channels)

    def forward(self, guided: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(guided)))


def hint_loss(regressed: torch.Tensor, hint: torch.Tensor) -> torch.Tensor:
    """``L_hint``: the mean squared difference over every element of ``[B, C_t, H_t, W_t]``
    (the teacher's hint detached; half types computed in float32). A scalar."""
    if regressed.shape != hint.shape:
        raise ValueError(f"regressed feature {tuple(regressed.shape)} and hint "
                         f"{tuple(hint.shape)} differ in shape")
    guess = at_least_float32(regressed)
    return F.mse_loss(guess, at_least_float32(hint.detach()).to(guess.dtype))
