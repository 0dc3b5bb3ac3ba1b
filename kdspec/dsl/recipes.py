"""Training recipes: named ``recipe`` blocks, their inheritance, and role overrides.

A recipe block and a role block (``teacher resnet56 { ... }``) accept the same keys. Either may
name a base with ``recipe = NAME``; its own keys then override the base's, key by key (a
``schedule`` is replaced whole). Only the role's merged result must be complete: a shared recipe
may leave ``epochs`` to the roles that use it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kdspec.dsl.diagnostics import (
    Diagnostics,
    InconsistentStudy,
    InvalidValue,
    MissingField,
    UnknownName,
    did_you_mean,
)
from kdspec.dsl.reader import Key, SectionReader
from kdspec.dsl.syntax import Name, Section
from kdspec.dsl.validation import build_model
from kdspec.errors import Span
from kdspec.plan import Recipe, Schedule

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("constant", "cosine", "step", "multistep", "linear")

RECIPE_KEYS: dict[str, Key] = {
    "recipe": Key(),
    "epochs": Key(),
    "batch_size": Key(),
    "optimizer": Key(),
    "lr": Key(),
    "momentum": Key(),
    "nesterov": Key(),
    "weight_decay": Key(),
    "schedule": Key("either"),
}
#: Stands for a recipe key that was written but is invalid (already reported).
INVALID = object()
#: A recipe may build on a chain of at most this many bases.
MAX_RECIPE_DEPTH = 64

SCHEDULE_KEYS: dict[str, Key] = {"milestones": Key(), "gamma": Key(), "warmup_epochs": Key(),
                                 "warmup_steps": Key()}


@dataclass(frozen=True)
class Layer:
    """The recipe keys one block sets (value and span), and the base it names, if any."""

    fields: dict[str, tuple[Any, Span]]
    base: Name | None


def read_layer(block: Section, what: str, diags: Diagnostics,
               extra_keys: dict[str, Key] | None = None) -> Layer:
    """Read the recipe keys of ``block`` (a recipe or a role block; ``extra_keys``: other keys
    the block may hold, read elsewhere)."""
    reader = SectionReader(what, block.entries, {**RECIPE_KEYS, **(extra_keys or {})}, diags)
    fields: dict[str, tuple[Any, Span]] = {}
    getters = {
        "epochs": reader.integer,
        "batch_size": reader.positive_integer,
        "lr": reader.number,
        "momentum": reader.number,
        "weight_decay": reader.number,
        "nesterov": reader.boolean,
    }
    for key, getter in getters.items():
        if reader.has(key):
            value = getter(key)
            fields[key] = (INVALID if value is None else value, reader.span(key))
    if reader.has("optimizer"):
        optimizer = reader.choice("optimizer", OPTIMIZERS)
        fields["optimizer"] = (INVALID if optimizer is None else optimizer,
                               reader.span("optimizer"))
    if reader.has("schedule"):
        schedule = _read_schedule(reader, diags)
        fields["schedule"] = (INVALID if schedule is None else schedule, reader.span("schedule"))
    base = reader.value("recipe")
    if base is not None and not isinstance(base, Name):
        diags.add(InvalidValue(base.span, "'recipe' must name a recipe",
                               help="write `recipe = NAME` with a recipe declared in this file "
                                    "or an included one"))
        base = None
    return Layer(fields, base)


def _read_schedule(reader: SectionReader, diags: Diagnostics) -> Schedule | None:
    section = reader.section("schedule")
    if section is None:
        kind = reader.choice("schedule", SCHEDULES)
        if kind is None:
            return None
        if kind in ("step", "multistep"):
            diags.add(MissingField(reader.span("schedule"), f"a {kind} schedule needs milestones",
                                   help=f"write `schedule {kind} {{ milestones = [100, 150] }}`"))
            return None
        return Schedule.model_validate({"kind": kind})
    if section.label is None or section.label.value not in SCHEDULES:
        span = section.key_span if section.label is None else section.label.span
        word = "" if section.label is None else section.label.value
        diags.add(UnknownName(span, f"unknown schedule '{word}'" if word else "schedule kind missing",
                              help=did_you_mean(word, SCHEDULES, "schedules")))
        return None
    inner = SectionReader(f"schedule {section.label.value}", section.entries, SCHEDULE_KEYS, diags)
    fields: dict[str, Any] = {"kind": section.label.value}
    spans: dict[str, Span] = {}
    milestones = inner.numbers("milestones")
    if milestones is not None:
        values = [v for v, _ in milestones]
        if any(v != int(v) for v in values) or values != sorted(set(values)):
            diags.add(InvalidValue(inner.span("milestones"),
                                   "milestones must be increasing whole epochs"))
            return None
        fields["milestones"] = tuple(int(v) for v in values)
        spans["milestones"] = inner.span("milestones")
    elif section.label.value in ("step", "multistep"):
        diags.add(MissingField(section.label.span,
                               f"a {section.label.value} schedule needs milestones",
                               help="add `milestones = [100, 150]`"))
        return None
    for key, getter in (("gamma", inner.number), ("warmup_epochs", inner.integer),
                        ("warmup_steps", inner.integer)):
        value = getter(key)
        if value is not None:
            fields[key], spans[key] = value, inner.span(key)
    return build_model(Schedule, fields, spans, where=section.span, what="schedule", diags=diags)


class RecipeBook:
    """Every declared recipe, merged with its bases once (cycles and unknown bases reported)."""

    def __init__(self, recipes: dict[str, Section], diags: Diagnostics) -> None:
        self.diags = diags
        self.layers: dict[str, Layer] = {}
        self.merged: dict[str, dict[str, tuple[Any, Span]] | None] = {}
        for name, block in recipes.items():
            self.layers[name] = read_layer(block, f"recipe '{name}'", diags)
        for name in recipes:
            self.resolve(name, [])

    def resolve(self, name: str, chain: list[str]) -> dict[str, tuple[Any, Span]] | None:
        """The fields of recipe ``name`` with its bases applied; None if a base is broken.

        The chain of bases is walked in a loop, not by recursion, so a long chain or a long
        cycle is a diagnostic and never a RecursionError; each recipe is resolved once."""
        walk: list[str] = []
        current = name
        inherited: dict[str, tuple[Any, Span]] | None
        while True:
            if current in self.merged:  # resolved before (None if broken)
                inherited = self.merged[current]
                break
            if current in walk or current in chain:
                ring = walk[walk.index(current):] if current in walk else [*chain, *walk]
                self._fail(walk, InconsistentStudy(
                    self._base_span(walk[-1]), f"recipe cycle: {' -> '.join([*ring, current])}",
                    help="a recipe cannot be based on itself"))
                return None
            if len(walk) >= MAX_RECIPE_DEPTH:
                self._fail(walk, InconsistentStudy(
                    self._base_span(walk[-1]), f"recipe '{name}' builds on a chain of more "
                    f"than {MAX_RECIPE_DEPTH} recipes", help="flatten the chain of bases"))
                return None
            walk.append(current)
            base = self.layers[current].base
            if base is None:
                inherited = {}
                break
            if base.value not in self.layers:
                self._fail(walk, UnknownName(base.span, f"unknown recipe '{base.value}'",
                                             help=did_you_mean(base.value, self.layers,
                                                               "recipes")))
                return None
            current = base.value
        if inherited is None:
            self._fail(walk, None)
            return None
        merged = dict(inherited)
        for recipe in reversed(walk):
            merged = {**merged, **self.layers[recipe].fields}
            self.merged[recipe] = merged
        return self.merged[name]

    def _base_span(self, recipe: str) -> Span:
        base = self.layers[recipe].base
        assert base is not None
        return base.span

    def _fail(self, walk: list[str], diagnostic: InconsistentStudy | UnknownName | None) -> None:
        """Report ``diagnostic`` and mark every recipe of the walk as broken."""
        if diagnostic is not None:
            self.diags.add(diagnostic)
        for recipe in walk:
            self.merged.setdefault(recipe, None)

    def apply(self, layer: Layer, chain: list[str]) -> dict[str, tuple[Any, Span]] | None:
        """``layer`` over its base (if any)."""
        if layer.base is None:
            return dict(layer.fields)
        base = layer.base.value
        if base not in self.layers:
            self.diags.add(UnknownName(layer.base.span, f"unknown recipe '{base}'",
                                       help=did_you_mean(base, self.layers, "recipes")))
            return None
        inherited = self.resolve(base, chain)
        if inherited is None:
            return None
        return {**inherited, **layer.fields}

    def build(self, layer: Layer, where: Span, what: str) -> Recipe | None:
        """The complete Recipe of a role block, or None after reporting what is wrong."""
        merged = self.apply(layer, [])
        if merged is None:
            return None
        fields = {k: v for k, (v, _) in merged.items() if v is not INVALID}
        spans = {k: s for k, (_, s) in merged.items()}
        bad = frozenset(k for k, (v, _) in merged.items() if v is INVALID)
        schedule = fields.get("schedule")
        epochs = fields.get("epochs")
        if isinstance(schedule, Schedule) and schedule.milestones and isinstance(epochs, int) \
                and schedule.milestones[-1] >= epochs:
            # Point at the role's own text when it set one of the two (it usually caused it).
            span = spans["epochs"] if spans["epochs"].path == where.path \
                and spans["schedule"].path != where.path else spans["schedule"]
            self.diags.add(InconsistentStudy(span,
                                             f"milestone {schedule.milestones[-1]} is not before "
                                             f"the last epoch ({epochs} epochs)",
                                             help="milestones are epochs at which lr is scaled"))
            return None
        return build_model(Recipe, fields, spans, where=where, what=f"{what} recipe",
                           diags=self.diags, known_bad=bad,
                           missing_help="set `{field} = ...` here or in the recipe it names")
