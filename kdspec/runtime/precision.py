"""A run's numeric precision in one place: the Accelerator's mixed-precision mode, the autocast
context of each study, the memory layout of its models and whether it needs a gradient scaler.

A spec names ``precision = fp32 | bf16 | fp16`` (the run id includes it). fp32 is exact: no
autocast, no scaler. bf16 and fp16 autocast the forward passes (training steps, the teacher's
forward or its logit table, evaluation); fp16 on CUDA also scales the loss (fp16 gradients
underflow; bf16 has float32's exponent and needs none).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from contextlib import AbstractContextManager

import torch
from accelerate import Accelerator

from kdspec.plan import Precision
from kdspec.runtime.interfaces import AutocastFactory

#: Accelerate's ``mixed_precision`` for each of the spec's precisions.
MIXED_PRECISION: dict[str, str] = {"fp32": "no", "bf16": "bf16", "fp16": "fp16"}


def accelerator_mode(precisions: Iterable[Precision]) -> str:
    """The Accelerator's mode for a plan: its studies' precision when they all agree, else "no"
    (each study then gets its own ``torch.autocast``, see :func:`autocast_factory`)."""
    wanted = set(precisions)
    return MIXED_PRECISION[wanted.pop()] if len(wanted) == 1 else "no"


def autocast_for(device: torch.device, precision: Precision) -> AbstractContextManager[object]:
    """The autocast context of a run's precision (a no-op for fp32)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def autocast_factory(accelerator: Accelerator, precision: Precision) -> AutocastFactory:
    """The autocast context for a study: the accelerator's when its precision matches."""
    if accelerator.mixed_precision == MIXED_PRECISION[precision]:
        return accelerator.autocast
    return lambda: autocast_for(accelerator.device, precision)


def needs_grad_scaler(precision: Precision, device: torch.device) -> bool:
    """Whether the training step scales its loss: fp16 on CUDA only."""
    return precision == "fp16" and device.type == "cuda"


def to_training_layout(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """``model`` on ``device``, channels-last on CUDA (where convolutions are faster so; on CPU
    it was not faster for these networks)."""
    model = model.to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    return model
