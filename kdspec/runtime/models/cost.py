"""What one image's forward pass costs, measured from the model itself at the study's input.

The catalogue's ``forward_mflops`` is a reference cost at one input size; scaling it by the
pixel count is wrong wherever the model adapts to the input (ResNet-18 and DenseNet on 32 px
images get a stride-1 stem and no max-pool: 1,111 MFLOP measured for ResNet-18 where scaling
the 224 px cost gives 74). So the model is built on PyTorch's ``meta`` device (no memory, no
compute, nothing downloaded) at the study's shape and one forward is counted with
``FlopCounterMode`` (2 x multiply-adds, the catalogue's unit). A model that cannot be built on
the meta device (some plugins) falls back to the catalogue's scaled figure.
"""

from __future__ import annotations

from functools import cache

import torch
from torch.utils.flop_counter import FlopCounterMode

from kdspec.catalog import forward_flops
from kdspec.plan import DatasetSpec
from kdspec.registry import ArchitectureError, study_facts
from kdspec.runtime.models import build_model


@cache
def measured_forward_flops(arch: str, *, in_channels: int, image_size: int,
                           num_classes: int) -> float | None:
    """FLOPs of one image's forward through ``arch`` at this input (None: not measurable)."""
    try:
        with torch.device("meta"):
            model = build_model(arch, in_channels=in_channels, image_size=image_size,
                                num_classes=num_classes)
            model.eval()
            counter = FlopCounterMode(display=False)
            with counter, torch.no_grad():
                model(torch.empty(1, in_channels, image_size, image_size))
    except Exception:  # a plugin's model that needs real tensors: the catalogue's figure
        return None
    return float(counter.get_total_flops())


def study_forward_flops(arch: str, data: DatasetSpec) -> float | None:
    """Measured at the study's input, else the catalogue's scaled figure, else None."""
    measured = measured_forward_flops(arch, in_channels=data.channels,
                                      image_size=data.image_size, num_classes=data.num_classes)
    if measured is not None:
        return measured
    try:
        return forward_flops(study_facts(arch, data), data.image_size)
    except ArchitectureError:
        return None
