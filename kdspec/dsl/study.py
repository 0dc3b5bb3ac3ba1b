"""Compile one ``study NAME { ... }`` block into a ``Study`` and the runs it needs.

Sections: ``dataset``, ``teacher``, ``student``, ``distill``, ``fairness``, ``analysis``,
``runtime``, ``tracking``, and the value ``seeds``. Every problem is added to the diagnostics;
the result is None when anything is wrong.
"""

from __future__ import annotations

from typing import Any, get_args

from kdspec.catalogue.registry import (
    HF_PREFIX,
    ArchitectureError,
    architecture,
    is_external,
    is_huggingface,
    probe_external,
    registry,
)
from kdspec.distillation_methods import DeclaredMethod
from kdspec.dsl.dataset import DatasetDraft, build_dataset, read_dataset, read_fairness
from kdspec.dsl.diagnostics import (
    Diagnostics,
    DuplicateDefinition,
    InconsistentStudy,
    InvalidValue,
    MissingField,
    UnknownName,
    WrongType,
)
from kdspec.dsl.methods import METHOD_KEYS, MethodDraft, read_method, resolve_method
from kdspec.dsl.model_init import (
    EVALUATE_ONLY,
    ROLE_KEYS,
    gives_weights,
    read_init,
    read_role_flags,
)
from kdspec.dsl.reader import LONGEST_LIST, Key, SectionReader, spec_relative
from kdspec.dsl.recipes import RecipeBook, read_layer
from kdspec.dsl.syntax import Assignment, Number, Section, WeightedSum
from kdspec.dsl.validation import build_model
from kdspec.errors import Span
from kdspec.plan import (
    MAX_EXPERIMENT_LENGTH,
    MAX_TEMPERATURE,
    MIN_TEMPERATURE,
    MSG_ZERO_LOSS,
    AnalysisSpec,
    Comparison,
    Correction,
    DisagreementPair,
    FairnessSpec,
    IndividualFairnessSpec,
    IndividualOutput,
    InputDistance,
    KDLoss,
    ModelSpec,
    Normalization,
    PairChoice,
    PrecisionSetting,
    Recipe,
    Run,
    RuntimeSpec,
    Study,
    TrackingSpec,
    expand_runs,
)

#: The paper trains every role over 5 seeds; a study without ``seeds`` gets 0..4.
DEFAULT_SEED_COUNT = 5
#: A study expanding to more runs than this is a typo (e.g. a range meant as a list).
MOST_RUNS = 10_000

STUDY_KEYS: dict[str, Key] = {
    "dataset": Key("section"), "teacher": Key("section"), "student": Key("section"),
    "distill": Key("section"), "fairness": Key("section"), "analysis": Key("section"),
    "individual_fairness": Key("section"), "runtime": Key("section"),
    "tracking": Key("section"), "seeds": Key(), "note": Key(),
}
#: Longest ``note`` (a paragraph, not a document).
LONGEST_NOTE = 2_000
DISTILL_KEYS: dict[str, Key] = {"temperatures": Key(), "loss": Key(), "t_squared": Key(),
                                **METHOD_KEYS}
LOSS_FORM = "`loss = 0.1 * hard + 0.9 * soft`"
DISTILL_HINTS = {k: f"write each weight next to its term: {LOSS_FORM}"
                 for k in ("alpha", "beta", "weight", "hard_weight", "soft_weight")}
ANALYSIS_KEYS: dict[str, Key] = {k: Key() for k in (
    "normalization", "alpha", "correction", "comparisons", "disagreement", "over_seeds",
    "bootstrap", "figure_temperature", "permutations", "equivalence_margin")}
INDIVIDUAL_FAIRNESS_KEYS: dict[str, Key] = {k: Key() for k in (
    "output", "distance", "pairs", "samples", "neighbours", "same_label")}
RUNTIME_KEYS: dict[str, Key] = {k: Key() for k in ("precision", "compile", "lockstep",
                                                    "teacher_cache")}
TRACKING_KEYS: dict[str, Key] = {"experiment": Key(), "uri": Key()}


