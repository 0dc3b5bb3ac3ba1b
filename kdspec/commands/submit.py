"""``kdspec submit SPEC --shards N``: the Slurm array job of a plan, one task per shard.

It writes the batch script (``--out``, default ``.kdspec/submit/<spec>.sbatch``), prints it with
``--dry-run`` instead, and hands it to ``sbatch`` with ``--submit``. The script:

- ``--array=0-(N-1)`` with the shard passed explicitly (``--shard $SLURM_ARRAY_TASK_ID/N``), so
  ``sbatch --array=2 <script>`` reruns exactly shard 2 of N (a one-task array alone would be
  shard 0 of 1: the whole plan);
- ``--requeue`` (a preempted task comes back and resumes) and ``--open-mode=append`` (a requeue
  would otherwise truncate the task's output file);
- ``--signal=B:USR1@<warn>``: Slurm signals the batch shell ``warn`` seconds before the time
  limit; the script passes it on to ``kdspec run``, which stops after its current batch,
  releases its runs (resumable at once by the next task) and exits (see
  :mod:`kdspec.runtime.stop_request`). ``scancel`` and preemption send SIGTERM to the whole job,
  which kdspec handles the same way; the shell only waits for it;
- the tracking server as ``MLFLOW_TRACKING_URI`` and the resources from the options.
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from kdspec.errors import KdspecError

DEFAULT_WARN_S = 120
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
    parser.add_argument("--run-args", default="",
                        help="more `kdspec run` options for every task, e.g. '--eval-every 5'")
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


def batch_script(job: ArrayJob) -> str:
    """The sbatch script of ``job`` (bash)."""
    if job.shards < 1:
        raise KdspecError(f"--shards must be at least 1, got {job.shards}")
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
    run = (f"kdspec run {shlex.quote(str(job.spec))} --shard "
           f"\"${{SLURM_ARRAY_TASK_ID}}/{job.shards}\" --quiet"
           + (f" {job.run_args}" if job.run_args else ""))
    lines = [
        "#!/bin/bash",
        f"# kdspec submit: {job.spec}, {job.shards} shard(s), one array task each.",
        f"# Rerun one shard k of {job.shards} (after a failure): sbatch --array=k <this file>.",
        "# Rerun everything: sbatch <this file> (finished runs are reused, interrupted ones "
        "resume).",
        *(f"#SBATCH {d}" for d in directives),
        "set -u",
        f"mkdir -p {shlex.quote(str(job.workdir / '.kdspec' / 'slurm'))}",
        f"cd {shlex.quote(str(job.workdir))}",
    ]
    if job.venv is not None:
        lines.append(f"source {shlex.quote(str(job.venv / 'bin' / 'activate'))}")
    if job.tracking_uri:
        lines.append(f"export MLFLOW_TRACKING_URI={shlex.quote(job.tracking_uri)}")
    lines += [
        "echo \"kdspec task ${SLURM_ARRAY_TASK_ID} of job ${SLURM_ARRAY_JOB_ID:-?} on "
        "$(hostname) at $(date -u +%FT%TZ) (restart ${SLURM_RESTART_COUNT:-0})\"",
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
        "echo \"kdspec task ${SLURM_ARRAY_TASK_ID} exited ${status} at $(date -u +%FT%TZ)\"",
        "exit \"$status\"",
    ]
    return "\n".join(lines) + "\n"


def _default_venv() -> Path | None:
    prefix = Path(sys.prefix)
    return prefix if prefix != Path(sys.base_prefix) else None


def run(args: argparse.Namespace) -> int:
    from kdspec.dsl import load_plan

    spec = Path(args.spec).resolve()
    plan = load_plan(spec)  # a spec with errors stops here, with its diagnostics
    name = args.job_name or f"kdspec-{spec.stem}"
    job = ArrayJob(spec=spec, shards=args.shards, workdir=Path.cwd(), job_name=name,
                   time=args.time, cpus=args.cpus, gpus=args.gpus, mem=args.mem,
                   partition=args.partition, account=args.account,
                   tracking_uri=args.tracking_uri, venv=args.venv or _default_venv(),
                   warn_seconds=args.warn_seconds, run_args=args.run_args)
    script = batch_script(job)
    if args.shards > len(plan.runs):
        sys.stderr.write(f"kdspec submit: warning: {args.shards} shards for {len(plan.runs)} "
                         "runs: some tasks will have nothing to do\n")
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
