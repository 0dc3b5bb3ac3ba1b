"""Architectures: every catalogue name builds, published parameter counts, catalogue FLOPs."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from kdspec.catalog import ARCHITECTURES
from kdspec.runtime.models import build_model
from kdspec.runtime.models.cifar_resnet import BasicBlock, CifarResNet


def parameter_count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def build_on_meta(arch: str, *, in_channels: int, image_size: int, num_classes: int):
    """Build without allocating memory: shapes and counts only."""
    with torch.device("meta"):
        return build_model(arch, in_channels=in_channels, image_size=image_size,
                           num_classes=num_classes)


@pytest.mark.parametrize(
    ("arch", "num_classes", "image_size", "published_millions"),
    [
        ("resnet20", 10, 32, 0.27),
        ("resnet56", 10, 32, 0.85),
        ("resnet110", 10, 32, 1.7),
        ("resnet18", 1000, 224, 11.7),
        ("resnet50", 1000, 224, 25.6),
        ("densenet121", 1000, 224, 8.0),
    ],
)
def test_parameter_counts_match_the_published_ones(
    arch: str, num_classes: int, image_size: int, published_millions: float
) -> None:
    model = build_on_meta(arch, in_channels=3, image_size=image_size, num_classes=num_classes)
    millions = parameter_count(model) / 1e6
    assert millions == pytest.approx(published_millions, rel=0.02)


@pytest.mark.parametrize("arch", list(ARCHITECTURES))
def test_catalogue_forward_flops_match_a_counted_forward(arch: str) -> None:
    facts = ARCHITECTURES[arch]
    num_classes = 1000 if facts.ref_size >= 224 else 10
    model = build_on_meta(arch, in_channels=3, image_size=facts.ref_size, num_classes=num_classes)
    model.eval()
    with FlopCounterMode(display=False) as counter:
        model(torch.empty(1, 3, facts.ref_size, facts.ref_size, device="meta"))
    counted_mflops = counter.get_total_flops() / 1e6
    assert facts.forward_mflops == pytest.approx(counted_mflops, rel=0.15)


@pytest.mark.parametrize("arch", list(ARCHITECTURES))
@pytest.mark.parametrize(("channels", "size"), [(1, 8), (1, 28), (3, 32)])
def test_every_arch_maps_small_images_to_logits(arch: str, channels: int, size: int) -> None:
    model = build_on_meta(arch, in_channels=channels, image_size=size, num_classes=7)
    out = model(torch.empty(2, channels, size, size, device="meta"))
    assert tuple(out.shape) == (2, 7)


@pytest.mark.parametrize("arch", ["resnet20", "lenet5"])
def test_tiny_archs_give_finite_logits_at_their_minimum_size(arch: str) -> None:
    size = ARCHITECTURES[arch].min_size
    model = build_model(arch, in_channels=1, image_size=size, num_classes=10)
    out = model(torch.randn(3, 1, size, size))
    assert out.shape == (3, 10)
    assert torch.isfinite(out).all()


def test_large_input_keeps_imagenet_stem_with_other_channel_count() -> None:
    model = build_on_meta("resnet18", in_channels=1, image_size=224, num_classes=5)
    assert model.conv1.kernel_size == (7, 7)
    assert model.conv1.in_channels == 1
    assert isinstance(model.maxpool, torch.nn.MaxPool2d)


def test_small_input_gets_cifar_stem() -> None:
    model = build_on_meta("densenet121", in_channels=3, image_size=32, num_classes=10)
    assert model.features.conv0.kernel_size == (3, 3)
    assert model.features.conv0.stride == (1, 1)
    assert isinstance(model.features.pool0, torch.nn.Identity)


def test_cifar_resnet_shortcut_is_parameter_free_option_a() -> None:
    model = build_model("resnet20", in_channels=3, image_size=32, num_classes=10)
    assert isinstance(model, CifarResNet)
    layer2 = model.layer2
    assert isinstance(layer2, torch.nn.Sequential)
    block = layer2[0]
    assert isinstance(block, BasicBlock)
    x = torch.randn(1, 16, 8, 8)
    out = block.shortcut(x)
    assert out.shape == (1, 32, 4, 4)
    assert torch.equal(out[:, 8:24], x[:, :, ::2, ::2])
    assert out[:, :8].abs().sum() == 0 and out[:, 24:].abs().sum() == 0
    assert parameter_count(block.shortcut) == 0


def test_unknown_architecture_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown architecture 'resnet99' \(did you mean"):
        build_model("resnet99", in_channels=3, image_size=32, num_classes=10)
    with pytest.raises(ValueError, match="unknown architecture 'zzz'.*lenet5.*resnet20.*timm:"):
        build_model("zzz", in_channels=3, image_size=32, num_classes=10)