def compile_study(section: Section, recipes: RecipeBook, diags: Diagnostics, *,
                  variant: tuple[str, tuple[tuple[str, str], ...]] | None = None
                  ) -> tuple[Study, tuple[Run, ...]] | None:
    """The study and its runs (dependency order), or None if anything was reported.

    ``variant``: the name of the ``vary`` block this section was expanded from and the settings
    of this variant (see :mod:`kdspec.dsl.variants`)."""
    assert section.label is not None
    name = section.label.value
    before = len(diags)
    study = SectionReader(f"study '{name}'", section.entries, STUDY_KEYS, diags)
    for key in ("dataset", "teacher", "student", "distill"):
        if not study.has(key):
            diags.add(MissingField(section.label.span, f"study '{name}' has no {key} section",
                                   help=f"add `{key} ... {{ ... }}`; see docs/language.md"))
    draft = read_dataset(s, diags) if (s := study.section("dataset")) else None
    teacher = _role(study.section("teacher"), "teacher", draft, recipes, diags)
    student = _role(study.section("student"), "student", draft, recipes, diags)
    temperatures, loss, method_draft = _distill(study.section("distill"), diags)
    seeds, seeds_span = _seeds(study, section.label.span, diags)
    fairness: FairnessSpec | None = None
    if draft is not None and (s := study.section("fairness")) is not None:
        fairness = read_fairness(s, draft, diags)
    analysis = _options(study.section("analysis"), AnalysisSpec, ANALYSIS_KEYS, "analysis", {
        "normalization": get_args(Normalization), "correction": get_args(Correction),
        "over_seeds": ("sum", "mean")}, {
        "comparisons": get_args(Comparison), "disagreement": get_args(DisagreementPair)}, diags)
    individual = None
    if (s := study.section("individual_fairness")) is not None:
        individual = _options(s, IndividualFairnessSpec, INDIVIDUAL_FAIRNESS_KEYS,
                              "individual_fairness", {
                                  "output": get_args(IndividualOutput),
                                  "distance": get_args(InputDistance),
                                  "pairs": get_args(PairChoice)}, {}, diags)
    runtime = _options(study.section("runtime"), RuntimeSpec, RUNTIME_KEYS, "runtime", {
        "precision": get_args(PrecisionSetting), "compile": ("auto", "true", "false"),
        "teacher_cache": ("auto", "on", "off")}, {}, diags)
    tracking = _tracking(study.section("tracking"), name, diags)
    note = _note(study, diags)
    if (analysis is not None and analysis.figure_temperature is not None and temperatures
            and analysis.figure_temperature not in temperatures):
        diags.add(InconsistentStudy(
            _key_span(study.section("analysis"), "figure_temperature") or section.label.span,
            f"figure_temperature {analysis.figure_temperature:g} is not one of the study's "
            f"temperatures", help="temperatures: " + ", ".join(f"{t:g}" for t in temperatures)))
    if analysis is not None and analysis.comparisons and seeds is not None and len(seeds) < 2:
        diags.add(InconsistentStudy(seeds_span, f"the Welch t-test needs at least 2 seeds per "
                                    f"group; this study has {len(seeds)}",
                                    help="use `seeds = 5`, or `comparisons = []` in analysis"))
    dataset = build_dataset(draft, diags) if draft is not None else None
    method: DeclaredMethod | None = None
    if method_draft is not None and teacher and student and temperatures:
        varied = variant is not None and any(key == "distill.method" for key, _ in variant[1])
        method = resolve_method(method_draft, teacher=teacher, student=student,
                                temperatures=temperatures, varied=varied, diags=diags)
    if len(diags) > before:
        return None
    if not (dataset and teacher and student and temperatures and loss and method and seeds
            and analysis and runtime and tracking):
        return None  # each missing part was reported where it was read
    n_runs = len(seeds) * (2 + len(temperatures))
    if n_runs > MOST_RUNS:
        diags.add(InconsistentStudy(section.label.span, f"study '{name}' expands to {n_runs} "
                                    f"runs (at most {MOST_RUNS})"))
        return None
    runs = expand_runs(dataset=dataset, teacher=teacher, student=student,
                       temperatures=temperatures, seeds=seeds, loss=loss,
                       precision=runtime.precision, method=method)
    fields = dict(name=name, dataset=dataset, teacher=teacher, student=student,
                  temperatures=temperatures, seeds=seeds, loss=loss, method=method,
                  fairness=fairness,
                  individual_fairness=individual, analysis=analysis, runtime=runtime,
                  tracking=tracking, note=note,
                  run_ids=tuple(r.id for r in runs),
                  variant_of=None if variant is None else variant[0],
                  variant=() if variant is None else variant[1])
    built = build_model(Study, fields, {}, where=section.label.span, what=f"study '{name}'",
                        diags=diags)
    return None if built is None else (built, runs)


