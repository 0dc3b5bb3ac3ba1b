"""Architectures: every catalogue name builds, published parameter counts, catalogue FLOPs."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from kdspec.catalogue.facts import ARCHITECTURES
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


#: The CIFAR-100 benchmark of the CRD paper: the parameter counts its literature quotes for these
#: models with 100 classes (ResNet-8x4 1.23 M, ResNet-32x4 7.43 M, WRN-40-2 2.25 M, WRN-16-2
#: 0.70 M, VGG-8 3.96 M, VGG-13 9.46 M), to the 1 % their rounding allows.
BENCHMARK_PARAMETERS = {"resnet8x4": 1.23, "resnet32x4": 7.43, "wrn_40_2": 2.25,
                        "wrn_16_2": 0.70, "vgg8": 3.96, "vgg13": 9.46}


@pytest.mark.parametrize(("arch", "published_millions"), BENCHMARK_PARAMETERS.items())
def test_benchmark_architectures_have_the_published_parameter_counts(
        arch: str, published_millions: float) -> None:
    model = build_on_meta(arch, in_channels=3, image_size=32, num_classes=100)
    assert parameter_count(model) / 1e6 == pytest.approx(published_millions, rel=0.01)
    assert ARCHITECTURES[arch].params_millions == pytest.approx(published_millions, rel=0.01)


@pytest.mark.parametrize("arch", BENCHMARK_PARAMETERS)
def test_benchmark_catalogue_flops_are_the_measured_ones(arch: str) -> None:
    """The catalogue's figures were counted this way (32x32, 100 classes); within 1 %."""
    model = build_on_meta(arch, in_channels=3, image_size=32, num_classes=100)
    model.eval()
    with FlopCounterMode(display=False) as counter:
        model(torch.empty(1, 3, 32, 32, device="meta"))
    assert ARCHITECTURES[arch].forward_mflops == pytest.approx(
        counter.get_total_flops() / 1e6, rel=0.01)


@pytest.mark.parametrize("arch", BENCHMARK_PARAMETERS)
def test_benchmark_architectures_train_one_step(arch: str) -> None:
    torch.manual_seed(0)
    model = build_model(arch, in_channels=3, image_size=32, num_classes=100)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    head = next(p for n, p in model.named_parameters() if n.endswith("weight")
                and p.dim() == 2)
    before = head.detach().clone()
    loss = torch.nn.functional.cross_entropy(model(torch.randn(4, 3, 32, 32)),
                                             torch.tensor([0, 1, 2, 99]))
    loss.backward()
    optimizer.step()
    assert torch.isfinite(loss)
    assert not torch.equal(before, head.detach())


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
