"""VGG-8 and VGG-13 with batch normalisation, the CIFAR VGGs of the CRD benchmark (after
Simonyan & Zisserman, ICLR 2015; as in RepDistiller ``models/vgg.py``, where ``vgg8`` and
``vgg13`` are the ``_bn`` variants), written here.

Five blocks of 3x3 convolutions (with bias), each followed by batch normalisation and ReLU:

- VGG-8: one convolution per block, 64, 128, 256, 512, 512 channels;
- VGG-13: two per block, the same widths.

Max-pooling (2x2) after blocks 0, 1 and 2, and after block 3 only for inputs of 64 px and more
(the benchmark's code pools there at 64 px; at 32 px blocks 3 and 4 run at 4x4), then global
average pooling and one linear layer from 512. With 100 classes VGG-8 has 3.96 M parameters and
VGG-13 9.46 M.

Feature points: ``block1`` to ``block4``, the blocks' outputs after their last ReLU (the
benchmark's features start after block 0, which its methods leave out), at 32x32 input
``[128, 16, 16]``, ``[256, 8, 8]``, ``[512, 4, 4]``, ``[512, 4, 4]``; the embedding is the input
of ``classifier`` (512).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

#: Architecture name -> channels of each convolution, block by block.
VGG_CONFIGS: dict[str, tuple[tuple[int, ...], ...]] = {
    "vgg8": ((64,), (128,), (256,), (512,), (512,)),
    "vgg13": ((64, 64), (128, 128), (256, 256), (512, 512), (512, 512)),
}
#: Inputs at least this large are pooled after block 3 as well.
POOL_AFTER_BLOCK3_FROM = 64


def _block(in_channels: int, widths: tuple[int, ...]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for width in widths:
        layers += [nn.Conv2d(in_channels, width, 3, padding=1), nn.BatchNorm2d(width),
                   nn.ReLU()]
        in_channels = width
    return nn.Sequential(*layers)


class CifarVGG(nn.Module):
    """A CIFAR VGG with batch norm: ``[B, C, H, W]`` -> ``[B, K]``; any input of at least 8x8."""

    def __init__(self, arch: str, *, in_channels: int = 3, image_size: int = 32,
                 num_classes: int = 100) -> None:
        super().__init__()
        config = VGG_CONFIGS[arch]
        channels = [in_channels, *(widths[-1] for widths in config)]
        self.block0, self.block1, self.block2, self.block3, self.block4 = (
            _block(channels[i], widths) for i, widths in enumerate(config))
        self.pool0, self.pool1, self.pool2 = (nn.MaxPool2d(2) for _ in range(3))
        self.pool3: nn.Module = (nn.MaxPool2d(2) if image_size >= POOL_AFTER_BLOCK3_FROM
                                 else nn.Identity())
        self.classifier = nn.Linear(channels[-1], num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                assert module.bias is not None
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, 0.0, 0.01)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.pool0(self.block0(x))
        out = self.pool1(self.block1(out))
        out = self.pool2(self.block2(out))
        out = self.block4(self.pool3(self.block3(out)))
        return self.classifier(F.adaptive_avg_pool2d(out, 1).flatten(1))
