"""kdspec's error types. Every failure a user can cause comes out as one of these, never as a
raw lark, Pydantic or torch traceback (the CLI shows tracebacks only with ``--debug``).
Imports nothing else from kdspec.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, order=True)
class Span:
    """A region of a source file: 1-based line and column, end exclusive."""

    line: int
    column: int
    end_line: int
    end_column: int
    path: str = ""


class KdspecError(Exception):
    """Base of every error kdspec raises on purpose."""

    exit_code = 1


@dataclass(frozen=True)
class Diagnostic:
    """One problem in a spec, with where it is and an optional hint."""

    span: Span
    message: str
    help: str | None = None
    severity: str = "error"


class SpecError(KdspecError):
    """One or more problems in a ``.kdspec`` file; exit code 2. ``diagnostics`` is sorted."""

    exit_code = 2

    def __init__(self, diagnostics: list[Diagnostic], sources: dict[str, str] | None = None):
        self.diagnostics = sorted(
            diagnostics, key=lambda d: (d.span.path, d.span.line, d.span.column, d.message)
        )
        #: path -> source text, so the renderer can show the offending lines.
        self.sources = dict(sources or {})
        first = self.diagnostics[0] if self.diagnostics else None
        summary = f"{first.span.path}:{first.span.line}:{first.span.column}: {first.message}" \
            if first else "invalid spec"
        super().__init__(summary)


class DataError(KdspecError):
    """A dataset cannot be found or read; the message names the path and how to get the data."""


class TrackingError(KdspecError):
    """The MLflow store cannot be reached or written."""


class OutOfSpace(KdspecError):
    """A disk that kdspec writes checkpoints or artifacts to is full: the plan stops at the
    first refused write (training more runs would only fail them at their end)."""


class DataParallelFailure(KdspecError):
    """A data-parallel group failed on one process: every process stops (they share each step,
    so none can go on alone)."""


class ReportError(KdspecError):
    """The analysis cannot produce a report (e.g. no runs of the study in the store)."""
