"""One forward of a model built on PyTorch's ``meta`` device (no memory, no compute, nothing
downloaded), under PyTorch's FLOP counter: what a model costs and what it maps an input to,
before anything trains. Shared by the plan's cost estimate and the check of torchvision and
timm models against a study's input."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def meta_forward(build: Callable[[], nn.Module], input_shape: tuple[int, ...]
                 ) -> tuple[nn.Module, torch.Size, float]:
    """Build a model with ``build()`` on the meta device and run one forward of an input of
    ``input_shape`` in eval mode: (the model, its output's shape, the forward's FLOPs, 2 x
    multiply-adds as the catalogue counts them). Raises what the build or forward raises."""
    with torch.device("meta"):
        model = build()
        model.eval()
        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad():
            out = model(torch.empty(*input_shape))
    return model, out.shape, float(counter.get_total_flops())
