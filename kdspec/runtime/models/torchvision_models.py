"""torchvision ResNet-18/34/50 and DenseNet-121/169, untrained, adapted to the dataset.

Built with ``weights=None`` so nothing is ever downloaded. The stem is adapted to the input:

- images of at least 64 px keep the ImageNet stem (7x7 stride-2 conv + 3x3 stride-2 max-pool),
  with the first conv rebuilt only when the channel count is not 3;
- smaller images (32x32 CIFAR, 28x28 Fashion-MNIST) get a CIFAR-style stem: a 3x3 stride-1 conv
  and no max-pool, so the final feature map is 4x4 rather than 1x1 at 32 px.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn
from torchvision import models as tv_models

#: Inputs smaller than this get the CIFAR-style stem.
SMALL_INPUT_SIZE = 64

RESNET_BUILDERS: dict[str, Callable[..., tv_models.ResNet]] = {
    "resnet18": tv_models.resnet18,
    "resnet34": tv_models.resnet34,
    "resnet50": tv_models.resnet50,
}
DENSENET_BUILDERS: dict[str, Callable[..., tv_models.DenseNet]] = {
    "densenet121": tv_models.densenet121,
    "densenet169": tv_models.densenet169,
}


def _stem_conv(old: nn.Conv2d, in_channels: int, small_input: bool) -> nn.Conv2d:
    """The replacement first conv: 3x3 stride 1 for small inputs, else ``old``'s geometry."""
    if small_input:
        return nn.Conv2d(in_channels, old.out_channels, 3, 1, 1, bias=False)
    kernel, stride, padding = old.kernel_size[0], old.stride[0], old.padding
    assert isinstance(padding, tuple)
    return nn.Conv2d(in_channels, old.out_channels, kernel, stride, padding[0], bias=False)


def build_torchvision_resnet(
    arch: str, *, in_channels: int, image_size: int, num_classes: int
) -> tv_models.ResNet:
    """An untrained torchvision ResNet with its stem adapted (see the module docstring)."""
    model = RESNET_BUILDERS[arch](weights=None, num_classes=num_classes)
    small_input = image_size < SMALL_INPUT_SIZE
    if small_input or in_channels != 3:
        model.conv1 = _stem_conv(model.conv1, in_channels, small_input)
        nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")
    if small_input:
        model.maxpool = nn.Identity()
    return model


def build_torchvision_densenet(
    arch: str, *, in_channels: int, image_size: int, num_classes: int
) -> tv_models.DenseNet:
    """An untrained torchvision DenseNet with its stem adapted (see the module docstring)."""
    model = DENSENET_BUILDERS[arch](weights=None, num_classes=num_classes)
    small_input = image_size < SMALL_INPUT_SIZE
    features = model.features
    if small_input or in_channels != 3:
        old = features.conv0
        assert isinstance(old, nn.Conv2d)
        features.conv0 = _stem_conv(old, in_channels, small_input)
        nn.init.kaiming_normal_(features.conv0.weight)
    if small_input:
        features.pool0 = nn.Identity()
    return model
