"""``kdspec run SPEC``: train every run of a plan with MLflow tracking (see docs/running.md)."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from kdspec.catalogue.optional_packages import check_optional_packages
from kdspec.commands import spec_selection
from kdspec.errors import KdspecError
from kdspec.plan import Plan
from kdspec.runtime.run_options import RunOptions, parse_shard, shard_from_env
from kdspec.runtime.stop_request import StopRequest
from kdspec.tracking.ownership import (
    CLAIM_SETTLE_S,
    DEFAULT_LEASE_TIMEOUT_S,
    heartbeat_interval_s,
    lease_settings_problem,
)
from kdspec.tracking.reachability import DEFAULT_RETRIES, bound_http_retries

if TYPE_CHECKING:  # the runtime (torch) is imported only when a plan runs
    from kdspec.runtime.executor import Executor

#: The environment variable that sets the default of ``--claim-settle`` (the tests shorten it).
CLAIM_SETTLE_VARIABLE = "KDSPEC_CLAIM_SETTLE"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("spec", help="a .kdspec file, or a plan .json from `kdspec plan --json`")
    parser.add_argument("--tracking-retries", type=int, default=DEFAULT_RETRIES, metavar="N",
                        help="retries of one request to a tracking server before it counts as "
                             f"lost (default {DEFAULT_RETRIES}; MLflow's own is 7, ~4 minutes); "
                             "MLFLOW_HTTP_REQUEST_* variables, when set, win")
    parser.add_argument("--tracking-uri", default=None,
                        help="MLflow store (default: $MLFLOW_TRACKING_URI, the spec's "
                             "tracking { uri }, else sqlite:///mlruns.db here)")
    parser.add_argument("--shard", default=None, metavar="I/N",
                        help="run share I of N (0-based); default: the Slurm array task, "
                             "else everything")
    parser.add_argument("--force", action="store_true",
                        help="retrain runs even when a FINISHED run exists")
    parser.add_argument("--only", action="append", default=[], metavar="ROLE|ID",
                        help="only these runs: teacher, student, distilled, or a run id "
                             "(prefix); repeatable")
    parser.add_argument("--dry-run", action="store_true",
                        help="print what would be trained, resumed or reused, and stop")
    parser.add_argument("--quiet", action="store_true",
                        help="no progress bars: one log line per run")
    parser.add_argument("--eval-every", type=int, default=1, metavar="N",
                        help="evaluate on the test split every N epochs (the last always)")
    parser.add_argument("--data-parallel", choices=("auto", "on", "off"), default="auto",
                        help="under `accelerate launch`: train each run data-parallel over the "
                             "processes (auto: for ImageNet studies) instead of spreading runs")
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help="where datasets are unpacked or generated")
    parser.add_argument("--log-dir", type=Path, default=Path(".kdspec/logs"),
                        help="folder of the run log files")
    parser.add_argument("--lease-timeout", type=float, default=DEFAULT_LEASE_TIMEOUT_S,
                        metavar="SECONDS",
                        help="a RUNNING run whose heartbeat is older than this was interrupted "
                             f"and is resumed (default {DEFAULT_LEASE_TIMEOUT_S:g}); the owner "
                             "renews it every third of it (every "
                             f"{heartbeat_interval_s(DEFAULT_LEASE_TIMEOUT_S):g} s by default)")
    parser.add_argument("--claim-settle", type=float, metavar="SECONDS",
                        default=float(os.environ.get(CLAIM_SETTLE_VARIABLE, CLAIM_SETTLE_S)),
                        help="seconds between claiming a run and checking the claim held "
                             f"(default {CLAIM_SETTLE_S:g}, or ${CLAIM_SETTLE_VARIABLE}); must "
                             "exceed the time another process takes from reading the store to "
                             "claiming")
    parser.add_argument("--poll-seconds", type=float, default=30.0, metavar="SECONDS",
                        help="while only runs other processes are training are left, look at "
                             "the store this often (default 30)")
    parser.add_argument("--cpu", action="store_true",
                        help="train on the CPU even where a GPU is present (without it, a "
                             "machine whose GPUs torch cannot use is an error, not a silent "
                             "fall-back to the CPU)")
    spec_selection.add_arguments(parser)


def load_spec(args: argparse.Namespace) -> tuple[Plan, str | None]:
    """The plan of a ``.kdspec`` or plan ``.json`` file (``--set`` and ``--study`` applied),
    and the spec text to log with it (the plan carries it: a plan JSON never makes kdspec read
    another file)."""
    plan = spec_selection.load(args)
    return plan, plan.spec_text


def options_from_args(args: argparse.Namespace, spec_text: str | None) -> RunOptions:
    if args.eval_every < 1:
        raise KdspecError("--eval-every must be at least 1")
    problem = lease_settings_problem(args.lease_timeout, args.claim_settle)
    if problem is not None:
        raise KdspecError(problem)
    shard = parse_shard(args.shard) if args.shard else shard_from_env()
    return RunOptions(
        tracking_uri=args.tracking_uri, shard=shard, force=args.force, only=tuple(args.only),
        dry_run=args.dry_run, quiet=args.quiet, eval_every=args.eval_every,
        data_parallel=args.data_parallel, log_dir=args.log_dir, cache_dir=args.cache_dir,
        spec_text=spec_text, lease_timeout_s=args.lease_timeout, poll_seconds=args.poll_seconds,
        settle_seconds=args.claim_settle, cpu=args.cpu,
    )


def run(args: argparse.Namespace) -> int:
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    bound_http_retries(args.tracking_retries)
    plan, spec_text = load_spec(args)
    check_optional_packages(plan)  # before anything is written, --dry-run included
    options = options_from_args(args, spec_text)
    if not options.dry_run:  # a new sqlite store is migrated while torch and MLflow import
        from kdspec.tracking.schema import resolve_tracking_uri
        from kdspec.tracking.sqlite_store import create_in_background

        for uri in sorted({resolve_tracking_uri(options.tracking_uri, s) for s in plan.studies}):
            create_in_background(uri)
    from kdspec.runtime.progress import close_log, open_log

    # After MLflow's import (which configures its loggers): its INFO lines (database
    # migrations) would drown kdspec's own progress output.
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    logger, log_path = open_log(options.log_dir, quiet=options.quiet,
                                to_file=not options.dry_run)
    stop = StopRequest()
    stop.on_request(lambda number: logger.warning(
        "%s: stopping after the current batch; its runs are released and resume from their "
        "last saved epoch (a second signal stops at once)", signal.Signals(number).name))
    try:
        with stop.installed():
            return _execute(plan, options, logger, log_path, stop, spec_text)
    except KdspecError as err:
        logger.debug("error: %s", err)
        if log_path is None:
            raise
        raise KdspecError(f"{err} (log: {log_path})") from err
    except KeyboardInterrupt:
        logger.warning("interrupted at once (a second Ctrl-C); rerun the same command to resume "
                       "from the last saved epochs")
        raise
    finally:
        close_log(logger)


def _execute(plan: Plan, options: RunOptions, logger: logging.Logger, log_path: Path | None,
             stop: StopRequest, spec_text: str | None) -> int:
    from kdspec.runtime.device_check import check_gpu_usable
    from kdspec.runtime.executor import Executor

    if not options.dry_run:
        check_gpu_usable(allow_cpu=options.cpu)
    executor = Executor(plan, options, logger, stop=stop)
    try:
        code = _run_plan(executor, options, logger, log_path, spec_text)
    finally:
        executor.close()
    if executor.processes > 1:
        exit_without_finalisation(code, logger)
    return code


def exit_without_finalisation(code: int, logger: logging.Logger) -> NoReturn:
    """End a process of a multi-process run now, once its work is written and its output
    flushed, skipping the interpreter's finalisation. There, torch's distributed C++ threads
    can still abort a process whose process group is already destroyed ("terminate called
    without an active exception", SIGABRT; seen in CI after every run had finished), and
    ``accelerate launch`` then fails the whole job. Nothing of kdspec's is left to finalise:
    the store's writes were flushed by the executor, and the log is closed here."""
    from kdspec.runtime.progress import close_log

    close_log(logger)
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _run_plan(executor: Executor, options: RunOptions, logger: logging.Logger,
              log_path: Path | None, spec_text: str | None) -> int:
    from kdspec.commands.run_tables import dry_run_table, summary_table

    runs = executor.my_runs()
    executor.preflight(runs)
    prep = executor.prepare(runs)
    if options.dry_run:
        if executor.process_index == 0:
            sys.stdout.write(dry_run_table(prep, shard=str(options.shard)))
        return 0
    logger.info("log: %s (this process's full log, tracebacks included)", log_path)
    executor.check_space(prep)
    outcomes = executor.execute(prep, spec_text=spec_text)
    if not executor.writes_tracking:
        return executor.stopped.exit_code if executor.stopped else 0
    failed = [o for o in outcomes if o.status in ("failed", "skipped")]
    sys.stderr.write(summary_table(outcomes))
    if executor.stopped is not None:
        logger.warning("%s: the plan stopped; finished runs are kept, interrupted ones resume "
                       "from their last saved epoch: rerun the same command to resume",
                       executor.stopped)
        sys.stderr.write(f"kdspec run: {executor.stopped}; rerun the same command to resume "
                         f"(exit {executor.stopped.exit_code}); log: {log_path}\n")
        return executor.stopped.exit_code
    if failed:
        sys.stderr.write(f"kdspec run: {len(failed)} run(s) did not finish; "
                         f"log: {log_path}\n")
        return 1
    return 0
