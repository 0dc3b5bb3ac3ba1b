"""What a plan must satisfy beyond its own types: the catalogue's facts about datasets and
architectures. The compiler checks the same with spans; a plan JSON (written by hand, or by
another version) gets these checks, worded as the compiler words them, before anything runs.

Imports only ``kdspec.plan``, ``kdspec.catalogue.facts`` and ``kdspec.catalogue.registry``, so the runtime can
use it.
"""

from __future__ import annotations

from kdspec.catalogue.facts import (
    COMBINATION_DATASETS,
    TRIFEATURE_BALANCED_MULTIPLE,
    TRIFEATURE_DEFAULT_COMBINATIONS,
    DatasetFacts,
)
from kdspec.catalogue.registry import ArchitectureError, architecture, datasets
from kdspec.distillation_methods import CRD, AttentionTransfer, FitNet
from kdspec.plan import DatasetSpec, Plan, Study

#: Your own images: their classes, channels and attributes are not in the catalogue but in the
#: folder and its CSV, which the runtime's data check reads (the classes through the content
#: digest, the sensitive attributes through the rows every test image needs).
IMAGE_FOLDER = "imagefolder"


def dataset_problems(where: str, data: DatasetSpec) -> list[str]:
    """The catalogue's facts a dataset spec contradicts."""
    entry = datasets().get(data.name)
    if entry is None:
        return [f"{where}.name: unknown dataset '{data.name}' (known: "
                f"{', '.join(sorted(datasets()))})"]
    facts = entry.facts
    out = []
    if data.channels != facts.channels and data.name != IMAGE_FOLDER:
        out.append(f"{where}.channels: {data.name} images have {facts.channels} channels, "
                   f"found {data.channels}")
    if not facts.resizable and data.image_size != facts.image_size:
        out.append(f"{where}.image_size: {data.name} images are always "
                   f"{facts.image_size}x{facts.image_size}, found {data.image_size}")
    if data.name != IMAGE_FOLDER:
        out += _label_problems(where, data, facts)
    generated = (data.generated_train_size, data.generated_test_size,
                 data.generated_combinations)
    if facts.default_generated_sizes is None and any(v is not None for v in generated):
        out.append(f"{where}: {data.name} is not generated (generated_* fields apply only to "
                   "generated datasets)")
    if data.name not in COMBINATION_DATASETS and data.generated_combinations is not None:
        out.append(f"{where}.generated_combinations: {data.name} has no feature combinations")
    combinations = data.generated_combinations or TRIFEATURE_DEFAULT_COMBINATIONS
    if (facts.default_generated_sizes is not None and data.name in COMBINATION_DATASETS
            and combinations == "balanced"
            and (data.generated_test_size or facts.default_generated_sizes[1])
            % TRIFEATURE_BALANCED_MULTIPLE):
        out.append(f"{where}.generated_test_size: a balanced test split needs a multiple of "
                   f"{TRIFEATURE_BALANCED_MULTIPLE} images")
    return out


def _label_problems(where: str, data: DatasetSpec, facts: DatasetFacts) -> list[str]:
    """A catalogued dataset's target, class names and sensitive attributes against its facts."""
    out = []
    if facts.attribute_values:
        if data.target not in facts.attribute_values:
            out.append(f"{where}.target: {data.name} has no attribute '{data.target}'")
        elif data.class_names != facts.attribute_values[data.target]:
            out.append(f"{where}.class_names: target '{data.target}' has the classes "
                       f"{', '.join(facts.attribute_values[data.target])}")
    else:
        if data.target is not None:
            out.append(f"{where}.target: {data.name} has no target attributes")
        if data.class_names != facts.class_names:
            found = ", ".join(data.class_names[:5]) + (", ..." if len(data.class_names) > 5
                                                        else "")
            out.append(f"{where}.class_names: {data.name} has {len(facts.class_names)} "
                       f"classes ({', '.join(facts.class_names[:5])}, ...), found "
                       f"{len(data.class_names)} ({found})")
    out += [f"{where}.sensitive: {data.name} has no attribute '{attribute}'"
            for attribute in data.sensitive if attribute not in facts.attributes]
    return out


def study_problems(index: int, study: Study) -> list[str]:
    """A study's architectures and dataset against the catalogue."""
    where = f"studies[{index}]"
    out = dataset_problems(f"{where}.dataset", study.dataset)
    for role in ("teacher", "student"):
        arch = getattr(study, role).arch
        try:
            facts = architecture(arch).facts
        except ArchitectureError as err:
            out.append(f"{where}.{role}.arch: {err.message} ({err.help})")
            continue
        if study.dataset.image_size < facts.min_size:
            out.append(f"{where}.{role}.arch: {arch} needs images of at least "
                       f"{facts.min_size}x{facts.min_size}; {study.dataset.name} images here "
                       f"are {study.dataset.image_size}x{study.dataset.image_size}")
    out += method_problems(where, study)
    if study.fairness is not None:
        missing = [a for a in study.fairness.sensitive if a not in study.dataset.sensitive]
        if missing:
            out.append(f"{where}.fairness.sensitive: {', '.join(missing)} not kept by the "
                       "dataset (dataset.sensitive)")
        if study.dataset.num_classes > 2 and study.fairness.multiclass_aggregate is None:
            out.append(f"{where}.fairness.multiclass_aggregate: a target with "
                       f"{study.dataset.num_classes} classes needs one (mean or max)")
    return out


def method_problems(where: str, study: Study) -> list[str]:
    """The feature points and classifiers a feature method names that its models do not."""
    method = study.method
    wanted: list[tuple[str, str, str]] = []  # (role, name, "feature point" | "classifier")
    if isinstance(method, FitNet):
        wanted = [("teacher", method.hint, "feature point"),
                  ("student", method.guided, "feature point")]
    elif isinstance(method, AttentionTransfer):
        wanted = [(role, pair[i], "feature point") for pair in method.pairs
                  for i, role in enumerate(("teacher", "student"))]
    elif isinstance(method, CRD):
        wanted = [("teacher", method.teacher_classifier, "classifier"),
                  ("student", method.student_classifier, "classifier")]
    out = []
    for role, name, kind in wanted:
        arch = getattr(study, role).arch
        try:
            facts = architecture(arch).facts
        except ArchitectureError:
            continue  # reported with the architecture
        known = facts.feature_points if kind == "feature point" else (facts.classifier,)
        if name not in known:
            out.append(f"{where}.method: {arch} has no {kind} '{name}'")
    return out


def plan_problems(plan: Plan) -> list[str]:
    """Every catalogue fact the plan contradicts (empty for a compiled plan)."""
    return [p for i, s in enumerate(plan.studies) for p in study_problems(i, s)]
