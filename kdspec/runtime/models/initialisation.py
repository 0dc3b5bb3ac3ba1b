"""The initialisation the CIFAR networks share (He et al. 2015, as the CIFAR ResNet and WRN
papers' code): Kaiming-normal convolutions (fan out, ReLU gain), batch norms at scale 1 and shift
0; the layers it does not name keep PyTorch's defaults."""

from __future__ import annotations

from torch import nn


def he_initialise(model: nn.Module, *, zero_linear_bias: bool = False) -> None:
    """Initialise ``model``'s convolutions and batch norms in place (in ``modules()`` order, so
    a model draws the same numbers from the same seed); ``zero_linear_bias``: also zero the
    biases of its linear layers (the wide ResNets' code does)."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Linear) and zero_linear_bias:
            nn.init.zeros_(module.bias)
