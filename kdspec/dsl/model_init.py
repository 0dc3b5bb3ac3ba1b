"""A role block's starting weights: ``pretrained = WEIGHTS``, ``checkpoint = "file.pt"`` or
``from_run = "MLFLOW_RUN_ID"`` (at most one), read into a :class:`~kdspec.plan.ModelInit`.

- ``pretrained``: a torchvision weights enum member (``IMAGENET1K_V1``, ``DEFAULT``) of a
  ``torchvision:NAME`` model or of kdspec's torchvision-family ``resnet18/34/50``,
  ``densenet121/169``; checked against torchvision's list here, loaded from the torch hub cache
  when the run starts (downloaded only where the machine can); of an ``hf:NAME`` model,
  ``DEFAULT``: the weights published under that name (Hugging Face cache or folder);
- ``checkpoint``: a ``.pt`` file, relative to the spec; its sha256 is part of the run id, so
  a changed file is a new run;
- ``from_run``: the MLflow run id of a finished run in the study's store (its ``final.pt``).

A block that gives weights and no recipe key is evaluated only (``epochs = 0``); with a recipe
it is fine-tuned from them.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from kdspec.catalogue.model_names import HF_PREFIX, TORCHVISION_PREFIX
from kdspec.catalogue.registry import torchvision_weights
from kdspec.catalogue.suggestions import did_you_mean
from kdspec.dsl.diagnostics import Diagnostics, InconsistentStudy, InvalidValue, UnknownName
from kdspec.dsl.reader import Key, SectionReader, spec_relative
from kdspec.dsl.syntax import Assignment, Name, Section, String
from kdspec.plan import ModelInit, Recipe

INIT_KEYS: dict[str, Key] = {"pretrained": Key(), "checkpoint": Key(), "from_run": Key()}
#: A role block's keys beside its recipe and starting weights: ``partial = true`` loads what
#: fits of a checkpoint or another run's weights; ``accept_chance = true`` (teachers) accepts a
#: teacher whose test accuracy is within noise of chance (a deliberate random teacher).
ROLE_FLAGS: dict[str, Key] = {"partial": Key(), "accept_chance": Key()}
ROLE_KEYS: dict[str, Key] = {**INIT_KEYS, **ROLE_FLAGS}
#: kdspec's own architectures that are torchvision's (the same module names, so torchvision's
#: weights load into them).
TORCHVISION_FAMILY = ("resnet18", "resnet34", "resnet50", "densenet121", "densenet169")
#: What an evaluate-only role trains with: nothing (the batch size is unused; evaluation uses
#: its own).
EVALUATE_ONLY = Recipe(epochs=0, batch_size=256, lr=1e-3)
MLFLOW_RUN_ID = re.compile(r"^[0-9a-f]{32}$")


def _torchvision_builder(arch: str) -> str | None:
    if arch.startswith(TORCHVISION_PREFIX):
        return arch.removeprefix(TORCHVISION_PREFIX)
    return arch if arch in TORCHVISION_FAMILY else None


def _huggingface_pretrained(value: Name, arch: str, diags: Diagnostics) -> ModelInit | None:
    """``pretrained = DEFAULT`` of an ``hf:`` model: the weights published under its name (a
    local folder's weight files enter the run id through their sha256)."""
    source = arch.removeprefix(HF_PREFIX)
    if value.value != "DEFAULT":
        diags.add(InvalidValue(value.span, f"a Hugging Face model's weights are those "
                               f"published as {source}: write `pretrained = DEFAULT`",
                               help="another revision or fine-tuned weights: name that model "
                                    "(hf:ORG/NAME or a folder) as the architecture"))
        return None
    digest = ""
    if source.startswith("/"):
        from kdspec.catalogue.huggingface_sources import weights_digest

        digest = weights_digest(Path(source))
        if not digest:
            diags.add(InvalidValue(value.span, f"{source} holds no weights (model.safetensors "
                                   "or pytorch_model.bin)", help="remove pretrained to train "
                                   "from the configuration alone"))
            return None
    return ModelInit(kind="huggingface", name=source, digest=digest)


def _pretrained(value: Name, arch: str, diags: Diagnostics) -> ModelInit | None:
    if arch.startswith(HF_PREFIX):
        return _huggingface_pretrained(value, arch, diags)
    builder = _torchvision_builder(arch)
    if builder is None:
        diags.add(InconsistentStudy(value.span, f"{arch} has no pretrained weights kdspec can "
                                    "load", help="pretrained weights come from torchvision: "
                                    "use torchvision:NAME or resnet18/34/50, densenet121/169; "
                                    "or give the weights as checkpoint = \"file.pt\""))
        return None
    members = torchvision_weights(builder)
    if value.value != "DEFAULT" and value.value not in members:
        diags.add(UnknownName(value.span, f"torchvision has no weights '{value.value}' for "
                              f"{builder}", help=did_you_mean(value.value,
                                                             [*members, "DEFAULT"],
                                                             f"weights of {builder}")))
        return None
    return ModelInit(kind="torchvision", name=f"{builder}:{value.value}")


def _checkpoint(value: String, diags: Diagnostics) -> ModelInit | None:
    path = spec_relative(value.value, value.span)
    try:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as err:
        folder = "" if value.span.path.startswith("<") else os.path.dirname(value.span.path)
        shown = os.path.normpath(os.path.join(folder, os.path.expanduser(value.value)))
        diags.add(InvalidValue(value.span, f"cannot read checkpoint {shown} "
                               f"({err.strerror or err})",
                               help="a path relative to the spec, or absolute"))
        return None
    return ModelInit(kind="checkpoint", name=str(path), digest=digest)


def gives_weights(section: Section) -> bool:
    """Whether the block names starting weights (``pretrained``, ``checkpoint``, ``from_run``),
    readable or not: such a block without recipe keys is evaluated only, so a weights key that
    has an error of its own must not also make the block look like one missing its recipe."""
    return any(isinstance(e, Assignment) and e.key in INIT_KEYS for e in section.entries)


def read_init(section: Section, arch: str, diags: Diagnostics) -> tuple[ModelInit | None, bool]:
    """``(init, ok)``: the block's starting weights (None: from the seed); ``ok`` False when a
    problem was reported."""
    given = [e for e in section.entries if isinstance(e, Assignment) and e.key in INIT_KEYS]
    if not given:
        return None, True
    if len(given) > 1:
        diags.add(InconsistentStudy(given[1].key_span, f"'{given[1].key}' and "
                                    f"'{given[0].key}': a model starts from one set of weights",
                                    help="keep one of pretrained, checkpoint, from_run"))
        return None, False
    entry = given[0]
    value = entry.value
    before = len(diags)
    init: ModelInit | None = None
    if entry.key == "pretrained":
        if isinstance(value, Name):
            init = _pretrained(value, arch, diags)
        else:
            diags.add(InvalidValue(value.span, "'pretrained' names torchvision weights",
                                   help="e.g. `pretrained = IMAGENET1K_V1` or `DEFAULT`"))
    elif entry.key == "checkpoint":
        if isinstance(value, String):
            init = _checkpoint(value, diags)
        else:
            diags.add(InvalidValue(value.span, "'checkpoint' is a file path in quotes",
                                   help='e.g. `checkpoint = "teachers/resnet56-seed0.pt"`'))
    elif isinstance(value, String) and MLFLOW_RUN_ID.match(value.value):
        init = ModelInit(kind="run", name=value.value)
    else:
        diags.add(InvalidValue(value.span, "'from_run' is an MLflow run id (32 hex digits) in "
                               "quotes", help="the run id shown in the MLflow UI or "
                               "`kdspec run`'s summary table"))
    return init, len(diags) == before


def read_role_flags(section: Section, role: str, init: ModelInit | None,
                    diags: Diagnostics) -> tuple[ModelInit | None, bool]:
    """``(init, accept_chance)``: the block's starting weights with ``partial`` applied, and
    whether a teacher at chance is accepted. ``partial`` needs a checkpoint or another run's
    weights (published weights keep the seed's head anyway); ``accept_chance`` is a teacher's
    (a student at chance is flagged, not stopped)."""
    entries = tuple(e for e in section.entries if e.key in ROLE_FLAGS)
    reader = SectionReader(f"{role} block", entries, ROLE_FLAGS, diags)
    partial = reader.boolean("partial") if reader.has("partial") else None
    accept = reader.boolean("accept_chance") if reader.has("accept_chance") else None
    if partial and (init is None or init.kind not in ("checkpoint", "run")):
        diags.add(InvalidValue(reader.span("partial"), "'partial' loads part of a checkpoint or "
                               "of another run's weights, and this block gives neither",
                               help="write it beside `checkpoint = ...` or `from_run = ...`"))
    elif partial and init is not None:
        init = init.model_copy(update={"partial": True})
    if accept and role != "teacher":
        diags.add(InvalidValue(reader.span("accept_chance"), "'accept_chance' is for a teacher: "
                               f"a {role} at chance finishes flagged, it does not stop a study",
                               help="remove it, or put it in the teacher block"))
    return init, bool(accept) and role == "teacher"
