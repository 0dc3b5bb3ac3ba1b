"""Architectures and datasets by name: kdspec's own (:mod:`kdspec.catalogue.facts`), those of installed
plugins, any torchvision or timm classification model as ``torchvision:NAME`` /
``timm:NAME``, and any Hugging Face sequence classifier as ``hf:NAME`` (text datasets).

A plugin is a Python package that declares entry points in the groups ``kdspec.architectures``
and ``kdspec.datasets``; each names a list of :class:`ArchitectureEntry` or
:class:`DatasetEntry`. An entry is data: the facts the compiler checks a spec against (sizes,
classes, attributes, cost) and the *path* of the function that builds the model or reads the
data (``"package.module:function"``), imported only when something is trained, so ``kdspec
check`` never imports a plugin's model code. A spec still runs nothing and imports nothing
itself: it can only name what is registered.

A plugin that fails to load is one warning on stderr naming its package and the error; every
command goes on without it (its names then get did-you-mean errors like any unknown name).

``torchvision:NAME`` is any model of ``torchvision.models.list_models()`` built with
``get_model(NAME, weights=None, num_classes=...)`` (nothing is downloaded); ``timm:NAME`` any
model of ``timm.list_models()`` built with ``create_model(NAME, pretrained=False, ...)``,
available with the optional extra ``pip install kdspec[timm]``. Their facts (cost, smallest
input) are not known without building them, so the compiler builds them on PyTorch's ``meta``
device (no memory, no compute) and runs one meta forward at the study's input size: a size the
model cannot take is a compile-time error.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from functools import cache
from importlib import metadata
from typing import TYPE_CHECKING, Any

from kdspec.catalogue.facts import ARCHITECTURES, DATASETS, ArchFacts, DatasetFacts
from kdspec.catalogue.model_names import (
    HF_PREFIX,
    MSG_NO_TIMM,
    TIMM_PREFIX,
    TORCHVISION_PREFIX,
)
from kdspec.catalogue.suggestions import did_you_mean

if TYPE_CHECKING:
    from kdspec.plan import DatasetSpec

ARCHITECTURE_GROUP = "kdspec.architectures"
DATASET_GROUP = "kdspec.datasets"
#: Assumed for a torchvision or timm model until the meta build says otherwise.
EXTERNAL_REF_SIZE = 224


@dataclass(frozen=True)
class ArchitectureEntry:
    """An architecture: its facts, where its builder is, and where it came from.

    ``build`` is ``"package.module:function"``, called as ``function(in_channels=,
    image_size=, num_classes=)`` and returning an untrained ``torch.nn.Module`` mapping
    ``[B, in_channels, image_size, image_size]`` to ``[B, num_classes]``; empty for kdspec's own
    architectures (built by family in :mod:`kdspec.runtime.models`).
    """

    facts: ArchFacts
    build: str = ""
    source: str = "built-in"


@dataclass(frozen=True)
class DatasetEntry:
    """A dataset: its facts, where its reader is, and where it came from.

    ``read`` is ``"package.module:function"``, called as ``function(spec, cache_dir)`` with the
    plan's :class:`~kdspec.plan.DatasetSpec` and returning a
    :class:`~kdspec.catalogue.dataset_arrays.ArraySplits` (uint8 images ``[N, C, H,
    W]``, int64 labels, per-sample test attributes for fairness); empty for kdspec's own.
    """

    facts: DatasetFacts
    read: str = ""
    source: str = "built-in"


@dataclass
class Registry:
    """Every architecture and dataset known in this process, and the plugins that failed."""

    architectures: dict[str, ArchitectureEntry] = field(default_factory=dict)
    datasets: dict[str, DatasetEntry] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def _entry_points(group: str) -> Iterable[metadata.EntryPoint]:
    return metadata.entry_points(group=group)


def _load_group(group: str, kind: type, into: dict[str, Any], warnings: list[str]) -> None:
    for point in _entry_points(group):
        package = point.dist.name if point.dist is not None else point.value
        try:
            loaded = point.load()
            entries = list(loaded() if callable(loaded) else loaded)
            for entry in entries:
                if not isinstance(entry, kind):
                    raise TypeError(f"{entry!r} is not a {kind.__name__}")
        except Exception as err:  # a broken plugin must never break unrelated commands
            warnings.append(f"kdspec plugin '{package}' ({point.value}) could not be loaded: "
                            f"{type(err).__name__}: {err}; its names are not available")
            continue
        for entry in entries:
            name = entry.facts.name
            if name in into:
                warnings.append(f"kdspec plugin '{package}': '{name}' is already registered "
                                f"(by {into[name].source}); ignored")
                continue
            into[name] = replace(entry, source=f"plugin {package}")


@cache
def registry() -> Registry:
    """kdspec's own entries, then every plugin's (loaded once per process); the warnings of
    plugins that failed are written to stderr once."""
    found = Registry(
        architectures={name: ArchitectureEntry(facts) for name, facts in ARCHITECTURES.items()},
        datasets={name: DatasetEntry(facts) for name, facts in DATASETS.items()})
    _load_group(ARCHITECTURE_GROUP, ArchitectureEntry, found.architectures, found.warnings)
    _load_group(DATASET_GROUP, DatasetEntry, found.datasets, found.warnings)
    for warning in found.warnings:
        sys.stderr.write(f"kdspec: warning: {warning}\n")
    return found


def datasets() -> dict[str, DatasetEntry]:
    return registry().datasets


def dataset_facts(name: str) -> DatasetFacts:
    """The facts of a registered dataset; KeyError if none is."""
    return registry().datasets[name].facts


# -- architectures ----------------------------------------------------------------------------

def is_external(name: str) -> bool:
    """Whether ``name`` is a ``torchvision:``, ``timm:`` or ``hf:`` model (built by another
    library from its name)."""
    return name.startswith((TORCHVISION_PREFIX, TIMM_PREFIX, HF_PREFIX))


def short_arch(name: str) -> str:
    """An architecture as names and logs show it: an ``hf:`` folder by its last component
    (``hf:/home/me/models/tiny-bert`` -> ``hf:tiny-bert``), every other name as it is."""
    if name.startswith(HF_PREFIX + "/"):
        return HF_PREFIX + name.rstrip("/").rsplit("/", 1)[-1]
    return name


def is_huggingface(name: str) -> bool:
    """Whether ``name`` is an ``hf:`` model (it takes token ids, not images)."""
    return name.startswith(HF_PREFIX)


#: Where what is known of torchvision and timm models is asked (their libraries are imported
#: there, and only when a spec names such a model).
EXTERNAL_MODELS = "kdspec.runtime.models.external"


@cache
def torchvision_models() -> tuple[str, ...]:
    """Every torchvision classification model name."""
    names: tuple[str, ...] = import_callable(f"{EXTERNAL_MODELS}:torchvision_model_names")()
    return names


@cache
def timm_models() -> tuple[str, ...] | None:
    """Every timm model name, or None without timm."""
    names: tuple[str, ...] | None = import_callable(f"{EXTERNAL_MODELS}:timm_model_names")()
    return names


def torchvision_weights(builder: str) -> tuple[str, ...]:
    """The names of the weights torchvision publishes for ``builder`` (``IMAGENET1K_V1``...)."""
    names: tuple[str, ...] = import_callable(
        f"{EXTERNAL_MODELS}:torchvision_weight_names")(builder)
    return names


class ArchitectureError(Exception):
    """An architecture name that cannot be used: ``message`` and a ``help`` line."""

    def __init__(self, message: str, help: str) -> None:
        super().__init__(message)
        self.message = message
        self.help = help


def architecture(name: str) -> ArchitectureEntry:
    """The entry of an architecture name; ArchitectureError (with a hint) when it is unknown,
    or a timm name without timm installed."""
    found = registry().architectures.get(name)
    if found is not None:
        return found
    if name.startswith(TORCHVISION_PREFIX):
        model = name.removeprefix(TORCHVISION_PREFIX)
        known = torchvision_models()
        if model not in known:
            raise ArchitectureError(f"torchvision has no classification model '{model}'",
                                    help=did_you_mean(model, known, "torchvision models"))
        return _external(name, "torchvision")
    if name.startswith(TIMM_PREFIX):
        model = name.removeprefix(TIMM_PREFIX)
        timm_known = timm_models()
        if timm_known is None:
            raise ArchitectureError(f"'{name}' is a timm model and timm is not installed",
                                    help=MSG_NO_TIMM)
        if model not in timm_known:
            raise ArchitectureError(f"timm has no model '{model}'",
                                    help=did_you_mean(model, timm_known, "timm models"))
        return _external(name, "timm")
    if name.startswith(HF_PREFIX):
        if len(name) == len(HF_PREFIX):
            raise ArchitectureError("hf: names no model",
                                    help="e.g. hf:bert-base-uncased or hf:./models/tiny-bert")
        return ArchitectureEntry(
            ArchFacts(name, "huggingface", params_millions=0.0, forward_mflops=0.0,
                      ref_size=1, min_size=1),
            build="kdspec.runtime.models.huggingface:build_huggingface", source="huggingface")
    hint = did_you_mean(name, registry().architectures, "known architectures")
    if not hint.startswith("did you mean"):
        hint += ("; or torchvision:NAME / timm:NAME / hf:NAME (`kdspec list "
                 "architectures`)")
    raise ArchitectureError(f"unknown architecture '{name}'", help=hint)


def _external(name: str, family: str) -> ArchitectureEntry:
    facts = ArchFacts(name, family, params_millions=0.0, forward_mflops=0.0,
                      ref_size=EXTERNAL_REF_SIZE, min_size=1)
    return ArchitectureEntry(facts, build=f"{EXTERNAL_MODELS}:build_{family}",
                             source=family)


def import_callable(path: str) -> Callable[..., Any]:
    """The object at ``"package.module:name"``."""
    module, _, attribute = path.partition(":")
    found: Callable[..., Any] = getattr(importlib.import_module(module), attribute)
    return found


@dataclass(frozen=True)
class ExternalProbe:
    """What a meta-device build of a torchvision or timm model says at one input shape: why it
    cannot take it (``problem``), else its parameter count and forward cost there."""

    problem: str | None
    params_millions: float = 0.0
    forward_mflops: float = 0.0


@cache
def probe_external(name: str, *, in_channels: int, image_size: int,
                   num_classes: int) -> ExternalProbe:
    """Build ``name`` on the meta device (no memory, no compute, nothing downloaded) and run
    one meta forward of ``[1, in_channels, image_size, image_size]`` under PyTorch's FLOP
    counter (2 x multiply-adds, as the catalogue counts)."""
    problem, params_millions, mflops = import_callable(f"{EXTERNAL_MODELS}:meta_probe")(
        name, architecture(name).build, in_channels=in_channels, image_size=image_size,
        num_classes=num_classes)
    return ExternalProbe(problem, params_millions, mflops)


def study_facts(name: str, data: DatasetSpec) -> ArchFacts:
    """An architecture's facts for one study's input: the catalogue's or a plugin's as they
    are; a torchvision or timm model's measured by :func:`probe_external` at that input."""
    facts = architecture(name).facts
    if not is_external(name) or is_huggingface(name):
        return facts  # a Hugging Face model's cost is not probed (its config may be remote)
    probe = probe_external(name, in_channels=data.channels, image_size=data.image_size,
                           num_classes=data.num_classes)
    if probe.problem is not None:
        return facts
    return replace(facts, params_millions=probe.params_millions,
                   forward_mflops=probe.forward_mflops, ref_size=data.image_size)
