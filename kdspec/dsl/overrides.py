"""``--set KEY=VALUE``: change any key a spec can write, from the command line, before the spec
is compiled (so an override is checked by exactly the diagnostics a written key is).

KEY is a dotted path:

- ``seeds=5``, ``note="..."``: a key of every study (of ``--study`` when given);
- ``distill.temperatures=[2, 4]``, ``analysis.alpha=0.01``, ``dataset.generated_train=1000``,
  ``teacher.epochs=2``, ``runtime.precision=fp32``: a key of a section of every study (the
  section is added when the study has none);
- ``teacher.arch=resnet56`` / ``student.arch=lenet5``: the model a study names;
- ``distill.method=dkd``, ``distill.dkd.beta=6``: a method, and a key of a method's section
  (added when the study has none);
- ``STUDY.KEY...``: only the study named ``STUDY``;
- ``recipe.NAME.KEY=VALUE``: a key of the recipe ``NAME``.

VALUE is written as in a spec (``5``, ``[2, 4]``, ``2..10``, ``fp32``, ``"text"``,
``0.1 * hard + 0.9 * soft``) and parsed by the spec's own grammar; its diagnostics point at the
override (``--set:1:...``).
"""

from __future__ import annotations

from dataclasses import replace

from kdspec.dsl.diagnostics import Diagnostics, InvalidValue, UnknownName
from kdspec.dsl.methods import SECTION_KEYS
from kdspec.dsl.parser import parse
from kdspec.dsl.program import Program
from kdspec.dsl.syntax import Assignment, Name, Section
from kdspec.errors import Span

MSG_FORM = "an override is KEY=VALUE, e.g. seeds=5 or distill.temperatures=[2, 4]"
#: The sections of a study an override may reach into (models by their label: see ARCH).
STUDY_SECTIONS = ("dataset", "teacher", "student", "distill", "fairness", "individual_fairness",
                  "analysis", "runtime", "tracking")
ARCH = "arch"


def _source_span(source: str, text: str) -> Span:
    return Span(1, 1, 1, len(text) + 1, source)


def wrapped_override(key: str, value: str) -> str:
    """The value where a spec would hold it: ``study __set { KEY = VALUE }`` (what a
    diagnostic of the override shows, with its caret)."""
    return f"study __set {{ {key} = {value.strip()} }}"


def parse_override(text: str, index: int, diags: Diagnostics
                   ) -> tuple[list[str], Assignment] | None:
    """``(key path, assignment)`` of one ``KEY=VALUE``; the value parsed by the spec grammar
    from a source named ``--set`` (the ``index``-th override) so that errors point at it."""
    source = f"--set[{index}]"
    key, sep, value = text.partition("=")
    path = [part.strip() for part in key.strip().split(".")]
    if not sep or not value.strip() or not all(path):
        diags.add(InvalidValue(_source_span(source, text), f"cannot read --set {text!r}",
                               help=MSG_FORM))
        return None
    wrapped = wrapped_override(path[-1], value)
    spec = parse(wrapped, source)
    section = spec.entries[0]
    assert isinstance(section, Section)
    assignment = section.entries[0]
    assert isinstance(assignment, Assignment)
    return path, replace(assignment, key=path[-1])


def _set_entry(section: Section, assignment: Assignment) -> Section:
    """``section`` with ``assignment`` replacing the key of the same name, or appended."""
    entries = [e for e in section.entries
               if not (isinstance(e, Assignment) and e.key == assignment.key)]
    return replace(section, entries=(*entries, assignment))


def _set_in_section(section: Section, sub: str, assignment: Assignment) -> Section:
    """``section`` with ``assignment`` set in its sub-section ``sub`` (``distill`` > ``dkd``),
    which is added when missing."""
    inner = next((e for e in section.entries if isinstance(e, Section) and e.key == sub), None)
    if inner is None:
        added = Section(key=sub, key_span=assignment.key_span, label=None,
                        entries=(assignment,), span=assignment.span)
        return replace(section, entries=(*section.entries, added))
    return replace(section, entries=tuple(_set_entry(e, assignment) if e is inner else e
                                          for e in section.entries))


def _set_in_study(study: Section, path: list[str], assignment: Assignment,
                  diags: Diagnostics) -> Section:
    if len(path) == 1:
        return _set_entry(study, assignment)
    head = path[0]
    if len(path) == 3 and head == "distill" and path[1] in SECTION_KEYS:
        distill = next((e for e in study.entries if isinstance(e, Section) and e.key == head),
                       None)
        if distill is None:
            diags.add(UnknownName(assignment.span, f"study '{_name(study)}' has no distill "
                                  "section to set a method's key in"))
            return study
        return replace(study, entries=tuple(
            _set_in_section(e, path[1], assignment) if e is distill else e
            for e in study.entries))
    if head not in STUDY_SECTIONS or len(path) != 2:
        diags.add(UnknownName(assignment.span, f"--set cannot reach '{'.'.join(path)}'",
                              help=f"a study key, SECTION.KEY with SECTION one of "
                                   f"{', '.join(STUDY_SECTIONS)}, or distill.METHOD.KEY"))
        return study
    entries = list(study.entries)
    for i, entry in enumerate(entries):
        if isinstance(entry, Section) and entry.key == head:
            if path[1] == ARCH and head in ("teacher", "student"):
                value = assignment.value
                if not isinstance(value, Name):
                    diags.add(InvalidValue(value.span, f"{head}.arch wants a model name"))
                    return study
                entries[i] = replace(entry, label=value)
            else:
                entries[i] = _set_entry(entry, assignment)
            return replace(study, entries=tuple(entries))
    if path[1] == ARCH:
        diags.add(UnknownName(assignment.span, f"study '{_name(study)}' has no {head} to "
                              "change the model of"))
        return study
    added = Section(key=head, key_span=assignment.key_span, label=None,
                    entries=(assignment,), span=assignment.span)
    return replace(study, entries=(*entries, added))


def _name(section: Section) -> str:
    return section.label.value if section.label is not None else ""


def apply_overrides(program: Program, overrides: tuple[str, ...], diags: Diagnostics,
                    *, studies: tuple[str, ...] = ()) -> None:
    """Rewrite ``program``'s studies and recipes in place with ``overrides`` (``studies``: the
    ``--study`` selection, which unqualified keys are limited to)."""
    names = [_name(s) for s in program.studies]
    for index, text in enumerate(overrides):
        key, _, value = text.partition("=")
        program.sources[f"--set[{index}]"] = wrapped_override(key.split(".")[-1].strip(), value)
        parsed = parse_override(text, index, diags)
        if parsed is None:
            continue
        path, assignment = parsed
        if path[0] == "recipe":
            if len(path) != 3 or path[1] not in program.recipes:
                diags.add(UnknownName(assignment.span, f"--set {text!r}: no recipe "
                                      f"'{path[1] if len(path) > 1 else ''}'",
                                      help="recipe.NAME.KEY=VALUE, NAME one of "
                                           + ", ".join(sorted(program.recipes))))
                continue
            program.recipes[path[1]] = _set_entry(program.recipes[path[1]], assignment)
            continue
        targets = names if not studies else [n for n in names if n in studies]
        if path[0] in names and len(path) > 1:
            targets, path = [path[0]], path[1:]
        program.studies = [_set_in_study(s, path, assignment, diags) if _name(s) in targets
                           else s for s in program.studies]
