"""ResNet-8x4 and ResNet-32x4, the CIFAR ResNets of the CRD benchmark (Tian, Krishnan & Isola,
ICLR 2020; architectures as in their code, RepDistiller ``models/resnet.py``), written here.

A 3x3 stem convolution to 32 channels, then three stages of ``n`` basic blocks with 64, 128 and
256 channels (4x the widths of the classic CIFAR ResNet's 16, 32, 64 after the stem), depth
``6n + 2``: ``n = 1`` for ResNet-8x4, ``n = 5`` for ResNet-32x4. A block's shortcut is the
identity, or where the shape changes (every stage's first block, the first stage included since
32 != 64) a 1x1 convolution with the block's stride followed by batch normalisation (option B).
Global average pooling and one linear layer; with 100 classes 1.23 M and 7.43 M parameters.

Feature points (``kdspec.catalogue.facts``): ``layer1``, ``layer2``, ``layer3``, the stage outputs
(after each stage's last ReLU), at 32x32 input ``[64, 32, 32]``, ``[128, 16, 16]``,
``[256, 8, 8]``; the embedding is the input of ``fc`` (256).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from kdspec.runtime.models.initialisation import he_initialise

#: Architecture name -> depth (6n + 2).
RESNET_X4_DEPTHS = {"resnet8x4": 8, "resnet32x4": 32}
STEM_CHANNELS = 32
STAGE_CHANNELS = (64, 128, 256)


class ProjectionBlock(nn.Module):
    """Two 3x3 conv-BN layers and a shortcut (identity, or 1x1 conv-BN where the shape
    changes); ReLU after the sum."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                nn.BatchNorm2d(out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNetX4(nn.Module):
    """ResNet of depth ``6n + 2`` with 4x wider stages: ``[B, C, H, W]`` -> ``[B, K]``; any
    input of at least 8x8 (two stride-2 stages, then global pooling)."""

    def __init__(self, depth: int, *, in_channels: int = 3, num_classes: int = 100) -> None:
        super().__init__()
        if (depth - 2) % 6 or depth < 8:
            raise ValueError(f"depth must be 6n + 2 with n >= 1, found {depth}")
        blocks = (depth - 2) // 6
        self.conv1 = nn.Conv2d(in_channels, STEM_CHANNELS, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(STEM_CHANNELS)
        channels = STEM_CHANNELS
        stages: list[nn.Sequential] = []
        for stage, width in enumerate(STAGE_CHANNELS):
            layers: list[nn.Module] = []
            for block in range(blocks):
                layers.append(ProjectionBlock(channels, width,
                                              2 if stage > 0 and block == 0 else 1))
                channels = width
            stages.append(nn.Sequential(*layers))
        self.layer1, self.layer2, self.layer3 = stages
        self.fc = nn.Linear(channels, num_classes)
        he_initialise(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        return self.fc(F.adaptive_avg_pool2d(out, 1).flatten(1))
