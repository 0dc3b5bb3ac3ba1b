"""``--set KEY=VALUE`` and ``--study NAME``, shared by every command that reads a spec: the
overrides are applied before the spec compiles (same diagnostics as a written key) and
recorded in the plan (``Plan.overrides``: the parent run's plan.json and ``kdspec.overrides``
tag); ``--study`` keeps the named studies and the runs they need."""

from __future__ import annotations

import argparse

from kdspec.plan import Plan


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE",
                        help="change a key of the spec before it compiles, e.g. seeds=2, "
                             "distill.temperatures=[2, 4], analysis.alpha=0.01, "
                             "STUDY.seeds=3, recipe.NAME.epochs=5 (repeatable)")
    parser.add_argument("--study", dest="studies", action="append", default=[],
                        metavar="NAME", help="only this study (or study block with vary); "
                        "repeatable")


def load(args: argparse.Namespace, spec: str | None = None) -> Plan:
    """The plan of ``args.spec`` (or ``spec``) with the overrides and the study selection."""
    from kdspec.dsl import load_plan

    return load_plan(spec if spec is not None else args.spec,
                     overrides=tuple(args.overrides), studies=tuple(args.studies))
