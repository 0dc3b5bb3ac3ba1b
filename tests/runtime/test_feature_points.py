"""Feature points: on every catalogue architecture the hooks capture the documented stage
outputs, and chaining the captured tensors through the rest of the model gives its logits."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from kdspec.catalogue.facts import ARCHITECTURES
from kdspec.runtime.models import build_model
from kdspec.runtime.models.feature_points import capture_features, forward_with_features

#: (channels, side) of each feature point at 32x32 RGB input, from the architectures' papers
#: and code (stride-1 stems below 64 px for the torchvision models).
SHAPES: dict[str, list[tuple[int, int]]] = {
    **{f"resnet{d}": [(16, 32), (32, 16), (64, 8)] for d in (20, 32, 44, 56, 110)},
    "lenet5": [(6, 14), (16, 5)],
    "resnet18": [(64, 32), (128, 16), (256, 8), (512, 4)],
    "resnet34": [(64, 32), (128, 16), (256, 8), (512, 4)],
    "resnet50": [(256, 32), (512, 16), (1024, 8), (2048, 4)],
    "densenet121": [(256, 32), (512, 16), (1024, 8), (1024, 4)],
    "densenet169": [(256, 32), (512, 16), (1280, 8), (1664, 4)],
    "resnet8x4": [(64, 32), (128, 16), (256, 8)],
    "resnet32x4": [(64, 32), (128, 16), (256, 8)],
    "wrn_40_2": [(32, 32), (64, 16), (128, 8)],
    "wrn_16_2": [(32, 32), (64, 16), (128, 8)],
    "vgg8": [(128, 16), (256, 8), (512, 4), (512, 4)],
    "vgg13": [(128, 16), (256, 8), (512, 4), (512, 4)],
}

Step = Callable[[nn.Module, torch.Tensor], torch.Tensor]


def _pool(t: torch.Tensor) -> torch.Tensor:
    return F.adaptive_avg_pool2d(t, 1).flatten(1)


def _next_stage(family: str, index: int) -> Step:
    """What maps feature point ``index`` to point ``index + 1``, written from each family's
    definition (not from the hooks)."""
    def stage(m: nn.Module, t: torch.Tensor) -> torch.Tensor:
        points = ARCHITECTURES_BY_FAMILY[family]
        after = m.get_submodule(points[index + 1])
        if family == "lenet":
            return after(F.relu(m.get_submodule("conv2")(t)))
        if family == "cifar_vgg":
            return after(m.get_submodule(f"pool{index + 1}")(t))
        if family == "torchvision_densenet":
            return after(m.get_submodule(f"features.transition{index + 1}")(t))
        return after(t)
    return stage


#: What maps the last feature point to the classifier's input, by family.
EMBEDDING: dict[str, Step] = {
    "cifar_resnet": lambda m, t: _pool(t),
    "cifar_resnet_x4": lambda m, t: _pool(t),
    "torchvision_resnet": lambda m, t: _pool(t),
    "cifar_vgg": lambda m, t: _pool(t),
    "wide_resnet": lambda m, t: _pool(F.relu(m.get_submodule("bn")(t))),
    "torchvision_densenet": lambda m, t: _pool(F.relu(m.get_submodule("features.norm5")(t))),
    "lenet": lambda m, t: F.relu(m.get_submodule("fc2")(F.relu(m.get_submodule("fc1")(
        F.adaptive_avg_pool2d(t, 5).flatten(1))))),
}
ARCHITECTURES_BY_FAMILY = {f.family: f.feature_points for f in ARCHITECTURES.values()}


def _model(arch: str, size: int = 32) -> nn.Module:
    torch.manual_seed(0)
    return build_model(arch, in_channels=3, image_size=size, num_classes=10).eval()


@pytest.mark.parametrize("arch", list(ARCHITECTURES))
def test_features_have_the_documented_shapes_and_hooks_go_away(arch: str) -> None:
    facts = ARCHITECTURES[arch]
    with torch.device("meta"):  # shapes only: no memory, no compute
        model = _model(arch)
        out = forward_with_features(model, torch.empty(2, 3, 32, 32), facts.feature_points,
                                    classifier=facts.classifier)
    assert [(f.shape[1], f.shape[2]) for f in out.features.values()] == SHAPES[arch]
    assert out.embedding is not None and out.logits.shape == (2, 10)
    named = [model.get_submodule(p) for p in (*facts.feature_points, facts.classifier)]
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in named)


#: The smallest architecture of each family: the names within a family come from one builder,
#: and the shape test above covers every architecture.
ONE_PER_FAMILY = ["resnet20", "lenet5", "resnet18", "densenet121", "resnet8x4", "wrn_16_2",
                  "vgg8"]


def test_every_family_is_computed() -> None:
    assert {ARCHITECTURES[a].family for a in ONE_PER_FAMILY} == {
        f.family for f in ARCHITECTURES.values()}


@pytest.mark.parametrize("arch", ONE_PER_FAMILY)
def test_captured_features_are_the_stage_outputs_the_model_computes(arch: str) -> None:
    """At 16 px (a quarter of the work of 32 px; every family still has all its stages)."""
    facts = ARCHITECTURES[arch]
    model = _model(arch, 16)
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out = forward_with_features(model, x, facts.feature_points,
                                    classifier=facts.classifier)
        assert torch.equal(out.logits, model(x))  # the hooks change nothing
        features = list(out.features.values())
        # The same modules and operations on the same tensors as the forward: equal bit for bit.
        for i in range(len(features) - 1):
            chained = _next_stage(facts.family, i)(model, features[i])
            assert torch.equal(chained, features[i + 1]), i
        embedding = EMBEDDING[facts.family](model, features[-1])
        assert out.embedding is not None and torch.equal(embedding, out.embedding)
        assert torch.equal(model.get_submodule(facts.classifier)(out.embedding), out.logits)


@pytest.mark.parametrize("arch", ["resnet8x4", "vgg8"])
def test_channels_last_gives_the_same_features(arch: str) -> None:
    facts = ARCHITECTURES[arch]
    model = _model(arch)
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))  # small models
    with torch.no_grad():
        plain = forward_with_features(model, x, facts.feature_points)
        model = model.to(memory_format=torch.channels_last)
        last = forward_with_features(model, x.contiguous(memory_format=torch.channels_last),
                                     facts.feature_points)
    # Convolutions in another memory layout may add their products in another order: float32
    # sums of n products differ by about sqrt(n) * 6e-8 relative (n <= 4608 here, a few 1e-6
    # per layer), so 1e-4 of the largest magnitude, as tests/README.md sets for such forwards.
    for reference, other in [*((plain.features[p], last.features[p])
                               for p in facts.feature_points), (plain.logits, last.logits)]:
        assert (reference - other).abs().max() <= 1e-4 * reference.abs().max()


def test_features_carry_gradients() -> None:
    model = build_model("resnet8x4", in_channels=3, image_size=32, num_classes=10)
    out = forward_with_features(model, torch.randn(2, 3, 32, 32), ("layer2",))
    out.features["layer2"].pow(2).mean().backward()
    assert model.layer1[0].conv1.weight.grad is not None
    assert model.layer3[0].conv1.weight.grad is None  # after the point: untouched


def test_hooks_are_removed_when_the_forward_fails() -> None:
    model = build_model("resnet20", in_channels=3, image_size=32, num_classes=10)
    with pytest.raises(RuntimeError):
        forward_with_features(model, torch.randn(2, 1, 32, 32), ("layer1", "layer3"))
    assert not model.layer1._forward_hooks and not model.layer3._forward_hooks


def test_unknown_points_are_named() -> None:
    model = build_model("resnet20", in_channels=3, image_size=32, num_classes=10)
    with pytest.raises(ValueError, match="no module 'layer4'.*layer1, layer2, layer3"):
        forward_with_features(model, torch.randn(1, 3, 32, 32), ("layer4",))


def test_a_module_that_runs_twice_is_an_error() -> None:
    block = nn.Conv2d(3, 3, 1)
    model = nn.Sequential()
    model.add_module("shared", block)
    with pytest.raises(RuntimeError, match="ran twice"), capture_features(model, ("shared",)):
        block(block(torch.randn(1, 3, 4, 4)))