def _role(section: Section | None, role: str, draft: DatasetDraft | None, recipes: RecipeBook,
          diags: Diagnostics) -> ModelSpec | None:
    if section is None:
        return None
    layer = read_layer(section, role, diags, ROLE_KEYS)
    if section.label is None:
        diags.add(MissingField(section.key_span, f"{role} has no architecture",
                               help=f"write `{role} resnet20 {{ ... }}`"))
        return None
    arch = huggingface_arch(section.label.value, section.label.span)
    try:
        facts = architecture(arch).facts
    except ArchitectureError as err:
        diags.add(UnknownName(section.label.span, err.message, help=err.help))
        return None
    if draft is not None and not _fits_modality(arch, draft, section.label.span, diags):
        return None
    init, init_ok = read_init(section, arch, diags)
    init, accept_chance = read_role_flags(section, role, init, diags)
    if gives_weights(section) and not layer.fields and layer.base is None:
        # Weights given (even ones with an error, reported once above), nothing to train.
        recipe: Recipe | None = EVALUATE_ONLY
    else:
        recipe = recipes.build(layer, section.label.span, role)
    if recipe is not None and recipe.epochs == 0 and not gives_weights(section):
        span = layer.fields["epochs"][1] if "epochs" in layer.fields else section.label.span
        diags.add(InvalidValue(span, "epochs = 0 means the model is not trained",
                               help="give it weights to start from (pretrained, checkpoint "
                                    "or from_run), or train it"))
        return None
    if not init_ok:
        return None
    if draft is not None and draft.fields["image_size"] < facts.min_size:
        size = draft.fields["image_size"]
        fix = (f"set image_size >= {facts.min_size} in the dataset" if draft.facts.resizable
               else "choose an architecture for small images: " + ", ".join(
                   a for a, e in registry().architectures.items() if e.facts.min_size <= size))
        diags.add(InconsistentStudy(section.label.span, f"{arch} needs images of at least "
                                    f"{facts.min_size}x{facts.min_size}; {draft.facts.name} "
                                    f"images here are {size}x{size}", help=fix))
        return None
    if (draft is not None and is_external(arch) and not is_huggingface(arch)
            and "?" not in draft.fields["class_names"]):
        problem = probe_external(arch, in_channels=draft.fields["channels"],
                                 image_size=draft.fields["image_size"],
                                 num_classes=draft.num_classes).problem
        if problem is not None:
            diags.add(InconsistentStudy(section.label.span, problem,
                                        help="choose another image_size (resizable datasets) "
                                             "or another model"))
            return None
    return None if recipe is None else ModelSpec(arch=arch, recipe=recipe, init=init,
                                                 accept_chance=accept_chance)


def huggingface_arch(label: str, span: Span) -> str:
    """An ``hf:`` label whose model is a folder (``hf:./models/tiny``, ``hf:~/m``) made
    absolute, relative to the spec's folder; every other label as written."""
    if not is_huggingface(label):
        return label
    source = label.removeprefix(HF_PREFIX)
    if not source.startswith((".", "/", "~")):
        return label
    return HF_PREFIX + str(spec_relative(source, span))


def _fits_modality(arch: str, draft: DatasetDraft, span: Span, diags: Diagnostics) -> bool:
    """Text datasets take Hugging Face models (token ids in), image datasets every other."""
    text = draft.facts.modality == "text"
    if text and not is_huggingface(arch):
        diags.add(InconsistentStudy(span, f"{draft.facts.name} is text; {arch} takes images",
                                    help="use a Hugging Face sequence classifier, e.g. "
                                         "hf:bert-base-uncased or hf:distilbert-base-uncased"))
        return False
    if is_huggingface(arch) and not text:
        diags.add(InconsistentStudy(span, f"{arch} takes token ids; {draft.facts.name} is "
                                    "images", help="hf: models are for text datasets "
                                    "(hatexplain); for images use torchvision:NAME or "
                                    "timm:NAME"))
        return False
    return True


