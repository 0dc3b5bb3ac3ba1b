"""``kdspec check SPEC... [--set KEY=VALUE] [--study NAME]``: compile each spec and say what it
holds, or show every error.

All files are checked before anything is printed: when any has a problem, every diagnostic of
every file goes to stderr (exit 2) and stdout stays empty; otherwise one line per file goes to
stdout (exit 0). A file that cannot be read at all, or whose studies need an optional package
that is not installed (``transformers`` for text studies: what ``kdspec run`` would stop on), is
one line on stderr (exit 1, or 2 when there are spec errors too). ``--set`` and ``--study``
apply to every file, as ``kdspec plan`` applies them.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter

from kdspec.catalogue.optional_packages import missing_packages
from kdspec.commands import spec_selection
from kdspec.commands.plan import stem_warnings
from kdspec.errors import Diagnostic, KdspecError, SpecError
from kdspec.plan import Plan


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("specs", nargs="+", metavar="SPEC", help=".kdspec files to check")
    spec_selection.add_arguments(parser)


def summarize(path: str, plan: Plan) -> str:
    """One line: the file, its studies and how many runs of each role they need."""
    if not plan.studies:
        return f"{path}: ok: no studies (a recipe library)"
    families = plan.families()
    named = [s.name for s in plan.studies if s.variant_of is None]
    named += [f"{block}: {len(members)} variants" for block, members in families.items()]
    names = ", ".join(named)
    roles = Counter(r.role for r in plan.runs)
    studies = "study" if len(plan.studies) == 1 else "studies"
    return (f"{path}: ok: {len(plan.studies)} {studies} ({names}), {len(plan.runs)} runs "
            f"({roles['teacher']} teacher, {roles['student']} student, "
            f"{roles['distilled']} distilled)")


def run(args: argparse.Namespace) -> int:
    lines: list[str] = []
    diagnostics: list[Diagnostic] = []
    sources: dict[str, str] = {}
    unreadable: list[str] = []
    warnings: list[str] = []
    for path in args.specs:
        try:
            plan = spec_selection.load(args, path)
        except SpecError as err:
            diagnostics.extend(err.diagnostics)
            sources.update(err.sources)
            continue
        except KdspecError as err:
            unreadable.append(f"kdspec check: error: {err}\n")
            continue
        missing = missing_packages(plan)
        if missing:
            unreadable.extend(f"kdspec check: error: {path}: {m.message()}\n" for m in missing)
            continue
        lines.append(summarize(path, plan))
        warnings.extend(f"{path}: {w}" for w in stem_warnings(plan))
    for line in [*unreadable, *(f"{w}\n" for w in warnings)]:
        sys.stderr.write(line)
    if diagnostics:
        raise SpecError(diagnostics, sources)
    if unreadable:
        return 1
    sys.stdout.write("".join(f"{line}\n" for line in lines))
    return 0
