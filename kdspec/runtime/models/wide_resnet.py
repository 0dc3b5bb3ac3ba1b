"""Wide residual networks WRN-40-2 and WRN-16-2 (Zagoruyko & Komodakis, "Wide Residual
Networks", BMVC 2016), as the CRD benchmark defines them (RepDistiller ``models/wrn.py``),
written here.

Depth ``6n + 4``, widening factor ``k``: a 3x3 stem convolution to 16 channels, three groups of
``n`` pre-activation blocks with ``16k``, ``32k`` and ``64k`` channels (strides 1, 2, 2), then
batch normalisation, ReLU, global average pooling and one linear layer. A block is
``BN-ReLU-conv3x3(stride)-BN-ReLU-conv3x3`` plus a shortcut: the identity when the channels do
not change, else a 1x1 convolution with the block's stride applied to the block's
pre-activated input. No dropout. WRN-40-2 (``n = 6``, ``k = 2``) has 2.26 M parameters and
WRN-16-2 (``n = 2``) 0.70 M with 100 classes.

Feature points: ``block1``, ``block2``, ``block3``, the groups' outputs (before the final
BN-ReLU), at 32x32 input ``[32, 32, 32]``, ``[64, 16, 16]``, ``[128, 8, 8]``; the embedding is
the input of ``fc`` (``64k``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from kdspec.runtime.models.initialisation import he_initialise

#: Architecture name -> (depth, widening factor).
WIDE_RESNET_SHAPES = {"wrn_40_2": (40, 2), "wrn_16_2": (16, 2)}
STEM_CHANNELS = 16


class PreActivationBlock(nn.Module):
    """``BN-ReLU-conv-BN-ReLU-conv`` with an identity or 1x1-conv shortcut (see the module
    docstring)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.shortcut: nn.Module | None = None
        if in_channels != out_channels:
            self.shortcut = nn.Conv2d(in_channels, out_channels, 1, stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        activated = F.relu(self.bn1(x))
        out = self.conv2(F.relu(self.bn2(self.conv1(activated))))
        return out + (x if self.shortcut is None else self.shortcut(activated))


class WideResNet(nn.Module):
    """WRN-``depth``-``widen``: ``[B, C, H, W]`` -> ``[B, K]``; any input of at least 8x8."""

    def __init__(self, depth: int, widen: int, *, in_channels: int = 3,
                 num_classes: int = 100) -> None:
        super().__init__()
        if (depth - 4) % 6 or depth < 10:
            raise ValueError(f"depth must be 6n + 4 with n >= 1, found {depth}")
        blocks = (depth - 4) // 6
        self.conv1 = nn.Conv2d(in_channels, STEM_CHANNELS, 3, 1, 1, bias=False)
        channels = STEM_CHANNELS
        groups: list[nn.Sequential] = []
        for width, stride in ((16 * widen, 1), (32 * widen, 2), (64 * widen, 2)):
            layers: list[nn.Module] = []
            for block in range(blocks):
                layers.append(PreActivationBlock(channels, width, stride if block == 0 else 1))
                channels = width
            groups.append(nn.Sequential(*layers))
        self.block1, self.block2, self.block3 = groups
        self.bn = nn.BatchNorm2d(channels)
        self.fc = nn.Linear(channels, num_classes)
        he_initialise(self, zero_linear_bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block3(self.block2(self.block1(self.conv1(x))))
        out = F.relu(self.bn(out))
        return self.fc(F.adaptive_avg_pool2d(out, 1).flatten(1))
