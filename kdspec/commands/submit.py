"""``kdspec submit SPEC --shards N``: the Slurm array job of a plan, one task per shard.

It writes the batch script (``--out``, default ``.kdspec/submit/<spec>.sbatch``), prints it with
``--dry-run`` instead, and hands it to ``sbatch`` with ``--submit``. First it checks, from the
machine it runs on (:mod:`kdspec.commands.submit_checks`): several tasks on a sqlite store are
refused (unless ``--allow-sqlite``), the store must answer and the data be there (unless
``--skip-checks``), and a plan whose largest shard takes longer than ``--time`` is a warning
with the numbers. The script:

- ``--array=0-(N-1)`` with the shard passed explicitly (``--shard $SLURM_ARRAY_TASK_ID/N``), so
  ``sbatch --array=2 <script>`` reruns exactly shard 2 of N (a one-task array alone would be
  shard 0 of 1: the whole plan);
- ``--requeue`` (a preempted task comes back and resumes) and ``--open-mode=append`` (a requeue
  would otherwise truncate the task's output file);
- ``--signal=B:USR1@<warn>``: Slurm signals the batch shell ``warn`` seconds before the time
  limit; the script passes it on to ``kdspec run``, which stops after its current batch,
  releases its runs (resumable at once) and exits 138 (see
  :mod:`kdspec.runtime.stop_request`). Slurm does not requeue a task that reaches its time
  limit, so the script then requeues its own task (``scontrol requeue $SLURM_JOB_ID``), at
  most ``--max-requeues`` times (``SLURM_RESTART_COUNT``): a shard longer than the limit goes
  on in a new allocation by itself, and stops requeueing once ``kdspec run`` ends for any other
  reason (0: the shard is done; 1 or 2: an error, said in one line). ``scancel`` and preemption
  send SIGTERM to the whole job, which kdspec handles the same way; the shell only waits for it;
- the tracking server as ``MLFLOW_TRACKING_URI``, the virtual environment activated (the task
  stops at once, saying so, when it or ``kdspec`` is missing on the node), and the resources
  from the options.
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from kdspec.commands import spec_selection
from kdspec.commands.submit_checks import (
    check_from_here,
    check_shared_store,
    shard_costs,
    slurm_seconds,
    store_uris,
    time_warning,
)
from kdspec.errors import KdspecError

DEFAULT_WARN_S = 120
#: How many times a task requeues itself after the time limit's warning, by default.
DEFAULT_MAX_REQUEUES = 10
#: ``kdspec run``'s exit code after Slurm's warning signal (128 + SIGUSR1).
EXIT_STOPPED_BY_WARNING = 128 + 10
MSG_NO_SBATCH = "sbatch not found on PATH: write the script with --out and submit it on a node " \
    "that has Slurm"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("spec", metavar="SPEC", help=".kdspec file or plan JSON")
    parser.add_argument("--shards", type=int, required=True, metavar="N",
                        help="array tasks, one shard of the plan each")
    parser.add_argument("--tracking-uri", default=None, metavar="URI",
                        help="the MLflow server every task writes to (exported as "
                             "MLFLOW_TRACKING_URI; default: the environment's, or the spec's)")
    parser.add_argument("--time", default="24:00:00", help="Slurm time limit per task")
    parser.add_argument("--gpus", type=int, default=0, help="GPUs per task (--gres=gpu:N)")
    parser.add_argument("--cpus", type=int, default=4, help="CPUs per task")
    parser.add_argument("--mem", default=None, help="memory per task, e.g. 32G")
    parser.add_argument("--partition", default=None)
    parser.add_argument("--account", default=None)
    parser.add_argument("--job-name", default=None, help="default: kdspec-<spec name>")
    parser.add_argument("--venv", type=Path, default=None,
                        help="virtual environment to activate (default: the one running this "
                             "command, if any)")
    parser.add_argument("--warn-seconds", type=int, default=DEFAULT_WARN_S,
                        help="seconds before the time limit at which kdspec is told to stop "
                             f"(default {DEFAULT_WARN_S})")
    parser.add_argument("--max-requeues", type=int, default=DEFAULT_MAX_REQUEUES, metavar="N",
                        help="times a task requeues itself when the time limit's warning "
                             "stopped it with runs left (default "
                             f"{DEFAULT_MAX_REQUEUES}; 0: never)")
    parser.add_argument("--allow-sqlite", action="store_true",
                        help="let several tasks share a sqlite (or file) store: only when they "
                             "all run on one node with the store on its local disk")
    parser.add_argument("--skip-checks", action="store_true",
                        help="do not check the store, the data and the packages from this "
                             "machine (each task still checks them at its start)")
    parser.add_argument("--run-args", default="",
                        help="more `kdspec run` options for every task, e.g. '--eval-every 5'")
    spec_selection.add_arguments(parser)
    parser.add_argument("--out", type=Path, default=None, help="where to write the script")
    parser.add_argument("--dry-run", action="store_true", help="print the script, write nothing")
    parser.add_argument("--submit", action="store_true", help="write it and run sbatch on it")


@dataclass(frozen=True)
class ArrayJob:
    """What the batch script says."""

    spec: Path
    shards: int
    workdir: Path
    job_name: str
    time: str
    cpus: int
    gpus: int = 0
    mem: str | None = None
    partition: str | None = None
    account: str | None = None
    tracking_uri: str | None = None
    venv: Path | None = None
    warn_seconds: int = DEFAULT_WARN_S
    run_args: str = ""
    max_requeues: int = DEFAULT_MAX_REQUEUES
    #: ``--set`` and ``--study`` of ``kdspec run``, passed to every task.
    overrides: tuple[str, ...] = ()
    studies: tuple[str, ...] = ()


def batch_script(job: ArrayJob) -> str:
    """The sbatch script of ``job`` (bash)."""
    if job.shards < 1:
        raise KdspecError(f"--shards must be at least 1, got {job.shards}")
    if job.max_requeues < 0:
        raise KdspecError(f"--max-requeues must be 0 or more, got {job.max_requeues}")
    directives = [f"--job-name={job.job_name}", f"--array=0-{job.shards - 1}",
                  "--requeue", "--open-mode=append",
                  f"--output={job.workdir}/.kdspec/slurm/%x-%A_%a.out",
                  f"--signal=B:USR1@{job.warn_seconds}", f"--time={job.time}",
                  f"--cpus-per-task={job.cpus}"]
    if job.gpus:
        directives.append(f"--gres=gpu:{job.gpus}")
    for flag, value in (("mem", job.mem), ("partition", job.partition),
                        ("account", job.account)):
        if value:
            directives.append(f"--{flag}={value}")
    selection = "".join([*(f" --set {shlex.quote(o)}" for o in job.overrides),
                         *(f" --study {shlex.quote(s)}" for s in job.studies)])
    run = (f"kdspec run {shlex.quote(str(job.spec))} --shard "
           f"\"${{SLURM_ARRAY_TASK_ID}}/{job.shards}\" --quiet{selection}"
           + (f" {job.run_args}" if job.run_args else ""))
    task = "kdspec task ${SLURM_ARRAY_TASK_ID}"
    lines = [
        "#!/bin/bash",
        f"# kdspec submit: {job.spec}, {job.shards} shard(s), one array task each.",
        f"# Rerun one shard k of {job.shards} (after a failure): sbatch --array=k <this file>.",
        "# Rerun everything: sbatch <this file> (finished runs are reused, interrupted ones "
        "resume).",
        *(f"#SBATCH {d}" for d in directives),
        "set -u",
        f"mkdir -p {shlex.quote(str(job.workdir / '.kdspec' / 'slurm'))}",
        f"cd {shlex.quote(str(job.workdir))} || {{ echo \"{task}: cannot enter "
        f"{job.workdir} on $(hostname)\"; exit 1; }}",
    ]
    if job.venv is not None:
        activate = shlex.quote(str(job.venv / "bin" / "activate"))
        lines.append(f"source {activate} || {{ echo \"{task}: cannot activate {job.venv} on "
                     "$(hostname)\"; exit 1; }")
    if job.tracking_uri:
        lines.append(f"export MLFLOW_TRACKING_URI={shlex.quote(job.tracking_uri)}")
    lines += [
        f"command -v kdspec >/dev/null || {{ echo \"{task}: kdspec is not on PATH on "
        "$(hostname)\"; exit 1; }",
        f"echo \"{task} of job ${{SLURM_ARRAY_JOB_ID:-?}} on "
        "$(hostname) at $(date -u +%FT%TZ) (restart ${SLURM_RESTART_COUNT:-0})\"",
        "# kdspec run checks the store, the data and the GPU before it trains anything: a",
        "# problem there ends the task within seconds, with one line saying what (exit 1).",
        f"{run} &",
        "kdspec_pid=$!",
        "# Slurm's warning signal reaches this shell only: pass it on. scancel and preemption",
        "# send SIGTERM to kdspec too; the shell then just waits for kdspec to stop cleanly.",
        "trap 'kill -USR1 \"$kdspec_pid\" 2>/dev/null' USR1",
        "trap 'echo \"kdspec task: SIGTERM, waiting for kdspec to release its runs\"' TERM",
        "# wait returns early when a trapped signal arrives: wait until kdspec has exited.",
        "wait \"$kdspec_pid\"; status=$?",
        "while kill -0 \"$kdspec_pid\" 2>/dev/null; do",
        "  wait \"$kdspec_pid\"; status=$?",
        "done",
        f"echo \"{task} exited ${{status}} at $(date -u +%FT%TZ)\"",
        "# Stopped by the time limit's warning with runs left: Slurm would not requeue the task",
        "# at its limit, so it requeues itself and resumes in a new allocation (bounded).",
        f"if [ \"$status\" -eq {EXIT_STOPPED_BY_WARNING} ]; then",
        "  restarts=${SLURM_RESTART_COUNT:-0}",
        "  if [ -z \"${SLURM_JOB_ID:-}\" ]; then",
        f"    echo \"{task}: not under Slurm (no SLURM_JOB_ID): not requeued\"",
        f"  elif [ \"$restarts\" -lt {job.max_requeues} ]; then",
        f"    echo \"{task}: stopped at the time limit's warning with runs left; requeueing "
        f"(requeue $((restarts + 1)) of at most {job.max_requeues})\"",
        "    scontrol requeue \"${SLURM_JOB_ID}\" && exit 0",
        f"    echo \"{task}: scontrol requeue failed: sbatch --array=${{SLURM_ARRAY_TASK_ID}} "
        "this script to continue\"",
        "  else",
        f"    echo \"{task}: not requeued: {job.max_requeues} requeues made (--max-requeues); "
        "sbatch --array=${SLURM_ARRAY_TASK_ID} this script to continue\"",
        "  fi",
        "elif [ \"$status\" -eq 1 ] || [ \"$status\" -eq 2 ]; then",
        f"  echo \"{task}: kdspec run failed (exit ${{status}}): its error is the line above; "
        "not requeued\"",
        "fi",
        "exit \"$status\"",
    ]
    return "\n".join(lines) + "\n"


def _default_venv() -> Path | None:
    prefix = Path(sys.prefix)
    return prefix if prefix != Path(sys.base_prefix) else None


def _cache_dir(run_args: str) -> Path | None:
    """``--cache-dir`` among the extra ``kdspec run`` options, if given (the data check looks
    there, as the tasks will)."""
    words = shlex.split(run_args)
    for i, word in enumerate(words):
        if word == "--cache-dir" and i + 1 < len(words):
            return Path(words[i + 1])
        if word.startswith("--cache-dir="):
            return Path(word.split("=", 1)[1])
    return None


def run(args: argparse.Namespace) -> int:
    spec = Path(args.spec).resolve()
    plan = spec_selection.load(args, str(spec))  # a spec with errors stops here
    name = args.job_name or f"kdspec-{spec.stem}"
    job = ArrayJob(spec=spec, shards=args.shards, workdir=Path.cwd(), job_name=name,
                   time=args.time, cpus=args.cpus, gpus=args.gpus, mem=args.mem,
                   partition=args.partition, account=args.account,
                   tracking_uri=args.tracking_uri, venv=args.venv or _default_venv(),
                   warn_seconds=args.warn_seconds, run_args=args.run_args,
                   max_requeues=args.max_requeues, overrides=tuple(args.overrides),
                   studies=tuple(args.studies))
    script = batch_script(job)
    slurm_seconds(args.time)  # a limit Slurm would refuse stops here
    uris = store_uris(plan, args.tracking_uri)
    warnings = check_shared_store(uris, args.shards, allow_local=args.allow_sqlite)
    if not args.skip_checks:
        check_from_here(plan, uris, cache_dir=_cache_dir(args.run_args))
    if args.shards > len(plan.runs):
        warnings.append(f"warning: {args.shards} shards for {len(plan.runs)} runs: some tasks "
                        "will have nothing to do")
    over = time_warning(shard_costs(plan, args.shards), time=args.time,
                        warn_seconds=args.warn_seconds, max_requeues=args.max_requeues,
                        gpus=args.gpus)
    warnings += [over] if over else []
    for warning in warnings:
        sys.stderr.write(f"kdspec submit: {warning}\n")
    if args.dry_run:
        sys.stdout.write(script)
        return 0
    out = args.out or Path(".kdspec") / "submit" / f"{spec.stem}.sbatch"
    out.parent.mkdir(parents=True, exist_ok=True)
    (job.workdir / ".kdspec" / "slurm").mkdir(parents=True, exist_ok=True)  # Slurm opens
    # the task's output file there before the script runs
    out.write_text(script)
    sys.stderr.write(f"kdspec submit: wrote {out}\n")
    if not args.submit:
        return 0
    sbatch = shutil.which("sbatch")
    if sbatch is None:
        raise KdspecError(MSG_NO_SBATCH)
    done = subprocess.run([sbatch, str(out)], capture_output=True, text=True)
    if done.returncode != 0:
        raise KdspecError(f"sbatch failed ({done.returncode}): {done.stderr.strip()[:300]}")
    sys.stdout.write(done.stdout)
    return 0
