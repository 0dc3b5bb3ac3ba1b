"""The optional packages a plan needs to train, found without importing them.

``kdspec check``, ``plan``, ``run`` (``--dry-run`` too) and ``submit`` call
:func:`check_optional_packages` once the plan is compiled, so a study that needs an extra that
is not installed stops before anything runs, naming the extra to install, rather than when its
first run loads its data or builds its model. ``kdspec report`` and ``kdspec status`` do not:
they read the store, and need neither package.

Packages are looked up with :func:`importlib.util.find_spec`, which finds a module without
importing it (importing ``transformers`` costs seconds and pulls in torch).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

from kdspec.catalogue.model_names import HF_PREFIX, MSG_NO_TIMM, MSG_NO_TRANSFORMERS, TIMM_PREFIX
from kdspec.errors import KdspecError
from kdspec.plan import Plan, Study

MSG_MISSING_PACKAGE = "{needed_by} {verb} the Python package {module}, which is not installed " \
    "here: {install}"


@dataclass(frozen=True)
class OptionalPackage:
    """An importable module kdspec uses only for some studies, and how to install it."""

    module: str
    install: str


TRANSFORMERS = OptionalPackage("transformers", MSG_NO_TRANSFORMERS)
TIMM = OptionalPackage("timm", MSG_NO_TIMM)


@dataclass(frozen=True)
class MissingPackage:
    """An optional package a plan needs and this Python cannot import."""

    package: OptionalPackage
    #: What needs it, e.g. ``study hatexplain: the hatexplain tokenizer, hf:bert-base-uncased``.
    needed_by: tuple[str, ...]

    def message(self) -> str:
        return MSG_MISSING_PACKAGE.format(
            needed_by="; ".join(self.needed_by),
            verb="needs" if len(self.needed_by) == 1 else "need",
            module=self.package.module, install=self.package.install)


def is_installed(module: str) -> bool:
    """Whether ``module`` can be imported here (it is not imported)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a broken parent package, or a module without a spec
        return False


def study_needs(study: Study) -> dict[OptionalPackage, list[str]]:
    """The optional packages one study needs, each with what in the study needs it."""
    needs: dict[OptionalPackage, list[str]] = {}
    if study.dataset.is_text:
        needs.setdefault(TRANSFORMERS, []).append(f"the {study.dataset.name} tokenizer")
    for arch in dict.fromkeys((study.teacher.arch, study.student.arch)):
        if arch.startswith(HF_PREFIX):
            needs.setdefault(TRANSFORMERS, []).append(arch)
        elif arch.startswith(TIMM_PREFIX):
            needs.setdefault(TIMM, []).append(arch)
    return needs


def missing_packages(plan: Plan) -> list[MissingPackage]:
    """Every optional package the plan's studies need that is not installed, in the order the
    studies first need them."""
    needed_by: dict[OptionalPackage, list[str]] = {}
    for study in plan.studies:
        for package, what in study_needs(study).items():
            needed_by.setdefault(package, []).append(f"study {study.name} ({', '.join(what)})")
    return [MissingPackage(package, tuple(who)) for package, who in needed_by.items()
            if not is_installed(package.module)]


def check_optional_packages(plan: Plan) -> None:
    """Raise KdspecError (one line per missing package) unless every optional package the plan
    needs to train is installed."""
    missing = missing_packages(plan)
    if missing:
        raise KdspecError("\n".join(m.message() for m in missing))
