"""Architectures by name: ``build_model(arch, in_channels=, image_size=, num_classes=)``.

kdspec's own architectures (``kdspec.catalogue.facts.ARCHITECTURES``) build here by family, untrained
and without downloads: CIFAR ResNets (option-A shortcuts), LeNet-5, torchvision ResNets and
DenseNets with small-input stems, and the CRD benchmark's ResNet-8x4/32x4, WRN-40-2/16-2 and
VGG-8/13. ``torchvision:NAME`` and ``timm:NAME`` build in
:mod:`kdspec.runtime.models.external`; a plugin's with the builder its registry entry names. The
compiler rejects unknown names first; the ``ValueError`` here is a second line of defence.
"""

from __future__ import annotations

from torch import nn

from kdspec.catalogue.facts import ARCHITECTURES
from kdspec.catalogue.registry import ArchitectureError, architecture, import_callable, is_external
from kdspec.runtime.models.cifar_resnet import CifarResNet
from kdspec.runtime.models.cifar_vgg import CifarVGG
from kdspec.runtime.models.lenet import LeNet5
from kdspec.runtime.models.resnet_x4 import RESNET_X4_DEPTHS, ResNetX4
from kdspec.runtime.models.wide_resnet import WIDE_RESNET_SHAPES, WideResNet

__all__ = ["build_model", "CifarResNet", "CifarVGG", "LeNet5", "ResNetX4", "WideResNet"]


def build_model(arch: str, *, in_channels: int, image_size: int, num_classes: int) -> nn.Module:
    """An untrained model mapping ``[B, in_channels, image_size, image_size]`` to ``[B, num_classes]``.

    Raises ``ValueError`` for a name not in the catalogue. Input sizes are checked by the
    compiler against ``ArchFacts.min_size``; every family here works from 8 px up (torchvision
    models through the small-input stem), so 28x28 Fashion-MNIST builds with any of them.
    """
    facts = ARCHITECTURES.get(arch)
    if facts is None:
        try:
            entry = architecture(arch)
        except ArchitectureError as err:
            raise ValueError(f"{err.message} ({err.help})") from err
        build = import_callable(entry.build)
        if is_external(arch):
            model: nn.Module = build(arch, in_channels=in_channels, image_size=image_size,
                                     num_classes=num_classes)
        else:
            model = build(in_channels=in_channels, image_size=image_size,
                          num_classes=num_classes)
        return model
    if facts.family == "cifar_resnet":
        depth = int(arch.removeprefix("resnet"))
        return CifarResNet(depth, in_channels=in_channels, num_classes=num_classes)
    if facts.family == "lenet":
        return LeNet5(in_channels=in_channels, image_size=image_size, num_classes=num_classes)
    if facts.family == "cifar_resnet_x4":
        return ResNetX4(RESNET_X4_DEPTHS[arch], in_channels=in_channels,
                        num_classes=num_classes)
    if facts.family == "wide_resnet":
        depth, widen = WIDE_RESNET_SHAPES[arch]
        return WideResNet(depth, widen, in_channels=in_channels, num_classes=num_classes)
    if facts.family == "cifar_vgg":
        return CifarVGG(arch, in_channels=in_channels, image_size=image_size,
                        num_classes=num_classes)
    if facts.family in ("torchvision_resnet", "torchvision_densenet"):
        # torchvision only when one of its models is built (~1.8 s of start-up otherwise)
        from kdspec.runtime.models.torchvision_models import (
            build_torchvision_densenet,
            build_torchvision_resnet,
        )
    if facts.family == "torchvision_resnet":
        return build_torchvision_resnet(
            arch, in_channels=in_channels, image_size=image_size, num_classes=num_classes
        )
    if facts.family == "torchvision_densenet":
        return build_torchvision_densenet(
            arch, in_channels=in_channels, image_size=image_size, num_classes=num_classes
        )
    raise ValueError(f"architecture {arch!r} has an unknown family {facts.family!r}")