def _distill(section: Section | None, diags: Diagnostics
             ) -> tuple[tuple[float, ...] | None, KDLoss | None, MethodDraft | None]:
    if section is None:
        return None, None, None
    before = len(diags)
    reader = SectionReader("distill", section.entries, DISTILL_KEYS, diags, DISTILL_HINTS)
    temperatures: list[float] = []
    for t, span in reader.numbers("temperatures") or []:
        if not MIN_TEMPERATURE <= t <= MAX_TEMPERATURE:
            diags.add(InvalidValue(span, f"temperature must be between {MIN_TEMPERATURE:g} and "
                                   f"{MAX_TEMPERATURE:g}, found {t:g}",
                                   help="T divides the logits: softmax(z / T); outside these "
                                        "bounds float32 overflows or the targets are uniform"))
        elif t in temperatures:
            diags.add(DuplicateDefinition(span, f"temperature {t:g} is listed twice"))
        else:
            temperatures.append(t)
    if not reader.has("temperatures"):
        diags.add(MissingField(section.key_span, "distill has no temperatures",
                               help="e.g. `temperatures = 2..10` or `[1..10, 20, 30, 40]`"))
    elif reader.value("temperatures") is not None and not temperatures and len(diags) == before:
        diags.add(InvalidValue(reader.span("temperatures"), "temperatures is empty",
                               help="e.g. `temperatures = 2..10`"))
    t_squared = reader.boolean("t_squared")
    method = read_method(reader, section, diags)
    standardize = method is not None and method.standardize and method.name == "kd"
    loss = _loss(reader, section, True if t_squared is None else t_squared, standardize, diags)
    return (tuple(temperatures) or None), loss, method


def _loss(reader: SectionReader, section: Section, t_squared: bool, standardize: bool,
          diags: Diagnostics) -> KDLoss | None:
    value = reader.value("loss")
    if value is None:
        diags.add(MissingField(section.key_span, "distill has no loss",
                               help=f"say which term each weight applies to: {LOSS_FORM}"))
        return None
    if not isinstance(value, WeightedSum):
        bare = isinstance(value, Number)
        diags.add(WrongType(value.span, "a bare weight does not say which term it weights"
                            if bare else "'loss' must be a weighted sum of hard and soft",
                            help=f"write {LOSS_FORM}"))
        return None
    weights: dict[str, float] = {}
    for term in value.terms:
        word, weight = term.term.value, float(term.weight.value)
        if word not in ("hard", "soft"):
            diags.add(UnknownName(term.term.span, f"unknown loss term '{word}'",
                                  help="the terms are hard (CE with the labels) and soft (KD)"))
        elif word in weights:
            diags.add(DuplicateDefinition(term.term.span, f"the {word} term is weighted twice"))
        elif not 0.0 <= weight <= 1.0:
            diags.add(InvalidValue(term.weight.span, f"weight of the {word} term must be between"
                                   f" 0 and 1, found {weight:g}"))
            weights[word] = weight
        else:
            weights[word] = weight
    for word in ("hard", "soft"):
        if word not in weights:
            diags.add(MissingField(value.span, f"loss gives no weight to the {word} term",
                                   help=f"write both terms, e.g. {LOSS_FORM} (0 is a weight)"))
    if len(weights) < 2 or any(not 0.0 <= w <= 1.0 for w in weights.values()):
        return None
    if weights["hard"] == 0.0 and weights["soft"] == 0.0:
        diags.add(InvalidValue(value.span, MSG_ZERO_LOSS,
                               help="give at least one term a weight above 0"))
        return None
    kl = "T^2 * KL" if t_squared else "KL"
    zt, zs = ("Z(z_t)", "Z(z_s)") if standardize else ("z_t", "z_s")
    convention = (f"loss = {weights['hard']:g} * hard + {weights['soft']:g} * soft: hard weights "
                  f"CE(z_s, y), soft weights {kl}(softmax({zt}/T) || softmax({zs}/T))")
    if standardize:
        convention += ", Z the per-sample z-score of the logits"
    return KDLoss(hard_weight=weights["hard"], soft_weight=weights["soft"], t_squared=t_squared,
                  convention=convention, logit_standardization=standardize)


