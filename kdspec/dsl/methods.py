"""``distill { method = ... }``: how the distilled students learn, read into one of the plan's
method models (:mod:`kdspec.distillation_methods`).

Inside ``distill``: ``method = NAME`` (``kd`` when absent), ``logit_standardization = true``
(with kd and dkd), and a section per method for its hyperparameters, each with the paper's
default (``dkd { beta = 6 }``). The method is read with the rest of ``distill`` (:func:`read_method`)
and resolved once the teacher and the student are known (:func:`resolve_method`), since feature
methods need the models' feature points (``kdspec.catalogue.facts.ArchFacts``).

Settings for a method other than the study's are an error, unless ``vary`` varies ``method``:
then one ``distill`` block serves every variant and each reads its own section.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from kdspec.catalogue.registry import ArchitectureError, architecture
from kdspec.distillation_methods import (
    CONTROL_MODELS,
    FEATURE_METHODS,
    METHOD_MODELS,
    STANDARDIZABLE,
    DeclaredMethod,
)
from kdspec.dsl.diagnostics import (
    Diagnostics,
    InconsistentStudy,
    UnknownName,
    WrongType,
    did_you_mean,
)
from kdspec.dsl.reader import Key, SectionReader
from kdspec.dsl.syntax import Name, Number, Section, describe_value
from kdspec.dsl.validation import build_model
from kdspec.errors import Span
from kdspec.plan import ModelSpec

#: Every name ``method`` takes: the methods, then the control arms.
METHOD_NAMES: Final = (*METHOD_MODELS, *CONTROL_MODELS)
#: The keys of each method's section and how each is read.
SECTION_KEYS: Final[dict[str, dict[str, str]]] = {
    "dkd": {"ce_weight": "number", "alpha": "number", "beta": "number", "warmup": "integer"},
    "dist": {"ce_weight": "number", "beta": "number", "gamma": "number"},
    "fitnet": {"ce_weight": "number", "weight": "number", "hint": "name", "guided": "name"},
    "at": {"ce_weight": "number", "weight": "number", "p": "number"},
    "crd": {"ce_weight": "number", "weight": "number", "feat_dim": "integer",
            "nce_k": "integer", "nce_t": "number", "nce_m": "number"},
    "label_smoothing": {"epsilon": "epsilon"},
}
#: The keys ``distill`` takes for methods (besides temperatures, loss and t_squared).
METHOD_KEYS: Final[dict[str, Key]] = {
    "method": Key(), "logit_standardization": Key(),
    **{name: Key("section") for name in SECTION_KEYS},
}
MATCHED: Final = "matched"
FEATURE_HELP: Final = ("feature methods need models that name their {what}: kdspec's own "
                       "architectures (kdspec list architectures), or a plugin's that names "
                       "them (docs/plugins.md)")


@dataclass(frozen=True)
class MethodDraft:
    """What ``distill`` says about the method, before the models are known: the name (and the
    span of its value, else of ``distill``), the switch, and each method section's values."""

    name: str
    span: Span
    standardize: bool
    standardize_span: Span | None
    settings: dict[str, dict[str, tuple[Any, Span]]]
    section_spans: dict[str, Span]


def read_method(reader: SectionReader, distill: Section,
                diags: Diagnostics) -> MethodDraft | None:
    """The method part of ``distill`` (its other keys are read elsewhere); None after
    reporting an unknown method or a bad value."""
    before = len(diags)
    name, span = "kd", distill.key_span
    value = reader.value("method")
    if value is not None:
        span = value.span
        chosen = reader.choice("method", METHOD_NAMES)
        name = chosen if chosen is not None else name
    standardize = reader.boolean("logit_standardization")
    settings: dict[str, dict[str, tuple[Any, Span]]] = {}
    section_spans: dict[str, Span] = {}
    for method, keys in SECTION_KEYS.items():
        section = reader.section(method)
        if section is not None:
            section_spans[method] = section.key_span
            settings[method] = _read_settings(section, method, keys, diags)
    if len(diags) > before:
        return None
    return MethodDraft(name, span, bool(standardize),
                       reader.span("logit_standardization")
                       if reader.has("logit_standardization") else None,
                       settings, section_spans)


def _read_settings(section: Section, method: str, keys: dict[str, str],
                   diags: Diagnostics) -> dict[str, tuple[Any, Span]]:
    inner = SectionReader(method, section.entries, {k: Key() for k in keys}, diags)
    values: dict[str, tuple[Any, Span]] = {}
    for key, kind in keys.items():
        if not inner.has(key):
            continue
        value: Any
        if kind == "epsilon":
            value = _epsilon(inner, diags)
        elif kind == "integer":
            value = inner.integer(key)
        elif kind == "number":
            value = inner.number(key)
        else:
            value = inner.string(key)
        if value is not None:
            values[key] = (value, inner.span(key))
    return values


def _epsilon(reader: SectionReader, diags: Diagnostics) -> float | str | None:
    value = reader.value("epsilon")
    if isinstance(value, Number):
        return float(value.value)
    if isinstance(value, Name) and value.value == MATCHED:
        return MATCHED
    assert value is not None
    diags.add(WrongType(value.span, f"'epsilon' must be a number or `matched`, found "
                        f"{describe_value(value)}",
                        help="`epsilon = matched` puts the teacher's soft mass at T off the "
                             "true class; `epsilon = 0.1` fixes it"))
    return None


