"""A model's logits and its named features from one forward pass, for feature distillation.

A feature point is a module name of the model (``kdspec.catalogue.facts.ArchFacts.feature_points``,
e.g. ``layer2`` of a CIFAR ResNet); its feature is that module's output. A forward hook on each
named module keeps its output during one forward, and, when asked, a forward *pre*-hook on the
classifier keeps its input (the penultimate embedding CRD uses). The hooks are removed when the
forward ends, whatever happens in it, so the model is left as it was.

The captured tensors are the modules' outputs themselves (no copy), in whatever memory format
the model computes (``channels_last`` included); they carry gradients like any activation. A
module that runs twice in one forward is an error (which call's output is meant?). Hooks see
the eager modules: capture from the unwrapped model, before ``torch.compile`` or under a
wrapper's ``.module`` (a distributed wrapper prefixes every name with ``module.``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn


@dataclass
class FeatureCapture:
    """What the hooks of :func:`capture_features` found: ``features`` by feature point (filled
    as the forward runs) and ``embedding`` (the classifier's input, when asked for)."""

    features: dict[str, torch.Tensor] = field(default_factory=dict)
    embedding: torch.Tensor | None = None


@dataclass(frozen=True)
class FeatureForward:
    """One forward's logits ``[B, K]``, the features of the points asked for (in that order)
    and the classifier's input ``[B, d]`` (None when not asked for)."""

    logits: torch.Tensor
    features: dict[str, torch.Tensor]
    embedding: torch.Tensor | None


def _module(model: nn.Module, name: str) -> nn.Module:
    try:
        return model.get_submodule(name)
    except AttributeError:
        known = [n for n, _ in model.named_children()]
        raise ValueError(f"{type(model).__name__} has no module '{name}' (its top-level "
                         f"modules: {', '.join(known)})") from None


@contextmanager
def capture_features(model: nn.Module, points: Sequence[str], *,
                     classifier: str | None = None) -> Iterator[FeatureCapture]:
    """Within the ``with`` block, forwards of ``model`` fill the yielded capture with the
    outputs of the modules ``points`` and the input of ``classifier``; the hooks are removed
    on leaving it. Unknown names are a ``ValueError`` before any hook is registered."""
    modules = {name: _module(model, name) for name in points}
    head = _module(model, classifier) if classifier else None
    capture = FeatureCapture()

    def keep_output(name: str) -> Callable[[nn.Module, Any, Any], None]:
        def hook(_module: nn.Module, _inputs: Any, output: Any) -> None:
            if name in capture.features:
                raise RuntimeError(f"feature point '{name}' ran twice in one forward")
            if not isinstance(output, torch.Tensor):
                raise TypeError(f"feature point '{name}' returned {type(output).__name__}, "
                                "not a tensor")
            capture.features[name] = output
        return hook

    def keep_input(_module: nn.Module, inputs: tuple[Any, ...]) -> None:
        capture.embedding = inputs[0]

    handles = [module.register_forward_hook(keep_output(name))
               for name, module in modules.items()]
    if head is not None:
        handles.append(head.register_forward_pre_hook(keep_input))
    try:
        yield capture
    finally:
        for handle in handles:
            handle.remove()


def forward_with_features(model: nn.Module, inputs: torch.Tensor, points: Sequence[str], *,
                          classifier: str | None = None,
                          call: Callable[[torch.Tensor], torch.Tensor] | None = None
                          ) -> FeatureForward:
    """``model(inputs)`` once, with the features of ``points`` (and the classifier's input when
    ``classifier`` names the final linear layer). ``call``: what runs the forward instead of
    ``model`` itself, a wrapper around it (a data-parallel one; the hooks sit on ``model``). A
    point the forward never reached is a ``RuntimeError``."""
    with capture_features(model, points, classifier=classifier) as capture:
        logits = (call or model)(inputs)
    never = [p for p in points if p not in capture.features]
    if classifier and capture.embedding is None:
        never.append(classifier)
    if never:
        raise RuntimeError(f"the forward of {type(model).__name__} never ran "
                           f"{', '.join(never)}")
    return FeatureForward(logits=logits,
                          features={p: capture.features[p] for p in points},
                          embedding=capture.embedding)
