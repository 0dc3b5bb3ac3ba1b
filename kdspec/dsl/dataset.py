"""The ``dataset`` and ``fairness`` sections: catalogue checks and every default resolved.

Image size, channels, class count and class names come from ``kdspec.catalogue.facts``; for CelebA and
Trifeature the classes are the values of the ``target`` attribute. Attributes named by
``sensitive`` (in either section) must be ones the dataset provides, and all of them end up in
``DatasetSpec.sensitive`` so the runtime keeps them with the test predictions.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, get_args

from kdspec.catalogue.facts import (
    COMBINATION_DATASETS,
    DEFAULT_COMMUNITY_VOTES,
    DEFAULT_MAX_LENGTH,
    DEFAULT_TOKENIZER,
    TRIFEATURE_BALANCED_MULTIPLE,
    TRIFEATURE_DEFAULT_COMBINATIONS,
    DatasetFacts,
)
from kdspec.catalogue.image_folder_layout import (
    read_attribute_header,
    read_attribute_table,
    scan_image_folder,
)
from kdspec.catalogue.registry import dataset_facts, datasets
from kdspec.dsl.diagnostics import (
    Diagnostics,
    DuplicateDefinition,
    InconsistentStudy,
    InvalidValue,
    MissingField,
    UnknownName,
    did_you_mean,
)
from kdspec.dsl.reader import Key, SectionReader, spec_relative
from kdspec.dsl.syntax import Section
from kdspec.dsl.validation import build_model
from kdspec.errors import DataError, Span
from kdspec.plan import (
    MAX_GENERATED_BYTES,
    MAX_GENERATED_IMAGES,
    MAX_IMAGE_SIZE,
    MAX_SEQUENCE_LENGTH,
    AugmentPreset,
    DatasetSpec,
    FairnessMetric,
    FairnessSpec,
    MulticlassAggregate,
    TrifeatureCombinations,
)

DATASET_KEYS: dict[str, Key] = {
    k: Key() for k in (
        "root", "download", "train_subset", "test_subset", "image_size", "augment", "target",
        "sensitive", "balance", "generated_train", "generated_test", "combinations",
        "validation", "attributes", "channels", "tokenizer", "max_length", "community_votes",
    )
}
#: Keys that only text datasets take, and the one only HateXplain takes.
TEXT_KEYS = ("tokenizer", "max_length")
COMMUNITY_KEY = "community_votes"
#: Keys that only ``imagefolder`` takes (its data is not in the catalogue).
IMAGE_FOLDER_KEYS = ("attributes", "channels")
FAIRNESS_KEYS: dict[str, Key] = {k: Key() for k in ("sensitive", "metrics", "multiclass",
                                                      "aggregate")}
def _fairness_datasets() -> str:
    return "fairness needs a dataset with attributes: " + ", ".join(
        n for n, e in datasets().items() if e.facts.fairness_dataset)
AUGMENT_PRESETS: tuple[str, ...] = get_args(AugmentPreset)
FAIRNESS_METRICS: tuple[str, ...] = get_args(FairnessMetric)
AGGREGATES: tuple[str, ...] = get_args(MulticlassAggregate)
#: The paper's Algorithm 1 averages the one-vs-rest metric over classes.
DEFAULT_AGGREGATE = "mean"
COMBINATIONS: tuple[str, ...] = get_args(TrifeatureCombinations)
IMAGE_FOLDER = "imagefolder"


@dataclass
class DatasetDraft:
    """The dataset fields read so far; ``sensitive`` is completed by the fairness section."""

    facts: DatasetFacts
    fields: dict[str, Any]
    spans: dict[str, Span]
    sensitive: list[str]
    where: Span
    #: imagefolder: its test images (paths relative to the root), whose attribute rows the
    #: sensitive attributes need.
    test_files: tuple[str, ...] = ()

    @property
    def num_classes(self) -> int:
        return int(self.fields["num_classes"])


def read_dataset(section: Section, diags: Diagnostics) -> DatasetDraft | None:
    """Check the ``dataset NAME { ... }`` section against the catalogue."""
    if section.label is None:
        diags.add(MissingField(section.key_span, "dataset has no name",
                               help="write `dataset cifar10 { ... }`; known datasets: "
                                    + ", ".join(sorted(datasets()))))
        return None
    name = section.label.value
    reader = SectionReader(f"dataset {name}", section.entries, DATASET_KEYS, diags)
    if name not in datasets():
        diags.add(UnknownName(section.label.span, f"unknown dataset '{name}'",
                              help=did_you_mean(name, datasets(), "known datasets")))
        return None
    facts = dataset_facts(name)
    fields: dict[str, Any] = {"name": name, "channels": facts.channels,
                              "image_size": facts.image_size, "augment": facts.default_augment}
    spans: dict[str, Span] = {}
    draft = DatasetDraft(facts, fields, spans, [], section.label.span)
    if name == IMAGE_FOLDER:
        if not _read_image_folder(reader, draft, diags):
            return None
    else:
        for key in IMAGE_FOLDER_KEYS:
            if reader.has(key):
                diags.add(InconsistentStudy(reader.span(key), f"{name} has no '{key}' setting",
                                            help=f"{key} applies only to imagefolder (your own "
                                                 "images); remove it"))

    def put(field: str, key: str, value: Any) -> None:
        if value is not None:
            fields[field], spans[field] = value, reader.span(key)

    if facts.modality == "text":  # a folder of files the user put somewhere: spec-relative
        root = reader.string("root")
        put("root", "root", None if root is None else str(spec_relative(root,
                                                                          reader.span("root"))))
    elif name != IMAGE_FOLDER:
        put("root", "root", reader.string("root"))
    put("download", "download", reader.boolean("download"))
    put("augment", "augment", reader.choice("augment", AUGMENT_PRESETS))
    put("balance", "balance", reader.choice("balance", ("none", "undersample")))
    for key in ("train_subset", "test_subset"):
        put(key, key, reader.positive_integer(key))
    _read_validation(reader, draft, diags)
    _read_text(reader, draft, diags)
    _read_image_size(reader, draft, diags)
    _read_generated_sizes(reader, draft, diags)
    _read_target(reader, draft, diags)
    for key, full in (("train_subset", facts.train_size), ("test_subset", facts.test_size)):
        if key in fields and full is not None and fields[key] > full:
            diags.add(InconsistentStudy(spans[key], f"{key} {fields[key]} is larger than "
                                        f"{name}'s {full} images"))
    for attr, span in reader.names("sensitive") or []:
        _add_sensitive(draft, attr, span, diags)
    return draft


def _read_image_folder(reader: SectionReader, draft: DatasetDraft, diags: Diagnostics) -> bool:
    """``dataset imagefolder { root = ...; attributes = ...; channels = ... }``: the folders are
    listed now (class names, the content digest of the run ids, the CSV's attribute names),
    so a wrong path is an error at its position in the spec. False when the study cannot
    compile without them."""
    root = reader.string("root")
    if root is None:
        if not reader.has("root"):
            diags.add(MissingField(draft.where, "imagefolder needs root, the folder holding "
                                   "train/<class>/ and test/<class>/",
                                   help='e.g. `root = "data/faces"` (relative to this spec)'))
        return False
    try:
        layout = scan_image_folder(spec_relative(root, reader.span("root")))
    except DataError as error:
        diags.add(InvalidValue(reader.span("root"), str(error),
                               help="a path relative to the spec, or absolute; docs/datasets.md "
                                    "shows the layout"))
        return False
    fields = draft.fields
    fields["root"], draft.spans["root"] = str(layout.root), reader.span("root")
    fields["content_digest"] = layout.content_digest
    fields["counted_train_images"] = len(layout.train_files)
    draft.test_files = layout.test_files
    attributes: tuple[str, ...] = ()
    table = reader.string("attributes")
    if table is not None:
        path = spec_relative(table, reader.span("attributes"))
        try:
            attributes = read_attribute_header(path)
        except DataError as error:
            diags.add(InvalidValue(reader.span("attributes"), str(error),
                                   help="a CSV whose header is `file,ATTRIBUTE,...`, relative "
                                        "to the spec or absolute"))
            return False
        fields["attributes_file"] = str(path)
        draft.spans["attributes_file"] = reader.span("attributes")
    channels = reader.positive_integer("channels")
    if channels is not None:
        if channels not in (1, 3):
            diags.add(InvalidValue(reader.span("channels"), f"channels is 1 (grey) or 3 (RGB), "
                                   f"found {channels}"))
        else:
            fields["channels"], draft.spans["channels"] = channels, reader.span("channels")
    draft.facts = replace(draft.facts, class_names=layout.class_names,
                          train_size=len(layout.train_files), test_size=len(layout.test_files),
                          attributes=attributes, channels=fields["channels"])
    return True


def _read_text(reader: SectionReader, draft: DatasetDraft, diags: Diagnostics) -> None:
    """``tokenizer``, ``max_length`` (text datasets) and ``community_votes`` (HateXplain), with
    their defaults; errors where an image dataset is given them."""
    facts = draft.facts
    text = facts.modality == "text"
    for key in (*TEXT_KEYS, COMMUNITY_KEY):
        applies = facts.name == "hatexplain" if key == COMMUNITY_KEY else text
        if reader.has(key) and not applies:
            diags.add(InconsistentStudy(reader.span(key), f"{facts.name} has no '{key}' "
                                        "setting", help=f"{key} applies only to "
                                        + ("hatexplain" if key == COMMUNITY_KEY
                                           else "text datasets (hatexplain)")
                                        + "; remove it"))
    if not text:
        return
    if reader.has("augment") and draft.fields.get("augment") not in (None, "none"):
        diags.add(InconsistentStudy(reader.span("augment"), f"{facts.name} is text: posts are "
                                    "not augmented", help="remove augment"))
    tokenizer = reader.string("tokenizer")
    if tokenizer is not None and tokenizer.startswith((".", "/", "~")):
        tokenizer = str(spec_relative(tokenizer, reader.span("tokenizer")))
    draft.fields["tokenizer"] = tokenizer or DEFAULT_TOKENIZER
    if tokenizer is not None:
        draft.spans["tokenizer"] = reader.span("tokenizer")
    length = reader.positive_integer("max_length")
    if length is not None and not 8 <= length <= MAX_SEQUENCE_LENGTH:
        diags.add(InvalidValue(reader.span("max_length"), f"max_length is the tokens a post is "
                               f"cut or padded to, 8 to {MAX_SEQUENCE_LENGTH}; found {length}",
                               help="BERT-family models take at most 512; the paper's posts "
                                    "fit in 128"))
        length = None
    draft.fields["max_length"] = length or DEFAULT_MAX_LENGTH
    if length is not None:
        draft.spans["max_length"] = reader.span("max_length")
    if facts.name == "hatexplain":
        votes = reader.positive_integer(COMMUNITY_KEY)
        if votes is not None and votes > 3:
            diags.add(InvalidValue(reader.span(COMMUNITY_KEY), "community_votes counts "
                                   f"annotators of three, 1 to 3; found {votes}",
                                   help="2 (a majority) is the default"))
            votes = None
        draft.fields["community_votes"] = votes or DEFAULT_COMMUNITY_VOTES
        if votes is not None:
            draft.spans["community_votes"] = reader.span(COMMUNITY_KEY)


def _read_validation(reader: SectionReader, draft: DatasetDraft, diags: Diagnostics) -> None:
    share = reader.number("validation")
    if share is None:
        return
    if not 0.0 < share < 0.5:
        diags.add(InvalidValue(reader.span("validation"), f"validation is the share of the "
                               f"training images held out, in (0, 0.5); found {share:g}",
                               help="e.g. `validation = 0.1`"))
        return
    if draft.facts.name == "imagenet":
        diags.add(InconsistentStudy(reader.span("validation"), "imagenet streams its training "
                                    "images; a held-out validation split is not supported "
                                    "there yet", help="remove validation"))
        return
    draft.fields["validation"], draft.spans["validation"] = share, reader.span("validation")


def _read_image_size(reader: SectionReader, draft: DatasetDraft, diags: Diagnostics) -> None:
    size = reader.positive_integer("image_size")
    if size is None:
        return
    if size > MAX_IMAGE_SIZE:
        diags.add(InvalidValue(reader.span("image_size"), f"image_size must be at most "
                               f"{MAX_IMAGE_SIZE}, found {size}"))
        return
    if not draft.facts.resizable:
        diags.add(InconsistentStudy(reader.span("image_size"),
                                    f"{draft.facts.name} images are always "
                                    f"{draft.facts.image_size}x{draft.facts.image_size}",
                                    help="remove image_size (only imagenet, celeba, "
                                         "trifeature and imagefolder can be resized)"))
        return
    draft.fields["image_size"], draft.spans["image_size"] = size, reader.span("image_size")


def _read_generated_sizes(reader: SectionReader, draft: DatasetDraft,
                          diags: Diagnostics) -> None:
    defaults = draft.facts.default_generated_sizes
    for key, field, default in zip(("generated_train", "generated_test"),
                                   ("generated_train_size", "generated_test_size"),
                                   defaults or (None, None), strict=True):
        size = reader.positive_integer(key)
        if size is not None and size > MAX_GENERATED_IMAGES:
            diags.add(InvalidValue(reader.span(key), f"{key} must be at most "
                                   f"{MAX_GENERATED_IMAGES:,} images, found {size:,}"))
            size = None
        if size is not None and defaults is None:
            diags.add(InconsistentStudy(reader.span(key), f"{draft.facts.name} is not generated",
                                        help=f"{key} applies only to generated datasets "
                                             "(trifeature, synthetic)"))
        elif defaults is not None:
            draft.fields[field] = default if size is None else size
            if size is not None:
                draft.spans[field] = reader.span(key)
    combinations = reader.choice("combinations", COMBINATIONS)
    if defaults is not None and draft.facts.name not in COMBINATION_DATASETS:
        if combinations is not None:
            diags.add(InconsistentStudy(reader.span("combinations"),
                                        f"{draft.facts.name} has no feature combinations",
                                        help="combinations applies only to trifeature"))
    elif combinations is not None and defaults is None:
        diags.add(InconsistentStudy(reader.span("combinations"),
                                    f"{draft.facts.name} is not generated",
                                    help="combinations applies only to trifeature"))
    elif defaults is not None:
        draft.fields["generated_combinations"] = combinations or TRIFEATURE_DEFAULT_COMBINATIONS
        if combinations is not None:
            draft.spans["generated_combinations"] = reader.span("combinations")
        test = draft.fields["generated_test_size"]
        multiple = TRIFEATURE_BALANCED_MULTIPLE
        if draft.fields["generated_combinations"] == "balanced" and test % multiple:
            where = draft.spans.get("generated_test_size", draft.where)
            diags.add(InconsistentStudy(
                where, f"a balanced test split needs a multiple of {multiple} images (every "
                f"pair of feature values equally often), found {test}",
                help=f"use {max(1, round(test / multiple)) * multiple}, or "
                     "`combinations = independent`"))
    size = draft.fields["image_size"]
    for key, field in (("generated_train", "generated_train_size"),
                       ("generated_test", "generated_test_size")):
        count = draft.fields.get(field)
        if count is None:
            continue
        nbytes = count * draft.facts.channels * size * size
        if nbytes > MAX_GENERATED_BYTES:
            diags.add(InconsistentStudy(
                draft.spans.get(field, draft.where),
                f"{key} = {count:,} images of {draft.facts.channels}x{size}x{size} take "
                f"{nbytes / 2**30:,.0f} GiB; at most {MAX_GENERATED_BYTES / 2**30:.0f} GiB",
                help="generate fewer or smaller images"))
    train = draft.fields.get("generated_train_size")
    subset = draft.fields.get("train_subset")
    if train is not None and subset is not None and subset > train:
        diags.add(InconsistentStudy(draft.spans["train_subset"],
                                    f"train_subset {subset} is larger than the {train} "
                                    "generated training images"))


def _read_target(reader: SectionReader, draft: DatasetDraft, diags: Diagnostics) -> None:
    facts = draft.facts
    values = reader.names("target")
    target = values[0] if values and len(values) == 1 else None
    if values is not None and len(values) != 1:
        diags.add(InconsistentStudy(reader.span("target"), "target must be one attribute"))
        return
    if not facts.attribute_values:
        if target is not None:
            diags.add(InconsistentStudy(target[1], f"{facts.name} has no target attributes",
                                        help=f"{facts.name} is labelled by its classes; "
                                             "remove target"))
        draft.fields["class_names"] = facts.class_names
        draft.fields["num_classes"] = len(facts.class_names)
        return
    if target is None:
        if values is None:
            diags.add(MissingField(draft.where, f"{facts.name} needs a target attribute",
                                   help="e.g. `target = " + next(iter(facts.attribute_values))
                                        + "`; attributes: " + ", ".join(facts.attribute_values)
                                   if len(facts.attribute_values) <= 10 else
                                   "e.g. `target = Smiling`"))
        draft.fields["class_names"], draft.fields["num_classes"] = ("?", "?"), 2
        return
    name, span = target
    if name not in facts.attribute_values:
        diags.add(UnknownName(span, f"{facts.name} has no attribute '{name}'",
                              help=did_you_mean(name, facts.attribute_values, "attributes")))
        draft.fields["class_names"], draft.fields["num_classes"] = ("?", "?"), 2
        return
    draft.fields["target"], draft.spans["target"] = name, span
    draft.fields["class_names"] = facts.attribute_values[name]
    draft.fields["num_classes"] = len(facts.attribute_values[name])
    if draft.fields.get("balance") == "undersample" and draft.num_classes != 2:
        diags.add(InconsistentStudy(draft.spans["balance"],
                                    "undersample balances a binary target only",
                                    help=f"target '{name}' has {draft.num_classes} classes"))


def _add_sensitive(draft: DatasetDraft, attr: str, span: Span, diags: Diagnostics) -> bool:
    facts = draft.facts
    if not facts.attributes:
        diags.add(InconsistentStudy(span, f"{facts.name} has no sensitive attributes",
                                    help=_fairness_datasets()))
        return False
    if attr not in facts.attributes:
        diags.add(UnknownName(span, f"{facts.name} has no attribute '{attr}'",
                              help=did_you_mean(attr, facts.attributes, "attributes")))
        return False
    if attr == draft.fields.get("target"):
        diags.add(InconsistentStudy(span, f"'{attr}' is the target; it cannot also be sensitive"))
        return False
    if attr in draft.sensitive:
        diags.add(DuplicateDefinition(span, f"'{attr}' is listed twice"))
        return False
    draft.sensitive.append(attr)
    return True


def read_fairness(section: Section, draft: DatasetDraft, diags: Diagnostics) -> FairnessSpec | None:
    """The ``fairness { ... }`` section; adds its sensitive attributes to the dataset draft."""
    reader = SectionReader("fairness", section.entries, FAIRNESS_KEYS, diags)
    if not draft.facts.attributes:
        diags.add(InconsistentStudy(section.key_span,
                                    f"{draft.facts.name} has no sensitive attributes",
                                    help=_fairness_datasets()))
        return None
    named = reader.names("sensitive")
    sensitive: list[str] = []
    for attr, span in named or []:
        if attr in draft.sensitive or _add_sensitive(draft, attr, span, diags):
            sensitive.append(attr)
    if named is None:
        sensitive = list(draft.sensitive)
        if not sensitive:
            diags.add(MissingField(section.key_span, "fairness names no sensitive attribute",
                                   help="add `sensitive = ATTRIBUTE` here or in the dataset"))
    metrics = reader.choices("metrics", FAIRNESS_METRICS)
    if metrics == ():
        diags.add(InvalidValue(reader.span("metrics"), "metrics is empty",
                               help="name dpd and/or eod, or remove the fairness section"))
    metrics = FAIRNESS_METRICS if metrics is None else metrics
    multiclass = reader.choice("multiclass", ("one_vs_rest",))
    aggregate = reader.choice("aggregate", AGGREGATES)
    classes = draft.num_classes
    if multiclass is None and aggregate is not None:
        diags.add(InconsistentStudy(reader.span("aggregate"),
                                    "aggregate applies only with `multiclass = one_vs_rest`"))
    if classes > 2 and metrics and multiclass is None and not reader.has("multiclass"):
        target = draft.fields.get("target", "the label")
        diags.add(InconsistentStudy(section.key_span,
                                    f"target '{target}' has {classes} classes: fairness metrics "
                                    "need a multiclass strategy",
                                    help="add `multiclass = one_vs_rest` (per-class values "
                                         "averaged as in the paper; `aggregate = max` takes "
                                         "the worst class)"))
    if classes == 2 and multiclass is not None:
        diags.add(InconsistentStudy(reader.span("multiclass"),
                                    "the target is binary: there is no multiclass strategy to set",
                                    help="remove multiclass (and aggregate)"))
        multiclass = None
    fields: dict[str, Any] = {"sensitive": tuple(sensitive), "metrics": metrics,
                              "multiclass_aggregate": (aggregate or DEFAULT_AGGREGATE) if multiclass
                              else None}
    if not sensitive:
        return None
    return build_model(FairnessSpec, fields, {}, where=section.key_span, what="fairness",
                       diags=diags)


def build_dataset(draft: DatasetDraft, diags: Diagnostics) -> DatasetSpec | None:
    """The finished DatasetSpec (after the fairness section has added its attributes)."""
    fields = {**draft.fields, "sensitive": tuple(draft.sensitive)}
    if "?" in fields["class_names"]:
        return None  # the target was missing or unknown, already reported
    if not _attribute_rows_complete(draft, diags):
        return None
    return build_model(DatasetSpec, fields, draft.spans, where=draft.where, what="dataset",
                       diags=diags)


def _attribute_rows_complete(draft: DatasetDraft, diags: Diagnostics) -> bool:
    """imagefolder with sensitive attributes from its CSV: every test image has a row with a
    value for each (fairness is measured on the test split; the run would stop on the first
    image without one). The error, at ``attributes``, names the first few images missing."""
    path = draft.fields.get("attributes_file")
    if path is None or not draft.sensitive:
        return True
    try:
        read_attribute_table(Path(path)).check_rows(tuple(draft.sensitive), draft.test_files)
    except DataError as error:
        diags.add(InconsistentStudy(draft.spans["attributes_file"], str(error),
                                    help="add the rows (or the values), or drop the attribute "
                                         "from sensitive"))
        return False
    return True