def resolve_method(draft: MethodDraft, *, teacher: ModelSpec, student: ModelSpec,
                   temperatures: tuple[float, ...], varied: bool,
                   diags: Diagnostics) -> DeclaredMethod | None:
    """The plan's method for ``draft`` with these models, or None after reporting why not.
    ``varied``: ``vary`` varies ``method`` (other methods' sections are then allowed)."""
    before = len(diags)
    name = draft.name
    if not varied:
        for other, span in draft.section_spans.items():
            if other != name:
                diags.add(InconsistentStudy(span, f"settings for {other}, but this study's "
                                            f"method is {name}",
                                            help=f"set `method = {other}` in distill, or "
                                                 f"remove the {other} section"))
    if draft.standardize and name not in STANDARDIZABLE:
        assert draft.standardize_span is not None
        diags.add(InconsistentStudy(draft.standardize_span, f"logit_standardization applies to "
                                    f"kd and dkd, not {name}",
                                    help="remove it, or use `method = kd` or `method = dkd`"))
    settings = draft.settings.get(name, {})
    fields = {key: value for key, (value, _) in settings.items()}
    spans = {key: span for key, (_, span) in settings.items()}
    if name == "dkd":
        fields["logit_standardization"] = draft.standardize
    if name in FEATURE_METHODS:
        _feature_points(name, draft, teacher, student, fields, diags)
    if name == "self" and teacher.recipe.epochs == 0:
        diags.add(InconsistentStudy(draft.span, "self trains the teacher's architecture with the "
                                    "teacher's recipe, and this teacher is only evaluated "
                                    "(epochs = 0)", help="give the teacher a recipe, or choose "
                                    "another method"))
    fixed_epsilon = isinstance(fields.get("epsilon"), float)
    if (name in FEATURE_METHODS or fixed_epsilon) and len(temperatures) > 1:
        what = "label_smoothing with a fixed epsilon" if fixed_epsilon else name
        diags.add(InconsistentStudy(spans.get("epsilon", draft.span), f"{what} does not use "
                                    f"the temperature: the study's {len(temperatures)} "
                                    f"temperatures would train the same students "
                                    f"{len(temperatures)} times",
                                    help="give this study one temperature (the benchmark's "
                                         "`temperatures = [4]`); a second study with the other "
                                         "temperatures shares its teachers and NDS"))
    if len(diags) > before:
        return None
    model = {**METHOD_MODELS, **CONTROL_MODELS}[name]
    return build_model(model, fields, spans, where=draft.section_spans.get(name, draft.span),
                       what=name, diags=diags)


def _facts_points(arch: str) -> tuple[tuple[str, ...], str]:
    try:
        facts = architecture(arch).facts
    except ArchitectureError:  # reported where the model was read
        return (), ""
    return facts.feature_points, facts.classifier


def _feature_points(name: str, draft: MethodDraft, teacher: ModelSpec, student: ModelSpec,
                    fields: dict[str, Any], diags: Diagnostics) -> None:
    """Fill the feature points of a feature method into ``fields``, or report why the models
    cannot give them (at the method, naming the model)."""
    t_points, t_classifier = _facts_points(teacher.arch)
    s_points, s_classifier = _facts_points(student.arch)
    if name == "crd":
        for arch, classifier in ((teacher.arch, t_classifier), (student.arch, s_classifier)):
            if not classifier:
                diags.add(InconsistentStudy(draft.span, f"crd contrasts the embeddings before "
                                            f"the classifier, and {arch} names no classifier",
                                            help=FEATURE_HELP.format(what="classifier")))
        fields.update(teacher_classifier=t_classifier, student_classifier=s_classifier)
        return
    for arch, points in ((teacher.arch, t_points), (student.arch, s_points)):
        if not points:
            diags.add(InconsistentStudy(draft.span, f"{name} distils intermediate features, "
                                        f"and {arch} names no feature points",
                                        help=FEATURE_HELP.format(what="feature points")))
    if not t_points or not s_points:
        return
    if name == "at":
        if len(t_points) != len(s_points):
            diags.add(InconsistentStudy(draft.span, f"at pairs the stages in order: "
                                        f"{teacher.arch} has {len(t_points)} feature points "
                                        f"({', '.join(t_points)}), {student.arch} "
                                        f"{len(s_points)} ({', '.join(s_points)})",
                                        help="choose a teacher and a student with as many "
                                             "stages, or fitnet (one point of each)"))
        fields["pairs"] = tuple(zip(t_points, s_points, strict=False))
        return
    _hint_and_guided(draft, teacher.arch, t_points, student.arch, s_points, fields, diags)


def _hint_and_guided(draft: MethodDraft, teacher: str, t_points: tuple[str, ...], student: str,
                     s_points: tuple[str, ...], fields: dict[str, Any],
                     diags: Diagnostics) -> None:
    """fitnet's hint (a teacher point) and guided layer (a student point): as written, the
    guided layer defaulting to the hint's name; else the second stage of each (the CRD
    benchmark's ``hint_layer = 2``)."""
    settings = draft.settings.get("fitnet", {})
    hint = settings.get("hint")
    guided = settings.get("guided") or hint
    for model, points, chosen, key in ((teacher, t_points, hint, "hint"),
                                       (student, s_points, guided, "guided")):
        if chosen is None:
            if len(points) < 2:
                diags.add(InconsistentStudy(draft.span, f"fitnet's default {key} layer is the "
                                            f"second feature point, and {model} has one "
                                            f"({points[0]})",
                                            help=f"name it: `fitnet {{ {key} = {points[0]} }}`"))
            else:
                fields[key] = points[1]
        elif chosen[0] not in points:
            diags.add(UnknownName(chosen[1], f"{model} has no feature point '{chosen[0]}'",
                                  help=did_you_mean(chosen[0], points,
                                                    f"feature points of {model}")))
        else:
            fields[key] = chosen[0]
