"""From ``.kdspec`` text to a validated Plan: parse, gather includes, compile every study, and
merge their runs (a run two studies share, e.g. one teacher, appears once and both list it)."""

from __future__ import annotations

from dataclasses import replace

from kdspec.catalogue.suggestions import did_you_mean
from kdspec.dsl.diagnostics import Diagnostics, DuplicateDefinition, InvalidValue
from kdspec.dsl.overrides import apply_overrides
from kdspec.dsl.program import Program, load_program
from kdspec.dsl.recipes import RecipeBook
from kdspec.dsl.study import compile_study
from kdspec.dsl.validation import build_model
from kdspec.dsl.variants import Variant, expand_variants
from kdspec.errors import KdspecError, Span
from kdspec.plan import MAX_NAME_LENGTH, Plan, Run, Study

#: Room is left for a variant's ``-v<k>`` (at most 256 variants: ``-v256``).
MAX_STUDY_NAME = MAX_NAME_LENGTH - 10


def compile_source(text: str, path: str, *, overrides: tuple[str, ...] = (),
                   studies: tuple[str, ...] = ()) -> Plan:
    """Compile the spec ``text`` read from ``path``, with ``--set`` overrides applied first and
    only the ``--study`` studies kept; raises SpecError with every problem."""
    text = text.removeprefix("\ufeff")  # a byte-order mark is not part of the spec
    diags = Diagnostics()
    program = load_program(text, path, diags)
    if overrides:
        apply_overrides(program, overrides, diags, studies=studies)
    plan = compile_program(program, diags)
    diags.raise_if_any(program.sources)
    assert plan is not None
    if overrides:
        plan = plan.model_copy(update={"overrides": overrides})
    return select_studies(plan, studies) if studies else plan


def select_studies(plan: Plan, names: tuple[str, ...]) -> Plan:
    """The plan cut down to the studies named (a study block with ``vary``: all its variants)
    and the runs they need; KdspecError naming the studies there are for an unknown name."""
    known = {s.name for s in plan.studies} | set(plan.families())
    for name in names:
        if name not in known:
            raise KdspecError(f"--study {name}: no such study in {plan.source} "
                              f"({did_you_mean(name, sorted(known), 'studies')})")
    kept = tuple(s for s in plan.studies
                 if s.name in names or any(s in plan.families().get(n, ()) for n in names))
    needed = {rid for s in kept for rid in s.run_ids}
    return Plan(source=plan.source, spec_text=plan.spec_text, overrides=plan.overrides,
                studies=kept, runs=tuple(r for r in plan.runs if r.id in needed))


def compile_program(program: Program, diags: Diagnostics) -> Plan | None:
    """The plan of every study in ``program``, or None after reporting problems to ``diags``.

    A study block with ``vary`` contributes one study per variant (``NAME-v1``, ...). A study
    name is a NAME token, which has no ``-``, so no study block can take a variant's name."""
    recipes = RecipeBook(program.recipes, diags)
    studies: list[Study] = []
    runs: dict[str, Run] = {}
    taken: dict[str, Span] = {}
    for section in program.studies:
        assert section.label is not None
        name = section.label.value
        if name in taken:
            diags.add(DuplicateDefinition(section.label.span, f"study '{name}' is defined twice",
                                          help=f"first defined on line {taken[name].line}"))
            continue
        taken[name] = section.label.span
        if len(name) > MAX_STUDY_NAME:
            diags.add(InvalidValue(section.label.span, f"study name is {len(name)} characters; "
                                   f"at most {MAX_STUDY_NAME}",
                                   help="it names MLflow runs and report folders"))
            continue
        for variant in expand_variants(section, diags) or []:
            compiled = _compile_variant(variant, name, recipes, diags)
            if compiled is None:
                continue
            study, study_runs = compiled
            studies.append(study)
            for run in study_runs:
                runs.setdefault(run.id, run)
    if diags.items:
        return None
    where = next(iter(taken.values()), Span(1, 1, 1, 1, program.main_path))
    return build_model(Plan, {"source": program.main_path,
                              "spec_text": program.sources.get(program.main_path),
                              "studies": tuple(studies), "runs": tuple(runs.values())}, {},
                       where=where, what="plan", diags=diags)


def _compile_variant(variant: Variant, block: str, recipes: RecipeBook,
                     diags: Diagnostics) -> tuple[Study, tuple[Run, ...]] | None:
    """Compile one variant. Its problems are reported under the block's name, so one mistake
    outside ``vary`` is one diagnostic however many variants share it."""
    if not variant.settings:
        return compile_study(variant.section, recipes, diags)
    local = Diagnostics()
    compiled = compile_study(variant.section, recipes, local,
                             variant=(block, variant.settings))
    for d in local.items:
        diags.add(replace(d, message=d.message.replace(f"'{variant.name}'", f"'{block}'")))
    return compiled
