"""Diagnostics of the ``.kdspec`` compiler: one class per kind of problem, a collector, and the
renderer the CLI prints.

Rendered form (one block per problem, sorted by file and position)::

    specs/cifar.kdspec:12:13: error: unknown architecture 'resnet99'
       |
    12 |   student resnet99 {
       |           ^^^^^^^^
       = help: did you mean 'resnet56'?
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

from kdspec.catalogue.suggestions import did_you_mean, edit_distance
from kdspec.errors import Diagnostic, Span, SpecError

__all__ = ["did_you_mean", "edit_distance"]


@dataclass(frozen=True)
class SyntaxProblem(Diagnostic):
    """The text is not a well-formed ``.kdspec`` file."""


@dataclass(frozen=True)
class UnknownName(Diagnostic):
    """A name (key, section, architecture, dataset, attribute, recipe, option) that is not known."""


@dataclass(frozen=True)
class WrongType(Diagnostic):
    """A value of the wrong kind, e.g. a string where a number belongs."""


@dataclass(frozen=True)
class InvalidValue(Diagnostic):
    """A value of the right kind outside what is allowed (temperature <= 0, weight > 1, ...)."""


@dataclass(frozen=True)
class DuplicateDefinition(Diagnostic):
    """A key, recipe or study given twice."""


@dataclass(frozen=True)
class MissingField(Diagnostic):
    """Something required is not given (a recipe's lr, a study's distill section, ...)."""


@dataclass(frozen=True)
class IncludeProblem(Diagnostic):
    """An include that cannot be read, forms a cycle, or brings more than recipes."""


@dataclass(frozen=True)
class InconsistentStudy(Diagnostic):
    """Values that are fine alone but not together (an attribute the dataset lacks, too few
    seeds for a Welch test, an architecture too big for the image size, ...)."""


class Diagnostics:
    """Collects every problem found, so that all of them are reported at once."""

    def __init__(self) -> None:
        self.items: list[Diagnostic] = []
        self._seen: set[Diagnostic] = set()

    def add(self, diagnostic: Diagnostic) -> None:
        """Record a problem; the same problem reached twice (a recipe two roles share) once."""
        if diagnostic not in self._seen:
            self._seen.add(diagnostic)
            self.items.append(diagnostic)

    def __len__(self) -> int:
        return len(self.items)

    def raise_if_any(self, sources: dict[str, str]) -> None:
        """Raise one SpecError with everything collected so far, if anything was."""
        if self.items:
            raise SpecError(list(self.items), sources)


def source_lines(text: str) -> list[str]:
    r"""The lines of a source as the parser counts them: split at ``\n`` only (``str.
    splitlines`` would also split at form feeds, U+0085 and U+2028, and show the wrong line)."""
    return [line.removesuffix("\r") for line in text.split("\n")]


def visible(text: str) -> str:
    r"""``text`` safe to print on a terminal: control and format characters (escape sequences,
    bidirectional overrides, line separators) written as ``\xNN`` / ``\uNNNN``; tabs kept."""
    out = []
    for ch in text:
        if ch == "\t" or not (unicodedata.category(ch)[0] in "CZ" and ch != " "):
            out.append(ch)
        else:
            code = ord(ch)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
    return "".join(out)


def _source_line(lines: list[str] | None, span: Span) -> str | None:
    if lines is None:
        return None
    if 1 <= span.line <= len(lines):
        return lines[span.line - 1]
    if span.line == len(lines) + 1:
        return ""
    return None


def render_diagnostic(diagnostic: Diagnostic, sources: dict[str, str],
                      lines: dict[str, list[str]] | None = None) -> str:
    """One diagnostic as ``path:line:col: error: message``, the source line and a caret line.
    ``lines``: the sources already split by :func:`source_lines` (filled in when missing)."""
    lines = {} if lines is None else lines
    span = diagnostic.span
    if span.path not in lines and span.path in sources:
        lines[span.path] = source_lines(sources[span.path])
    out = [f"{visible(span.path)}:{span.line}:{span.column}: {diagnostic.severity}: "
           f"{visible(diagnostic.message)}"]
    line_text = _source_line(lines.get(span.path), span)
    width = len(str(span.line))
    pad = " " * width
    if line_text is not None:
        start = max(span.column - 1, 0)
        if span.end_line == span.line:
            length = max(span.end_column - span.column, 1)
        else:
            length = max(len(line_text) - start, 1)
        # Keep tabs in the gutter so the caret lines up under tab-indented text; escaped
        # characters before the caret widen the prefix as they are shown.
        prefix = visible(line_text[:start])
        indent = "".join("\t" if ch == "\t" else " " for ch in prefix)
        indent += " " * (start - len(line_text[:start]))
        out.append(f"{pad} |")
        out.append(f"{span.line} | {visible(line_text)}".rstrip())
        out.append(f"{pad} | {indent}{'^' * length}")
    if diagnostic.help:
        out.append(f"{pad} = help: {visible(diagnostic.help)}")
    return "\n".join(out) + "\n"


def render_spec_error(err: SpecError) -> str:
    """Every diagnostic of ``err``, sorted, separated by blank lines, then a count."""
    lines: dict[str, list[str]] = {}
    blocks = [render_diagnostic(d, err.sources, lines) for d in err.diagnostics]
    n = len(err.diagnostics)
    summary = f"{n} error{'s' if n != 1 else ''} found\n"
    return "\n".join([*blocks, summary])
