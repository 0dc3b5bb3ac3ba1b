"""The ``.kdspec`` language: grammar, typed syntax, compiler to a ``Plan``, and diagnostics.

``load_plan`` and ``compile_text`` are the entry points; both raise ``SpecError`` (with every
problem, sorted) for a bad spec. See docs/language.md for the language itself.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import ValidationError

from kdspec.catalogue.plan_checks import plan_problems, study_problems
from kdspec.dsl.compiler import compile_source
from kdspec.dsl.source_files import PLAN_SUFFIX, SourceFileError, read_spec_or_plan
from kdspec.dsl.validation import explain_validation_error
from kdspec.errors import KdspecError
from kdspec.plan import Plan, Study

__all__ = ["compile_text", "load_plan", "plan_from_json"]

#: At most this many problems of a plan JSON are listed.
LISTED_PROBLEMS = 10


def compile_text(text: str, path: str = "<string>", *, overrides: tuple[str, ...] = (),
                 studies: tuple[str, ...] = ()) -> Plan:
    """Compile spec text; ``path`` is shown in messages and anchors relative includes;
    ``overrides`` (``--set KEY=VALUE``) are applied first, ``studies`` (``--study``) kept."""
    return compile_source(text, path, overrides=overrides, studies=studies)


def plan_from_json(text: str, shown: str) -> Plan:
    """A plan JSON validated as strictly as a compiled spec: its types and bounds (Pydantic),
    its run ids against their content, and the catalogue's facts; KdspecError names each
    problem by its place in the JSON, in the compiler's words."""
    try:
        plan = Plan.model_validate_json(text)
    except ValidationError as err:
        # The catalogue's facts first: an unknown architecture also breaks the run ids, and
        # the architecture is what the reader has to fix.
        problems = _study_problems(text)
        for error in err.errors():
            loc = [str(p) for p in error.get("loc", ())]
            where = ".".join(loc) or "top level"
            field = next((p for p in reversed(loc) if not p.isdigit()), "plan")
            if error.get("type") == "value_error":
                reason = str(error.get("msg", "")).removeprefix("Value error, ")
            elif error.get("type") == "json_invalid":
                reason = f"not valid JSON ({error.get('msg')})"
            else:
                reason = explain_validation_error(error, field)
            problems.append(f"{where}: {reason}")
        raise KdspecError(_problem_list(shown, problems)) from None
    problems = plan_problems(plan)
    if problems:
        raise KdspecError(_problem_list(shown, problems))
    return plan


def _study_problems(text: str) -> list[str]:
    """The catalogue problems of each study of a plan JSON that is valid as a study alone."""
    try:
        studies = json.loads(text).get("studies", [])
    except (ValueError, AttributeError):
        return []
    problems = []
    for index, raw in enumerate(studies if isinstance(studies, list) else []):
        try:
            study = Study.model_validate(raw)
        except ValidationError:
            continue
        problems += study_problems(index, study)
    return problems


def _problem_list(shown: str, problems: list[str]) -> str:
    head = f"{shown} is not a valid kdspec plan ({len(problems)} problem(s))"
    more = (f"\n  ... and {len(problems) - LISTED_PROBLEMS} more"
            if len(problems) > LISTED_PROBLEMS else "")
    return head + "".join(f"\n  {p}" for p in problems[:LISTED_PROBLEMS]) + more


def load_plan(path: str | Path, *, overrides: tuple[str, ...] = (),
              studies: tuple[str, ...] = ()) -> Plan:
    """The plan of a ``.kdspec`` file, or of a plan JSON (``*.json``, as written by
    ``kdspec plan --json``) so that the runtime can run from the JSON alone. ``overrides``
    (``--set``) need the spec's text: a plan JSON is already compiled."""
    shown = str(path)
    try:
        text = read_spec_or_plan(path)
    except SourceFileError as err:
        raise KdspecError(f"cannot read {shown}: {err.reason} (give a .kdspec spec, or a plan "
                          ".json from `kdspec plan --json`)") from None
    if shown.endswith(PLAN_SUFFIX):
        if overrides:
            raise KdspecError(f"--set changes a spec before it is compiled; {shown} is a plan "
                              "JSON (already compiled): give the .kdspec file")
        plan = plan_from_json(text, shown)
        if studies:
            from kdspec.dsl.compiler import select_studies
            return select_studies(plan, studies)
        return plan
    return compile_text(text, shown, overrides=overrides, studies=studies)
