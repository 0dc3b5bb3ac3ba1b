"""The example plugin's architectures. kdspec calls a builder as
``build(in_channels=, image_size=, num_classes=)`` and trains what it returns: a module mapping
``[B, in_channels, image_size, image_size]`` images to ``[B, num_classes]`` logits."""

from __future__ import annotations

from torch import nn


def build_stripe_cnn(*, in_channels: int, image_size: int, num_classes: int) -> nn.Module:
    """Two 3x3 convolutions and a linear head (24 k parameters at 3x16x16, 4 classes)."""
    return nn.Sequential(
        nn.Conv2d(in_channels, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
        nn.AdaptiveAvgPool2d(4), nn.Flatten(),
        nn.Linear(32 * 16, num_classes),
    )


def build_stripe_mlp(*, in_channels: int, image_size: int, num_classes: int) -> nn.Module:
    """One hidden layer of 32 units over the flattened pixels."""
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(in_channels * image_size * image_size, 32), nn.ReLU(),
        nn.Linear(32, num_classes),
    )
