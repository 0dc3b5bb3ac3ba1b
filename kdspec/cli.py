"""The ``kdspec`` command: the only module that knows all three stages.

Each subcommand lives in its own ``kdspec/commands/<name>.py`` with ``add_arguments(parser)`` and
``run(args) -> int``; this module builds the parser, dispatches, and turns kdspec's own errors
into one clear message (spec errors: diagnostics and exit 2; everything else: one line, exit 1).
Tracebacks are shown only with ``--debug``.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import os
import sys
from collections.abc import Sequence

from kdspec import __version__
from kdspec.errors import KdspecError, SpecError

COMMANDS: dict[str, str] = {
    "check": "validate .kdspec files and report every error at once",
    "plan": "show the runs a spec expands to (--json for the machine-readable plan)",
    "run": "train the plan's runs with MLflow tracking; resumes and reuses finished runs",
    "status": "where each study stands, read from the tracking store only (writes nothing)",
    "submit": "write (and with --submit, sbatch) the Slurm array job of a plan, a task per shard",
    "report": "write the significance, disagreement and fairness report from MLflow",
    "list": "the architectures and datasets a spec can name, including plugins' and timm's",
    "init": "write a commented spec for a dataset and a teacher/student pair",
}


@functools.cache
def build_parser() -> argparse.ArgumentParser:
    """The command-line parser, built once per process (``main`` may be called many times, as
    the tests and the fuzz do; an argparse parser can parse any number of argument lists)."""
    parser = argparse.ArgumentParser(
        prog="kdspec",
        description="Declarative knowledge-distillation studies tracked in MLflow.",
    )
    parser.add_argument("--version", action="version", version=f"kdspec {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, help_text in COMMANDS.items():
        module = importlib.import_module(f"kdspec.commands.{name}")
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                       help="show tracebacks on errors")
        module.add_arguments(p)
        p.set_defaults(_module=module)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    debug = bool(getattr(args, "debug", False))
    try:
        return int(args._module.run(args))
    except SpecError as err:
        if debug:
            raise
        from kdspec.dsl.diagnostics import render_spec_error

        sys.stderr.write(render_spec_error(err))
        return err.exit_code
    except KdspecError as err:
        if debug:
            raise
        sys.stderr.write(f"kdspec {args.command}: error: {err}\n")
        return err.exit_code
    except BrokenPipeError:
        # `kdspec plan spec | head`: the reader left; say nothing more to it.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        sys.stderr.write(f"kdspec {args.command}: interrupted\n")
        return 130
    except Exception as err:  # a bug or a third-party failure: one line, traceback on --debug
        if debug:
            raise
        first_line = (str(err).strip().splitlines() or [""])[0]
        sys.stderr.write(
            f"kdspec {args.command}: error: {type(err).__name__}: {first_line}\n"
            f"  (rerun with --debug for the traceback)\n"
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
