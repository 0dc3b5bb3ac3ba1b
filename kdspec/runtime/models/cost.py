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
from typing import Any

import torch

from kdspec.catalogue.facts import forward_flops
from kdspec.catalogue.registry import ArchitectureError, is_huggingface, study_facts
from kdspec.plan import DatasetSpec
from kdspec.runtime.models import build_model
from kdspec.runtime.models.meta_forward import meta_forward


@cache
def measured_forward_flops(arch: str, *, in_channels: int, image_size: int,
                           num_classes: int) -> float | None:
    """FLOPs of one image's forward through ``arch`` at this input (None: not measurable)."""
    try:
        _, _, flops = meta_forward(
            lambda: build_model(arch, in_channels=in_channels, image_size=image_size,
                                num_classes=num_classes),
            (1, in_channels, image_size, image_size))
    except Exception:  # a plugin's model that needs real tensors: the catalogue's figure
        return None
    return flops


@cache
def measured_text_flops(arch: str, *, sequence_length: int, num_classes: int) -> float | None:
    """FLOPs of one post's forward through an ``hf:`` model of the configuration found locally
    (a folder or the Hugging Face cache; never the network), estimated as a transformer's:
    ``2 x P x L`` for the P weight-matrix entries outside the embeddings and the head applied to
    each of L tokens, ``2 x`` the head's weights once, plus ``4 x L^2 x d`` per layer for attention (a meta forward is not possible: transformers reads
    tensor values). None without a local configuration, or without transformers."""
    try:
        from kdspec.runtime.models.huggingface import build_huggingface

        with torch.device("meta"):
            model = build_huggingface(arch, num_classes=num_classes, local_only=True)
        config: Any = getattr(model.model, "config")  # noqa: B009 (a transformers model)
        per_token = once = 0
        for name, p in model.named_parameters():
            if "embeddings" in name or p.dim() < 2:  # biases and norms: no matmul
                continue
            if any(head in name for head in HEAD_MODULES):
                once += p.numel()  # the head reads the first token only
            else:
                per_token += p.numel()
        width, layers = int(config.hidden_size), int(config.num_hidden_layers)
    except Exception:  # not cached here, or not installed: the cost stays unknown
        return None
    return float(2 * per_token * sequence_length + 2 * once
                 + 4 * sequence_length ** 2 * width * layers)


#: Module names of a sequence classifier's head (pooler, classifier): applied once per post.
HEAD_MODULES = ("pooler", "classifier")


def study_forward_flops(arch: str, data: DatasetSpec) -> float | None:
    """Measured at the study's input, else the catalogue's scaled figure, else None."""
    if is_huggingface(arch):
        if not data.is_text or data.max_length is None:
            return None
        return measured_text_flops(arch, sequence_length=data.max_length,
                                   num_classes=data.num_classes)
    measured = measured_forward_flops(arch, in_channels=data.channels,
                                      image_size=data.image_size, num_classes=data.num_classes)
    if measured is not None:
        return measured
    try:
        return forward_flops(study_facts(arch, data), data.image_size)
    except ArchitectureError:
        return None
