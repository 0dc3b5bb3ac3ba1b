"""From ``.kdspec`` text to a validated Plan: parse, gather includes, compile every study, and
merge their runs (a run two studies share, e.g. one teacher, appears once and both list it)."""

from __future__ import annotations

from kdspec.dsl.diagnostics import Diagnostics, DuplicateDefinition
from kdspec.dsl.program import Program, load_program
from kdspec.dsl.recipes import RecipeBook
from kdspec.dsl.study import compile_study
from kdspec.dsl.validation import build_model
from kdspec.errors import Span
from kdspec.plan import Plan, Run, Study


def compile_source(text: str, path: str) -> Plan:
    """Compile the spec ``text`` read from ``path``; raises SpecError with every problem."""
    diags = Diagnostics()
    program = load_program(text, path, diags)
    plan = compile_program(program, diags)
    diags.raise_if_any(program.sources)
    assert plan is not None
    return plan


def compile_program(program: Program, diags: Diagnostics) -> Plan | None:
    """The plan of every study in ``program``, or None after reporting problems to ``diags``."""
    recipes = RecipeBook(program.recipes, diags)
    studies: list[Study] = []
    runs: dict[str, Run] = {}
    seen: dict[str, Span] = {}
    for section in program.studies:
        assert section.label is not None
        name = section.label.value
        if name in seen:
            diags.add(DuplicateDefinition(section.label.span, f"study '{name}' is defined twice",
                                          help=f"first defined on line {seen[name].line}"))
            continue
        seen[name] = section.label.span
        compiled = compile_study(section, recipes, diags)
        if compiled is None:
            continue
        study, study_runs = compiled
        studies.append(study)
        for run in study_runs:
            runs.setdefault(run.id, run)
    if diags.items:
        return None
    where = next(iter(seen.values()), Span(1, 1, 1, 1, program.main_path))
    return build_model(Plan, {"source": program.main_path, "studies": tuple(studies),
                              "runs": tuple(runs.values())}, {}, where=where, what="plan",
                       diags=diags)
