"""Gather a spec and the files it includes into one program: its studies and every recipe.

Top level of a file: ``include "path"``, ``recipe NAME { ... }`` and ``study NAME { ... }``.
An include path is relative to the including file; included files may hold recipes and further
includes, never studies. Including a file twice (a diamond) reads it once; a cycle is an error.
A spec reads only the files it names, and only ``.kdspec`` regular files of at most a megabyte
(:mod:`kdspec.dsl.source_files`); includes nest at most ``MAX_INCLUDE_DEPTH`` deep.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from kdspec.dsl.diagnostics import (
    Diagnostics,
    DuplicateDefinition,
    IncludeProblem,
    MissingField,
    UnknownName,
    did_you_mean,
)
from kdspec.dsl.parser import parse
from kdspec.dsl.source_files import SourceFileError, read_spec_file
from kdspec.dsl.syntax import Assignment, Directive, Section, SpecFile
from kdspec.errors import SpecError

TOP_LEVEL = ("include", "recipe", "study")
#: Includes nest at most this deep (a chain deeper than this is a mistake, or an attack).
MAX_INCLUDE_DEPTH = 32
TOP_LEVEL_HELP = 'a file holds `include "file"`, `recipe NAME { ... }` and `study NAME { ... }`'


@dataclass
class Program:
    """The studies of the main file and the recipes visible to them, with every source text."""

    main_path: str
    studies: list[Section] = field(default_factory=list)
    recipes: dict[str, Section] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)


def load_program(text: str, path: str, diags: Diagnostics) -> Program:
    """Parse ``text`` (the file at ``path``) and everything it includes.

    Syntax errors of the main file raise at once; problems in included files are added to
    ``diags`` so that they are reported with the rest.
    """
    program = Program(main_path=path, sources={path: text})
    main = parse(text, path)
    _collect(program, main, _identity(path), [], diags, is_main=True)
    return program


def _identity(path: str) -> str:
    """What makes two include paths the same file (resolved absolute path, or the label)."""
    if path.startswith("<"):
        return path
    try:
        return str(Path(path).resolve())
    except (OSError, ValueError):  # a NUL byte, a loop of symlinks: reading it reports why
        return path


def _collect(program: Program, spec: SpecFile, identity: str, stack: list[str],
             diags: Diagnostics, *, is_main: bool) -> None:
    stack = [*stack, identity]
    for entry in spec.entries:
        if isinstance(entry, Directive) and entry.key == "include":
            _include(program, spec, entry, stack, diags)
        elif isinstance(entry, Section) and entry.key in ("recipe", "study"):
            if entry.label is None:
                diags.add(MissingField(entry.key_span, f"{entry.key} has no name",
                                       help=f"write `{entry.key} NAME {{ ... }}`"))
            elif entry.key == "recipe":
                _add_recipe(program, entry, diags)
            elif not is_main:
                diags.add(IncludeProblem(entry.key_span,
                                         "an included file may hold only recipes",
                                         help=f"move study '{entry.label.value}' to the spec "
                                              "that includes this file"))
            else:
                program.studies.append(entry)
        elif entry.key in TOP_LEVEL:
            form = "a value" if isinstance(entry, Assignment) else "this form"
            diags.add(UnknownName(entry.key_span, f"'{entry.key}' cannot take {form} here",
                                  help=TOP_LEVEL_HELP))
        else:
            diags.add(UnknownName(entry.key_span, f"unknown top-level item '{entry.key}'",
                                  help=did_you_mean(entry.key, TOP_LEVEL, TOP_LEVEL_HELP)
                                  if _close(entry.key) else TOP_LEVEL_HELP))


def _close(word: str) -> bool:
    return did_you_mean(word, TOP_LEVEL, "").startswith("did you mean")


def _add_recipe(program: Program, recipe: Section, diags: Diagnostics) -> None:
    assert recipe.label is not None
    name = recipe.label.value
    if name in program.recipes:
        first = program.recipes[name].label
        assert first is not None
        diags.add(DuplicateDefinition(recipe.label.span, f"recipe '{name}' is defined twice",
                                      help=f"first defined at {first.span.path}:{first.span.line}"))
        return
    program.recipes[name] = recipe


def _include(program: Program, spec: SpecFile, directive: Directive, stack: list[str],
             diags: Diagnostics) -> None:
    target = directive.argument.value
    base = "" if spec.path.startswith("<") else os.path.dirname(spec.path)
    shown = os.path.normpath(os.path.join(base, target)) if target else target
    identity = _identity(shown)
    span = directive.argument.span
    if identity in stack:
        cycle = " -> ".join([*(_short(p) for p in stack[stack.index(identity):]), _short(shown)])
        diags.add(IncludeProblem(span, f"include cycle: {cycle}",
                                 help="a file cannot include itself, directly or indirectly"))
        return
    if any(_identity(p) == identity for p in program.sources):
        return  # already read through another include
    if len(stack) > MAX_INCLUDE_DEPTH:
        diags.add(IncludeProblem(span, f"includes are nested more than {MAX_INCLUDE_DEPTH} "
                                 "deep", help="include the recipe libraries from one file"))
        return
    try:
        text = read_spec_file(shown)
    except SourceFileError as err:
        diags.add(IncludeProblem(span, f"included file '{target}' {err.reason}",
                                 help=f"looked for {shown}; an include names a .kdspec file, "
                                      "relative to the including file or absolute"))
        return
    program.sources[shown] = text
    try:
        included = parse(text, shown)
    except SpecError as err:
        for d in err.diagnostics:
            diags.add(d)
        return
    _collect(program, included, identity, stack, diags, is_main=False)


def _short(identity: str) -> str:
    return os.path.basename(identity) if os.sep in identity else identity
