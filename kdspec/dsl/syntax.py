"""Typed syntax nodes of a ``.kdspec`` file, each carrying the span it was parsed from.

The parser turns lark's tree into these; the compiler reads only these, so it never touches lark
and every diagnostic it raises can point at the exact text a value came from.
"""

from __future__ import annotations

from dataclasses import dataclass

from kdspec.errors import Span


@dataclass(frozen=True)
class Number:
    """An integer or float literal: ``200``, ``0.1``, ``5e-4``."""

    value: int | float
    span: Span

    @property
    def is_int(self) -> bool:
        return isinstance(self.value, int)


@dataclass(frozen=True)
class String:
    """A double-quoted string, escapes already decoded."""

    value: str
    span: Span


@dataclass(frozen=True)
class Name:
    """A bare identifier used as a value: ``resnet20``, ``cosine``, ``true``."""

    value: str
    span: Span


@dataclass(frozen=True)
class Range:
    """An inclusive integer range: ``2..10`` is 2, 3, ..., 10."""

    start: int
    end: int
    span: Span


@dataclass(frozen=True)
class WeightedTerm:
    """One ``weight * term`` of a weighted sum."""

    weight: Number
    term: Name
    span: Span


@dataclass(frozen=True)
class WeightedSum:
    """``0.1 * hard + 0.9 * soft``: weights that always name the term they weight."""

    terms: tuple[WeightedTerm, ...]
    span: Span


@dataclass(frozen=True)
class ListValue:
    """``[a, b, 1..3]``: items may themselves be ranges (flattened by the compiler)."""

    items: tuple[Value, ...]
    span: Span


Value = Number | String | Name | Range | WeightedSum | ListValue


@dataclass(frozen=True)
class Assignment:
    """``key = value``."""

    key: str
    key_span: Span
    value: Value
    span: Span


@dataclass(frozen=True)
class Section:
    """``key [label] { entries }``, e.g. ``teacher resnet56 { recipe = cifar_sgd }``."""

    key: str
    key_span: Span
    label: Name | None
    entries: tuple[Entry, ...]
    span: Span


@dataclass(frozen=True)
class Directive:
    """``key "text"``; the only directive is ``include "path"``."""

    key: str
    key_span: Span
    argument: String
    span: Span


Entry = Assignment | Section | Directive


@dataclass(frozen=True)
class SpecFile:
    """One parsed file: its path as shown in messages, its text and its top-level entries."""

    path: str
    text: str
    entries: tuple[Entry, ...]


def describe_value(value: Value) -> str:
    """A few words for what kind of value was written, for "expected X, found Y" messages."""
    if isinstance(value, Number):
        return "an integer" if value.is_int else "a number"
    if isinstance(value, String):
        return "a string"
    if isinstance(value, Name):
        return f"the name '{value.value}'"
    if isinstance(value, Range):
        return "a range"
    if isinstance(value, WeightedSum):
        return "a weighted sum"
    return "a list"
