"""Any torchvision or timm classification model by name (``torchvision:NAME``, ``timm:NAME``),
untrained, with the study's classes, channels and, where the model takes one, input size.

Shared by the runtime (which trains them) and the registry (which builds them on the meta device
at compile time to check the input size); torch, torchvision and timm are imported only here.

Nothing is downloaded (``weights=None``, ``pretrained=False``). The input size is passed to
models that are built for one (ViTs: ``image_size`` in torchvision, ``img_size`` in timm); a
model that does not take the argument is built without it. A channel count other than 3 is
given to timm as ``in_chans``; for torchvision the first 3-channel convolution is rebuilt.
"""

from __future__ import annotations

import inspect

from torch import nn

from kdspec.catalogue.model_names import TIMM_PREFIX, TORCHVISION_PREFIX


def _first_rgb_conv(model: nn.Module) -> tuple[nn.Module, str, nn.Conv2d] | None:
    for parent in model.modules():
        for child_name, child in parent.named_children():
            if isinstance(child, nn.Conv2d) and child.in_channels == 3:
                return parent, child_name, child
    return None


def build_torchvision(name: str, *, in_channels: int, image_size: int,
                      num_classes: int) -> nn.Module:
    """``torchvision.models.get_model`` with the study's classes, size and channels."""
    import torchvision

    model_name = name.removeprefix(TORCHVISION_PREFIX)
    builder = torchvision.models.get_model_builder(model_name)
    kwargs: dict[str, object] = {"weights": None, "num_classes": num_classes}
    if "image_size" in inspect.signature(builder).parameters or model_name.startswith("vit_"):
        kwargs["image_size"] = image_size
    model = builder(**kwargs)
    if in_channels != 3:
        found = _first_rgb_conv(model)
        if found is None:
            raise ValueError(f"{name}: no 3-channel input convolution to adapt to "
                             f"{in_channels} channels")
        parent, child_name, old = found
        setattr(parent, child_name, nn.Conv2d(
            in_channels, old.out_channels, old.kernel_size, old.stride, old.padding,  # type: ignore[arg-type]
            old.dilation, old.groups, old.bias is not None))  # type: ignore[arg-type]
    return model


def build_timm(name: str, *, in_channels: int, image_size: int, num_classes: int) -> nn.Module:
    """``timm.create_model`` with the study's classes, channels and (when taken) size."""
    import timm

    model_name = name.removeprefix(TIMM_PREFIX)
    try:
        return timm.create_model(model_name, pretrained=False, num_classes=num_classes,
                                 in_chans=in_channels, img_size=image_size)
    except TypeError:  # a model without a fixed input size takes no img_size
        return timm.create_model(model_name, pretrained=False, num_classes=num_classes,
                                 in_chans=in_channels)


def torchvision_model_names() -> tuple[str, ...]:
    """Every torchvision classification model name."""
    import torchvision

    return tuple(sorted(torchvision.models.list_models(module=torchvision.models)))


def timm_model_names() -> tuple[str, ...] | None:
    """Every timm model name, or None without timm."""
    try:
        import timm
    except ImportError:
        return None
    return tuple(timm.list_models())


def torchvision_weight_names(builder: str) -> tuple[str, ...]:
    """The weights enum members torchvision publishes for ``builder``."""
    from torchvision.models import get_model_weights

    return tuple(w.name for w in get_model_weights(builder))


def meta_probe(name: str, build_path: str, *, in_channels: int, image_size: int,
               num_classes: int) -> tuple[str | None, float, float]:
    """Build ``name`` on the meta device (no memory, no compute, nothing downloaded) and run
    one meta forward of ``[1, in_channels, image_size, image_size]`` under PyTorch's FLOP
    counter (2 x multiply-adds, as the catalogue counts): (why it cannot take that input, else
    None; parameters in millions; forward MFLOPs)."""
    import importlib

    from kdspec.runtime.models.meta_forward import meta_forward

    module, _, attribute = build_path.partition(":")
    build = getattr(importlib.import_module(module), attribute)
    shape = f"{in_channels}x{image_size}x{image_size}"
    try:
        model, out, flops = meta_forward(
            lambda: build(name, in_channels=in_channels, image_size=image_size,
                          num_classes=num_classes), (1, in_channels, image_size, image_size))
    except Exception as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        return f"{name} cannot take {shape} input ({first})", 0.0, 0.0
    if tuple(out) != (1, num_classes):
        return (f"{name} maps {shape} input to {tuple(out)[1:]}, not ({num_classes},) "
                "class scores", 0.0, 0.0)
    params = sum(p.numel() for p in model.parameters())
    return None, params / 1e6, flops / 1e6
