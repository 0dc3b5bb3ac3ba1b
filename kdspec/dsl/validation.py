"""Build a plan model from compiled fields, mapping a Pydantic ``ValidationError`` back to the
spec text each field came from, in kdspec's own words (users never see Pydantic's messages)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from kdspec.dsl.diagnostics import Diagnostics, InvalidValue, MissingField, WrongType
from kdspec.errors import Span

ModelT = TypeVar("ModelT", bound=BaseModel)

_BOUNDS = {
    "greater_than": (">", "gt"),
    "greater_than_equal": (">=", "ge"),
    "less_than": ("<", "lt"),
    "less_than_equal": ("<=", "le"),
}


def _number(value: Any) -> Any:
    """Floats as the user would write them: 1.0 -> 1, 0.5 -> 0.5."""
    return f"{value:g}" if isinstance(value, float) else value


def explain_validation_error(error: Mapping[str, Any], field: str) -> str:
    """One Pydantic error entry as a kdspec message about ``field``."""
    kind = str(error.get("type", ""))
    ctx = error.get("ctx") or {}
    found = _number(error.get("input"))
    if kind in _BOUNDS:
        symbol, name = _BOUNDS[kind]
        return f"'{field}' must be {symbol} {_number(ctx.get(name))}, found {found}"
    if kind == "literal_error":
        return f"'{field}' must be {ctx.get('expected')}, found {found}"
    if kind == "string_too_long":
        return (f"'{field}' must be at most {ctx.get('max_length')} characters, found "
                f"{len(str(error.get('input', '')))}")
    if kind == "string_pattern_mismatch":
        return f"'{field}' must be letters, digits, '_' and '-' (starting with a letter or '_')"
    if kind == "missing":
        return f"'{field}' is required"
    if kind.endswith("_type") or kind.endswith("_parsing"):
        return f"'{field}' has the wrong type"
    return f"'{field}' has an invalid value"


def build_model(
    model: type[ModelT],
    fields: Mapping[str, Any],
    spans: Mapping[str, Span],
    *,
    where: Span,
    what: str,
    diags: Diagnostics,
    known_bad: frozenset[str] = frozenset(),
    missing_help: str = "set `{field} = ...`",
) -> ModelT | None:
    """``model(**fields)``, or None after adding one diagnostic per Pydantic error.

    An error about a field points at ``spans[field]`` (the value as written); an error about the
    whole model, or a field the spec did not write (a default), points at ``where``. Fields in
    ``known_bad`` were written but already reported as wrong; they are not "missing" too.
    """
    try:
        return model.model_validate(dict(fields))
    except ValidationError as err:
        for error in err.errors():
            loc = error.get("loc") or ()
            field = str(loc[0]) if loc else ""
            span = spans.get(field, where)
            if field in known_bad:
                continue
            if not field:
                diags.add(InvalidValue(where, f"invalid {what}"))
            elif error.get("type") == "missing":
                diags.add(MissingField(where, f"{what} has no '{field}'",
                                       help=missing_help.format(field=field)))
            elif str(error.get("type", "")).endswith("_type"):
                diags.add(WrongType(span, explain_validation_error(error, field)))
            else:
                diags.add(InvalidValue(span, explain_validation_error(error, field)))
        return None
