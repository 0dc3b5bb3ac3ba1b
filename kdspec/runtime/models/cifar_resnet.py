"""CIFAR-style ResNets (He et al. 2016, section 4.2): ResNet-20/32/44/56/110.

Three stages of ``n`` basic blocks with 16, 32 and 64 channels (depth ``6n + 2``), a 3x3 stem
conv with stride 1, global average pooling and one linear layer. Shortcuts use **option A**: a
parameter-free identity that, where the shape changes, subsamples with stride 2 and zero-pads
the new channels. Option A is what gives the published parameter counts (ResNet-20 0.27M,
ResNet-56 0.85M with 10 classes); option B (1x1 projection convs) adds about 1-3%.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from kdspec.runtime.models.initialisation import he_initialise

#: depth -> blocks per stage (depth = 6n + 2).
CIFAR_RESNET_DEPTHS = {20: 3, 32: 5, 44: 7, 56: 9, 110: 18}
STAGE_CHANNELS = (16, 32, 64)


class ZeroPadShortcut(nn.Module):
    """Option-A shortcut: ``x[:, :, ::s, ::s]`` with the extra output channels filled with zeros."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.extra_channels = out_channels - in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        half = self.extra_channels // 2
        # F.pad pads the last dims first: (W_left, W_right, H_top, H_bottom, C_front, C_back).
        return F.pad(x, (0, 0, 0, 0, half, self.extra_channels - half))


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers with a residual connection; ReLU after the sum."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut: nn.Module
        if stride != 1 or in_channels != out_channels:
            self.shortcut = ZeroPadShortcut(in_channels, out_channels, stride)
        else:
            self.shortcut = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """ResNet of depth ``6n + 2`` for small images: input ``[B, C, H, W]`` -> logits ``[B, K]``.

    Any input of at least 8x8 works (two stride-2 stages, then global pooling), so the same
    network takes 32x32 RGB and 28x28 grey images.
    """

    def __init__(self, depth: int, *, in_channels: int = 3, num_classes: int = 10) -> None:
        super().__init__()
        if depth not in CIFAR_RESNET_DEPTHS:
            raise ValueError(f"CIFAR ResNet depth must be one of {sorted(CIFAR_RESNET_DEPTHS)}")
        blocks = CIFAR_RESNET_DEPTHS[depth]
        self.conv1 = nn.Conv2d(in_channels, STAGE_CHANNELS[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(STAGE_CHANNELS[0])
        stages: list[nn.Module] = []
        channels = STAGE_CHANNELS[0]
        for stage, width in enumerate(STAGE_CHANNELS):
            layers: list[nn.Module] = []
            for block in range(blocks):
                stride = 2 if stage > 0 and block == 0 else 1
                layers.append(BasicBlock(channels, width, stride))
                channels = width
            stages.append(nn.Sequential(*layers))
        self.layer1, self.layer2, self.layer3 = stages
        self.fc = nn.Linear(channels, num_classes)
        he_initialise(self)  # Kaiming-normal convs, unit BN, default linear

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)
        return self.fc(out)
