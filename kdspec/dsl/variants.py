"""``vary { ... }``: one study block that stands for several, one per combination of values.

Inside a study, ``vary`` names sections and, in each, keys with a list of values::

    vary {
      student { lr = [0.001, 0.003]  epochs = [20, 40] }
      distill { loss = [0.2 * hard + 0.8 * soft, 0.5 * hard + 0.5 * soft] }
    }

expands to 2 x 2 x 2 = 8 variants ``NAME-v1`` ... ``NAME-v8`` (the cartesian product, the first
key varying slowest; a study name cannot contain ``-``, so no other study can be called so). Each variant is the study block with each varied key set in its section
(replacing the value written there, or added to it), so every rule of the language applies to
it unchanged. Runs no varied key touches (typically the teachers) have the same content-hashed
id in every variant and are trained once; a run that does change (the students) gets its own id.

Only keys that change what is trained can vary: recipe keys of ``teacher`` and ``student``, the
``loss``, ``t_squared``, ``method`` and ``logit_standardization`` of ``distill``, and the sizes
and generation options of ``dataset``.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace

from kdspec.dsl.diagnostics import (
    Diagnostics,
    DuplicateDefinition,
    InvalidValue,
    UnknownName,
    WrongType,
    did_you_mean,
)
from kdspec.dsl.recipes import RECIPE_KEYS
from kdspec.dsl.syntax import (
    Assignment,
    Entry,
    ListValue,
    Name,
    Number,
    Section,
    String,
    Value,
    WeightedSum,
)

#: The sections a ``vary`` block may name and the keys each may vary.
VARIABLE_KEYS: dict[str, tuple[str, ...]] = {
    "teacher": tuple(RECIPE_KEYS),
    "student": tuple(RECIPE_KEYS),
    "distill": ("loss", "t_squared", "method", "logit_standardization"),
    "dataset": ("train_subset", "test_subset", "generated_train", "generated_test",
                "image_size", "augment", "combinations"),
}
#: Why some keys people try cannot vary.
FIXED_KEY_HELP: dict[str, str] = {
    "temperatures": "temperatures are already a grid: list them in distill",
    "seeds": "every variant uses the study's seeds",
    "root": "where files live does not change a run",
    "download": "where files live does not change a run",
    "target": "a different target is a different study: write a second study block",
    "sensitive": "sensitive attributes change only the analysis: list them all in the dataset",
}
#: A study expanding to more variants than this is a mistake (a list meant as a range).
MOST_VARIANTS = 256


@dataclass(frozen=True)
class Variant:
    """One expanded study block: its name, the settings that define it (``"student.lr"`` ->
    ``"0.001"``, in the order written) and the study section to compile."""

    name: str
    settings: tuple[tuple[str, str], ...]
    section: Section


@dataclass(frozen=True)
class _Axis:
    """One varied key and its values."""

    section: str
    key: str
    values: tuple[Value, ...]

    @property
    def label(self) -> str:
        return f"{self.section}.{self.key}"


def value_text(value: Value) -> str:
    """How a value reads in a spec: ``0.001``, ``adam``, ``0.2 * hard + 0.8 * soft``."""
    if isinstance(value, Number):
        return repr(value.value)
    if isinstance(value, Name):
        return value.value
    if isinstance(value, String):
        return f'"{value.value}"'
    if isinstance(value, WeightedSum):
        return " + ".join(f"{value_text(t.weight)} * {t.term.value}" for t in value.terms)
    if isinstance(value, ListValue):
        return "[" + ", ".join(value_text(v) for v in value.items) + "]"
    return f"{value.start}..{value.end}"


def without_vary(study: Section) -> Section:
    """The study block with its ``vary`` section removed (what every variant starts from)."""
    return replace(study, entries=tuple(e for e in study.entries if e.key != "vary"))


def find_vary(study: Section) -> list[Entry]:
    return [e for e in study.entries if e.key == "vary"]


def expand_variants(study: Section, diags: Diagnostics) -> list[Variant] | None:
    """The variants of a study block: one (itself, no settings) without ``vary``; None after
    reporting a ``vary`` that names nothing usable. Keys that cannot vary are reported and the
    others still expanded, so the values in their lists are checked in the same pass."""
    assert study.label is not None
    name = study.label.value
    blocks = find_vary(study)
    if not blocks:
        return [Variant(name, (), study)]
    for extra in blocks[1:]:
        diags.add(DuplicateDefinition(extra.key_span, "duplicate vary block in study "
                                      f"'{name}'", help="put every varied key in one vary block"))
    block = blocks[0]
    if not isinstance(block, Section) or block.label is not None:
        diags.add(WrongType(block.key_span, "vary is a block of sections",
                            help="write `vary { student { lr = [0.001, 0.01] } }`"))
        return None
    if not any(isinstance(e, Section) and e.entries for e in block.entries) \
            and not any(isinstance(e, Assignment) for e in block.entries):
        diags.add(InvalidValue(block.key_span, "vary names no key",
                               help="e.g. `vary { student { lr = [0.001, 0.01] } }`"))
        return None
    axes = _read_axes(block, diags)
    if not axes:
        return None  # every key written was reported
    count = 1
    for axis in axes:
        count *= len(axis.values)
    if count > MOST_VARIANTS:
        sizes = " x ".join(str(len(a.values)) for a in axes)
        diags.add(InvalidValue(block.key_span, f"vary expands study '{name}' to {count} "
                               f"variants ({sizes}); at most {MOST_VARIANTS}",
                               help="vary fewer keys at once, or split the sweep over specs"))
        return None
    base = without_vary(study)
    width = len(str(count))
    variants = []
    for index, combination in enumerate(itertools.product(*(a.values for a in axes)), start=1):
        section = base
        for axis, value in zip(axes, combination, strict=True):
            section = _set_key(section, axis, value)
        label = f"{name}-v{index:0{width}d}"
        variants.append(Variant(
            label, tuple((a.label, value_text(v)) for a, v in zip(axes, combination,
                                                                  strict=True)),
            replace(section, label=Name(label, study.label.span))))
    return variants


def _read_axes(block: Section, diags: Diagnostics) -> list[_Axis]:
    axes: list[_Axis] = []
    seen_sections: set[str] = set()
    for entry in block.entries:
        if entry.key not in VARIABLE_KEYS:
            diags.add(UnknownName(entry.key_span, f"'{entry.key}' cannot be varied",
                                  help=FIXED_KEY_HELP.get(entry.key) or did_you_mean(
                                      entry.key, VARIABLE_KEYS, "sections that can vary")))
            continue
        if not isinstance(entry, Section) or entry.label is not None:
            diags.add(WrongType(entry.key_span, f"'{entry.key}' in vary is a block of keys",
                                help=f"write `{entry.key} {{ KEY = [value, value] }}`"))
            continue
        if entry.key in seen_sections:
            diags.add(DuplicateDefinition(entry.key_span,
                                          f"'{entry.key}' appears twice in vary"))
            continue
        seen_sections.add(entry.key)
        axes.extend(_read_keys(entry, diags))
    return axes


def _read_keys(section: Section, diags: Diagnostics) -> list[_Axis]:
    allowed = VARIABLE_KEYS[section.key]
    axes: list[_Axis] = []
    seen: set[str] = set()
    for entry in section.entries:
        if entry.key not in allowed:
            diags.add(UnknownName(entry.key_span, f"'{entry.key}' of {section.key} cannot be "
                                  "varied", help=FIXED_KEY_HELP.get(entry.key) or did_you_mean(
                                      entry.key, allowed, f"keys of {section.key} that can vary")))
            continue
        if not isinstance(entry, Assignment):
            diags.add(WrongType(entry.key_span, f"vary wants `{entry.key} = [value, ...]`",
                                help="a block cannot vary; name a value, e.g. "
                                     "`schedule = [cosine, constant]`"))
            continue
        if entry.key in seen:
            diags.add(DuplicateDefinition(entry.key_span, f"'{section.key}.{entry.key}' is "
                                          "varied twice"))
            continue
        seen.add(entry.key)
        value = entry.value
        if not isinstance(value, ListValue):
            diags.add(WrongType(value.span, f"vary needs a list of values for '{entry.key}'",
                                help=f"write `{entry.key} = [{value_text(value)}, ...]`"))
            continue
        if not value.items:
            diags.add(InvalidValue(value.span, f"'{section.key}.{entry.key}' varies over no "
                                   "values", help="list at least one value"))
            continue
        texts = [value_text(v) for v in value.items]
        repeated = [v for i, v in enumerate(value.items) if texts[i] in texts[:i]]
        for item in repeated:
            diags.add(DuplicateDefinition(item.span, f"{value_text(item)} is listed twice"))
        if not repeated:
            axes.append(_Axis(section.key, entry.key, value.items))
    return axes


def _set_key(study: Section, axis: _Axis, value: Value) -> Section:
    """``study`` with ``axis.key = value`` in its ``axis.section`` section (replaced or added).
    A study without that section is left alone: compiling it reports the missing section."""
    entries = []
    for entry in study.entries:
        if isinstance(entry, Section) and entry.key == axis.section:
            kept = tuple(e for e in entry.entries if e.key != axis.key)
            assignment = Assignment(axis.key, value.span, value, value.span)
            entry = replace(entry, entries=(*kept, assignment))
        entries.append(entry)
    return replace(study, entries=tuple(entries))
