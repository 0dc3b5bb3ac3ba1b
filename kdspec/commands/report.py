"""``kdspec report SPEC``: the significance, disagreement and fairness report of each study.

SPEC is a ``.kdspec`` file or a plan JSON. The tracking URI is ``--tracking-uri``, else
``$MLFLOW_TRACKING_URI``, else the study's ``tracking { uri }``, else ``sqlite:///mlruns.db``.
Each study's report goes to ``reports/<spec name>/<study name>/`` (the spec's file name without
its extension: two specs with a study of the same name never overwrite each other's report);
with ``--out DIR`` to ``DIR`` for a one-study plan and ``DIR/<study name>/`` for several. The
variants of a study block with ``vary`` are studies of their own, and their comparison goes to
``reports/<spec name>/<block name>/comparison.*`` (``DIR/<block name>/`` with ``--out``).
With ``--set`` overrides the default folders get a suffix derived from them
(``reports/<spec>/<study>-set-1a2b3c4d/``), so reports of different overrides never overwrite
each other; the report's Setup names it. Progress lines go to stderr (none with ``--quiet``);
stdout stays empty.

Exit status: 0 when every study was reported and every one is complete; 3 when every study was
reported but some are incomplete (runs still training, interrupted or not started: their
verdicts are provisional, their report says so on its first line and is logged to MLflow under
``report-partial/``, never over a complete report); 1 when a study could not be reported.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from kdspec.commands import spec_selection
from kdspec.errors import ReportError
from kdspec.plan import Plan, Study, override_suffix
from kdspec.tracking import schema
from kdspec.tracking.reachability import DEFAULT_RETRIES, bound_http_retries, is_unreachable

if TYPE_CHECKING:
    from kdspec.analysis.study_analysis import StudyAnalysis

DEFAULT_REPORTS_DIR = Path("reports")
#: Every study was reported, and at least one is incomplete (its verdicts are provisional).
EXIT_INCOMPLETE = 3
#: Where `make ui` serves the MLflow UI of a local store.
LOCAL_UI = "http://127.0.0.1:5000"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """SPEC, --tracking-uri, --out, --no-log, --quiet."""
    parser.add_argument("spec", metavar="SPEC", help=".kdspec file or plan JSON")
    parser.add_argument("--tracking-retries", type=int, default=DEFAULT_RETRIES, metavar="N",
                        help="retries of one request to a tracking server before it counts as "
                             f"lost (default {DEFAULT_RETRIES}; MLflow's own is 7, ~4 minutes); "
                             "MLFLOW_HTTP_REQUEST_* variables, when set, win")
    parser.add_argument("--tracking-uri", default=None,
                        help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, the spec's, "
                             "or sqlite:///mlruns.db)")
    parser.add_argument("--out", type=Path, default=None,
                        help="output folder (default: reports/<spec name>/<study name>/)")
    parser.add_argument("--no-log", action="store_true",
                        help="do not log the report and summary metrics back to MLflow")
    parser.add_argument("--quiet", action="store_true", help="print nothing but errors")
    spec_selection.add_arguments(parser)


def default_root(spec: Path) -> Path:
    """``reports/<spec name>/``: the spec's file name without its extension."""
    return DEFAULT_REPORTS_DIR / spec.stem


def output_dir(plan: Plan, study: Study, out: Path | None, *, spec: Path) -> Path:
    """Where one study's report goes (see the module docstring)."""
    if out is None:
        return default_root(spec) / f"{study.name}{override_suffix(plan.overrides)}"
    return out if len(plan.studies) == 1 else out / study.name


def comparison_dir(plan: Plan, block: str, out: Path | None, *, spec: Path) -> Path:
    """Where the comparison of the variants of study block ``block`` goes."""
    if out is None:
        return default_root(spec) / f"{block}{override_suffix(plan.overrides)}"
    return out / block


