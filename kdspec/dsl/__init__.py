"""The ``.kdspec`` language: grammar, typed syntax, compiler to a ``Plan``, and diagnostics.

``load_plan`` and ``compile_text`` are the entry points; both raise ``SpecError`` (with every
problem, sorted) for a bad spec. See docs/language.md for the language itself.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError

from kdspec.dsl.compiler import compile_source
from kdspec.errors import KdspecError
from kdspec.plan import Plan

__all__ = ["compile_text", "load_plan"]


def compile_text(text: str, path: str = "<string>") -> Plan:
    """Compile spec text; ``path`` is shown in messages and anchors relative includes."""
    return compile_source(text, path)


def load_plan(path: str | Path) -> Plan:
    """The plan of a ``.kdspec`` file, or of a plan JSON (``*.json``, as written by
    ``kdspec plan --json``) so that the runtime can run from the JSON alone."""
    shown = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        reason = getattr(err, "strerror", None) or "not UTF-8 text"
        raise KdspecError(f"cannot read {shown}: {reason}") from None
    if shown.endswith(".json"):
        try:
            return Plan.from_json(text)
        except ValidationError as err:
            first = err.errors()[0]
            where = ".".join(str(p) for p in first.get("loc", ())) or "top level"
            raise KdspecError(f"{shown} is not a kdspec plan JSON ({err.error_count()} "
                              f"problem(s), first at {where})") from None
    return compile_text(text, shown)
