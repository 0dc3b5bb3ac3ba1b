"""LeNet-5 (LeCun et al. 1998), the paper's Trifeature student, adapted to any input.

The classic layout: conv 5x5 (6) -> pool -> conv 5x5 (16) -> pool -> fc 120 -> fc 84 -> fc K,
with ReLU and max-pooling in place of the original scaled tanh and trainable subsampling (the
modern reading used by KD repositories). Adaptation to the input:

- channels: the first conv takes the dataset's channels;
- inputs smaller than 32 px get 2 px of padding in the first conv (exactly the classic MNIST
  setup at 28 px), and the second conv is padded too when its input is under 10 px;
- the feature map is average-pooled to 5x5 before the classifier (an identity at 32 and 28 px),
  so the classifier keeps its 16*5*5 -> 120 shape and ~62k parameters at any resolution.

Feature points (``kdspec.catalogue.facts``): ``pool1`` and ``pool2``, the outputs of the two conv stages
(conv, ReLU, max-pool), at 32x32 input ``[6, 14, 14]`` and ``[16, 5, 5]``; the embedding is the
input of ``fc3`` (84). The pools are parameter-free modules, so state dicts are unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

CLASSIC_INPUT_SIZE = 32
FEATURE_SIDE = 5


class LeNet5(nn.Module):
    """LeNet-5: input ``[B, C, H, W]`` with ``H = W = image_size`` -> logits ``[B, K]``."""

    def __init__(self, *, in_channels: int, image_size: int, num_classes: int) -> None:
        super().__init__()
        pad1 = 2 if image_size < CLASSIC_INPUT_SIZE else 0
        side = (image_size + 2 * pad1 - 4) // 2
        pad2 = 2 if side < 10 else 0
        self.conv1 = nn.Conv2d(in_channels, 6, 5, padding=pad1)
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(6, 16, 5, padding=pad2)
        self.pool2 = nn.MaxPool2d(2)
        self.fc1 = nn.Linear(16 * FEATURE_SIDE * FEATURE_SIDE, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.pool1(F.relu(self.conv1(x)))
        out = self.pool2(F.relu(self.conv2(out)))
        if out.shape[-1] != FEATURE_SIDE or out.shape[-2] != FEATURE_SIDE:
            out = F.adaptive_avg_pool2d(out, FEATURE_SIDE)
        out = F.relu(self.fc1(out.flatten(1)))
        out = F.relu(self.fc2(out))
        return self.fc3(out)