def run(args: argparse.Namespace) -> int:
    """Report every study of the plan: 0 when all were reported and complete, 3 when all were
    reported and some are incomplete, else 1."""
    # Imported here so that `kdspec --help` does not pay for mlflow and matplotlib.
    from kdspec.analysis.flagged_runs import flagged_run_line
    from kdspec.analysis.report_builder import build_report
    from kdspec.analysis.store_reader import RunRead
    from kdspec.tracking.schema import resolve_tracking_uri
    from kdspec.tracking.store_uri import is_server_uri

    bound_http_retries(args.tracking_retries)
    plan = spec_selection.load(args)
    failures: list[str] = []
    # Per tracking URI, the runs already read: studies sharing a teacher download it once.
    read_by_store: dict[str, dict[str, RunRead]] = {}
    analyses: dict[str, StudyAnalysis] = {}
    incomplete: list[str] = []
    for study in plan.studies:
        uri = resolve_tracking_uri(args.tracking_uri, study)
        target = output_dir(plan, study, args.out, spec=Path(args.spec))
        try:
            try:
                result = build_report(plan, study, tracking_uri=uri, out_dir=target,
                                      log_to_mlflow=not args.no_log,
                                      already_read=read_by_store.setdefault(uri, {}))
            except Exception as err:
                if is_unreachable(err):
                    raise ReportError(f"cannot reach the MLflow store {uri} "
                                      f"({str(err).splitlines()[0][:200]})") from err
                raise
        except ReportError as err:
            if len(plan.studies) == 1:
                raise
            failures.append(str(err))
            sys.stderr.write(f"kdspec report: error: {err}\n")
            continue
        analyses[study.name] = result.analysis
        if not result.complete:
            incomplete.append(study.name)
        for warning in result.warnings:
            sys.stderr.write(f"kdspec report: warning: {warning}\n")
        if not args.quiet:
            used = len(result.analysis.records.runs)
            folder = (schema.ARTIFACT_REPORT_DIR if result.complete
                      else schema.ARTIFACT_PARTIAL_REPORT_DIR)
            logged = (f"; logged to MLflow run {result.logged_run_id} ({folder}/)"
                      if result.logged_run_id
                      else "; not logged to MLflow (no parent run found)" if not args.no_log
                      else "")
            state = "" if result.complete else (
                f" {result.analysis.records.state.headline().lower()}; verdicts provisional:")
            sys.stderr.write(f"kdspec report: {study.name}:{state} {used} of "
                             f"{len(study.run_ids)} runs used -> {target / 'report.html'}"
                             f"{logged}\n")
            if result.summary_view:
                server = is_server_uri(uri)
                base = uri.rstrip("/") if server else LOCAL_UI
                sys.stderr.write(f"  seed summaries in the MLflow UI"
                                 f"{'' if server else ' (make ui)'}: "
                                 f"{base}/{result.summary_view}\n")
            for problem in result.analysis.records.problems:
                sys.stderr.write(f"  {problem.kind}: {problem.describe()}\n")
            for run in result.analysis.records.flagged:
                sys.stderr.write(f"  flagged: {flagged_run_line(run)}\n")
    comparison_failed = _write_block_reports(plan, analyses, args)
    if failures and len(failures) == len(plan.studies):
        raise ReportError("no study could be reported")
    if failures or comparison_failed:
        return 1
    return EXIT_INCOMPLETE if incomplete else 0


def _write_block_reports(plan: Plan, analyses: dict[str, StudyAnalysis],
                         args: argparse.Namespace) -> bool:
    """Per vary block with a reported variant: the variants' comparison and, when the block
    varies the distillation method, its methods report. True when a file could not be
    written."""
    from kdspec.analysis.methods_block import block_ledgers
    from kdspec.analysis.methods_report import write_methods_report
    from kdspec.analysis.variant_comparison import compare_variants, write_comparison

    failed = False
    for block, variants in plan.families().items():
        if not any(v.name in analyses for v in variants):
            continue
        folder = comparison_dir(plan, block, args.out, spec=Path(args.spec))
        comparison = compare_variants(block, variants, analyses)
        written = _write_or_say(block, "the comparison",
                                partial(write_comparison, comparison, folder))
        if written is None:
            failed = True
            continue
        _say(args, f"{block}: {len(comparison.rows)} of {len(variants)} variants compared "
                   f"-> {written}")
        ledgers = block_ledgers(block, variants, analyses)
        if not ledgers:
            continue
        written = _write_or_say(block, "the methods report",
                                partial(write_methods_report, ledgers, folder))
        if written is None:
            failed = True
            continue
        arms = sum(len(ledger.rows) for ledger in ledgers)
        _say(args, f"{block}: {arms} method arms, claims after Holm over the block -> {written}")
    return failed


def _write_or_say(block: str, what: str, write: Callable[[], tuple[Path, ...]]) -> Path | None:
    """The HTML file ``write`` wrote, or None after saying on stderr why it could not."""
    try:
        return write()[1]
    except OSError as err:
        sys.stderr.write(f"kdspec report: error: {block}: cannot write {what} ({err})\n")
        return None


def _say(args: argparse.Namespace, line: str) -> None:
    if not args.quiet:
        sys.stderr.write(f"kdspec report: {line}\n")