def _note(study: SectionReader, diags: Diagnostics) -> str:
    """``note = "..."``: what the study is for, printed at the top of its report."""
    text = study.string("note")
    if text is None:
        return ""
    text = " ".join(text.split())
    if not text:
        diags.add(InvalidValue(study.span("note"), "note is empty",
                               help="write what the study is for, or remove note"))
    elif len(text) > LONGEST_NOTE:
        diags.add(InvalidValue(study.span("note"), f"note is {len(text):,} characters (at "
                               f"most {LONGEST_NOTE:,})", help="keep the details in the "
                               "spec's comments or the docs"))
        return ""
    return text


def _seeds(study: SectionReader, where: Span,
           diags: Diagnostics) -> tuple[tuple[int, ...] | None, Span]:
    value = study.value("seeds")
    if value is None:
        return tuple(range(DEFAULT_SEED_COUNT)), where
    span = value.span
    if isinstance(value, Number) and value.is_int:
        count = int(value.value)
        if not 1 <= count <= LONGEST_LIST:
            diags.add(InvalidValue(span, f"seed count must be between 1 and {LONGEST_LIST}, "
                                   f"found {count}", help="`seeds = 5` means seeds 0..4"))
            return None, span
        return tuple(range(count)), span
    numbers = study.numbers("seeds")
    if numbers is None:
        return None, span
    seeds: list[int] = []
    for s, item_span in numbers:
        if s != int(s) or s < 0:
            diags.add(InvalidValue(item_span, f"a seed must be a whole number >= 0, found {s:g}"))
        elif int(s) in seeds:
            diags.add(DuplicateDefinition(item_span, f"seed {int(s)} is listed twice"))
        else:
            seeds.append(int(s))
    if not numbers:
        diags.add(InvalidValue(span, "seeds is empty", help="`seeds = 5` means seeds 0..4"))
        return None, span
    return tuple(seeds), span


def _options(section: Section | None, model: Any, keys: dict[str, Key], what: str,
             single: dict[str, tuple[str, ...]], several: dict[str, tuple[str, ...]],
             diags: Diagnostics) -> Any:
    """An options section (analysis, runtime): named choices, choice lists, numbers, booleans."""
    if section is None:
        return model()
    reader = SectionReader(what, section.entries, keys, diags)
    fields: dict[str, Any] = {}
    spans: dict[str, Span] = {}
    field_of = {"over_seeds": "disagreement_over_seeds"}
    for key in keys:
        if not reader.has(key):
            continue
        if key in single:
            value: Any = reader.choice(key, single[key])
        elif key in several:
            value = reader.choices(key, several[key])
        elif key in ("alpha", "figure_temperature", "equivalence_margin"):
            value = reader.number(key)
        elif key in ("bootstrap", "permutations", "samples", "neighbours"):
            value = reader.integer(key)
        else:
            value = reader.boolean(key)
        if key == "compile" and value in ("true", "false"):
            value = value == "true"
        if value is not None:
            field = field_of.get(key, key)
            fields[field], spans[field] = value, reader.span(key)
    return build_model(model, fields, spans, where=section.key_span, what=what, diags=diags)


def _key_span(section: Section | None, key: str) -> Span | None:
    """The span of ``key = value`` in ``section`` (its value), if written there."""
    for entry in section.entries if section is not None else ():
        if isinstance(entry, Assignment) and entry.key == key:
            return entry.value.span
    return None


def _tracking(section: Section | None, study: str, diags: Diagnostics) -> TrackingSpec | None:
    if section is None:
        return TrackingSpec(experiment=study)
    reader = SectionReader("tracking", section.entries, TRACKING_KEYS, diags)
    experiment = reader.string("experiment")
    if experiment is not None and not experiment.strip():
        diags.add(InvalidValue(reader.span("experiment"), "experiment name is empty"))
        return None
    if experiment is not None and (len(experiment) > MAX_EXPERIMENT_LENGTH
                                   or any(not ch.isprintable() for ch in experiment)):
        diags.add(InvalidValue(reader.span("experiment"), "experiment name must be at most "
                               f"{MAX_EXPERIMENT_LENGTH} printable characters"))
        return None
    return TrackingSpec(experiment=experiment or study, tracking_uri=reader.string("uri"))
