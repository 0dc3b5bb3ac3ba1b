"""Read the entries of one section with types: unknown and duplicate keys, wrong value kinds and
unknown options become diagnostics, and every getter returns None when a value is absent or bad.

A section declares its keys up front (``Key`` says whether each is a ``key = value`` or a nested
``key { ... }``), so a misspelt key gets a did-you-mean against exactly the keys that fit there.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from kdspec.dsl.diagnostics import (
    Diagnostics,
    DuplicateDefinition,
    InvalidValue,
    UnknownName,
    WrongType,
    did_you_mean,
)
from kdspec.dsl.syntax import (
    Assignment,
    Directive,
    Entry,
    ListValue,
    Name,
    Number,
    Range,
    Section,
    String,
    Value,
    describe_value,
)
from kdspec.errors import Span

#: A list or range longer than this is a mistake (and would make a plan too large to run).
LONGEST_LIST = 10_000

BOOLEANS = {"true": True, "false": False}


@dataclass(frozen=True)
class Key:
    """A key allowed in a section: ``value`` (``key = ...``), ``section`` (``key [label] {}``), or
    ``either`` (both forms, e.g. ``schedule = cosine`` / ``schedule multistep { ... }``)."""

    form: Literal["value", "section", "either"] = "value"


class SectionReader:
    """Typed access to one section's entries, reporting every problem to ``diags``."""

    def __init__(self, what: str, entries: tuple[Entry, ...], keys: Mapping[str, Key],
                 diags: Diagnostics, hints: Mapping[str, str] | None = None) -> None:
        self.what = what
        self.diags = diags
        #: Help for keys people often write that are not keys here (e.g. ``alpha``).
        self.hints = dict(hints or {})
        self.entries: dict[str, Assignment | Section] = {}
        for entry in entries:
            self._admit(entry, keys)

    def _admit(self, entry: Entry, keys: Mapping[str, Key]) -> None:
        if isinstance(entry, Directive):
            if entry.key in keys:
                self.diags.add(WrongType(entry.argument.span, f"expected '=' after '{entry.key}'",
                                         help=f"write `{entry.key} = \"{entry.argument.value}\"`"))
            elif entry.key == "include":
                self.diags.add(UnknownName(entry.key_span, f"include is not allowed in {self.what}",
                                           help="include only at the top level of a file"))
            else:
                self.diags.add(UnknownName(entry.key_span, f"unknown key '{entry.key}' in "
                                           f"{self.what}",
                                           help=did_you_mean(entry.key, keys, "allowed keys")))
            return
        if entry.key not in keys:
            self.diags.add(UnknownName(entry.key_span, f"unknown key '{entry.key}' in {self.what}",
                                       help=self.hints.get(entry.key)
                                       or did_you_mean(entry.key, keys, "allowed keys")))
            return
        form = keys[entry.key].form
        if form == "value" and isinstance(entry, Section):
            self.diags.add(WrongType(entry.key_span, f"'{entry.key}' takes a value, not a block",
                                     help=f"write `{entry.key} = ...`"))
            return
        if form == "section" and isinstance(entry, Assignment):
            self.diags.add(WrongType(entry.key_span, f"'{entry.key}' is a section, not a value",
                                     help=f"write `{entry.key} {{ ... }}`"))
            return
        if entry.key in self.entries:
            first = self.entries[entry.key].key_span
            self.diags.add(DuplicateDefinition(entry.key_span,
                                               f"duplicate key '{entry.key}' in {self.what}",
                                               help=f"first set on line {first.line}"))
            return
        self.entries[entry.key] = entry

    def has(self, key: str) -> bool:
        return key in self.entries

    def span(self, key: str) -> Span:
        entry = self.entries[key]
        return entry.value.span if isinstance(entry, Assignment) else entry.span

    def section(self, key: str) -> Section | None:
        entry = self.entries.get(key)
        return entry if isinstance(entry, Section) else None

    def value(self, key: str) -> Value | None:
        entry = self.entries.get(key)
        return entry.value if isinstance(entry, Assignment) else None

    def _wrong(self, key: str, value: Value, expected: str) -> None:
        self.diags.add(WrongType(value.span, f"'{key}' must be {expected}, "
                                 f"found {describe_value(value)}"))

    def integer(self, key: str) -> int | None:
        value = self.value(key)
        if value is None:
            return None
        if isinstance(value, Number) and value.is_int:
            return int(value.value)
        self._wrong(key, value, "an integer")
        return None

    def positive_integer(self, key: str) -> int | None:
        number = self.integer(key)
        if number is not None and number <= 0:
            self.diags.add(InvalidValue(self.span(key), f"'{key}' must be > 0, found {number}"))
            return None
        return number

    def number(self, key: str) -> float | None:
        value = self.value(key)
        if value is None:
            return None
        if isinstance(value, Number):
            return float(value.value)
        self._wrong(key, value, "a number")
        return None

    def boolean(self, key: str) -> bool | None:
        value = self.value(key)
        if value is None:
            return None
        if isinstance(value, Name) and value.value in BOOLEANS:
            return BOOLEANS[value.value]
        self._wrong(key, value, "true or false")
        return None

    def string(self, key: str) -> str | None:
        """A string; a bare name is accepted too (``experiment = cifar10_kd``)."""
        value = self.value(key)
        if value is None:
            return None
        if isinstance(value, String | Name):
            return value.value
        self._wrong(key, value, "a string")
        return None

    def choice(self, key: str, options: tuple[str, ...]) -> str | None:
        """One of ``options``, written as a name."""
        value = self.value(key)
        if value is None:
            return None
        return self._option(key, value, options)

    def _option(self, key: str, value: Value, options: tuple[str, ...]) -> str | None:
        if not isinstance(value, Name | String):
            self._wrong(key, value, "one of " + ", ".join(options))
            return None
        if value.value not in options:
            self.diags.add(UnknownName(value.span, f"unknown {key} '{value.value}'",
                                       help=did_you_mean(value.value, options, f"{key} options")))
            return None
        return value.value

    def _items(self, key: str) -> tuple[Value, ...] | None:
        """The items of a list value, or a single value as a one-item tuple."""
        value = self.value(key)
        if value is None:
            return None
        return value.items if isinstance(value, ListValue) else (value,)

    def choices(self, key: str, options: tuple[str, ...]) -> tuple[str, ...] | None:
        """Several of ``options``: one name or a list of names, no repeats (``[]`` is allowed)."""
        items = self._items(key)
        if items is None:
            return None
        chosen: list[str] = []
        for item in items:
            option = self._option(key, item, options)
            if option is None:
                continue
            if option in chosen:
                self.diags.add(DuplicateDefinition(item.span, f"'{option}' is listed twice"))
                continue
            chosen.append(option)
        return tuple(chosen)

    def numbers(self, key: str) -> list[tuple[float, Span]] | None:
        """A number, a range or a list mixing numbers and ranges, flattened in order."""
        items = self._items(key)
        if items is None:
            return None
        out: list[tuple[float, Span]] = []
        for item in items:
            if isinstance(item, Number):
                out.append((float(item.value), item.span))
            elif isinstance(item, Range):
                if item.end < item.start:
                    self.diags.add(InvalidValue(item.span, f"empty range {item.start}..{item.end}",
                                                help="a range counts up: write the smaller end first"))
                elif item.end - item.start >= LONGEST_LIST:
                    self.diags.add(InvalidValue(item.span, "range is too long",
                                                help=f"at most {LONGEST_LIST} values"))
                else:
                    out.extend((float(v), item.span) for v in range(item.start, item.end + 1))
            else:
                self._wrong(key, item, "a number, a range or a list of them")
                return None
        if len(out) > LONGEST_LIST:
            self.diags.add(InvalidValue(self.span(key), f"'{key}' has too many values",
                                        help=f"at most {LONGEST_LIST}"))
            return None
        return out

    def names(self, key: str) -> list[tuple[str, Span]] | None:
        """One name/string or a list of them, with the span of each."""
        items = self._items(key)
        if items is None:
            return None
        out: list[tuple[str, Span]] = []
        for item in items:
            if isinstance(item, Name | String):
                out.append((item.value, item.span))
            else:
                self._wrong(key, item, "a name or a list of names")
        return out


def spec_relative(value: str, span: Span) -> Path:
    """A path written in a spec: relative to the spec's folder (or the working folder for a
    spec read from a string), user-expanded, absolute."""
    base = Path(span.path).parent if not span.path.startswith("<") else Path()
    return (base / Path(value).expanduser()).resolve()
