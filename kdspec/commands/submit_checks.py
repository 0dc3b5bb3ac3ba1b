"""What ``kdspec submit`` checks on the machine it runs on (a login node) before it writes a
script: that the tracking store is one several machines can share, that the store answers, the
data is there and the optional packages are installed (what each task's ``kdspec run`` checks
again at its start), and what the plan costs per shard against the time limit.

The cost is the estimate ``kdspec plan`` prints (forward FLOPs of every run, a training step
~3x its forward, at the throughput the plan command assumes), dealt to the shards as ``kdspec
run --shard`` deals them.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

from kdspec.commands.plan import ASSUMED_TRAINING_FLOP_S, gpu_hours, run_work
from kdspec.errors import KdspecError
from kdspec.plan import Plan
from kdspec.tracking.schema import resolve_tracking_uri
from kdspec.tracking.store_uri import is_server_uri

MSG_LOCAL_STORE_SHARDS = (
    "{shards} array tasks would share the store {uri}: a {kind} store lives in files on one "
    "disk, and tasks on several nodes writing them through a shared file system lock each "
    "other out or corrupt them (file locking is not reliable over NFS). Point every task at "
    "an MLflow server (--tracking-uri http://HOST:5000; docs/running.md, \"Several machines\"), "
    "or pass --allow-sqlite if every task runs on one node with the store on its local disk")
MSG_LOCAL_STORE_ALLOWED = (
    "warning: {shards} array tasks share the {kind} store {uri} (--allow-sqlite): keep them on "
    "one node, with the store on its local disk")
MSG_CHECK_FAILED = ("{error} (checked from this machine; --skip-checks if only the compute "
                    "nodes can see it: each task checks again at its start)")
MSG_BAD_TIME = ("--time {value!r} is not a Slurm time (MINUTES, MM:SS, HH:MM:SS, D-HH, "
                "D-HH:MM or D-HH:MM:SS)")
MSG_OVER_TIME = (
    "warning: the plan is about {total:.3g} GPU-hours ({assumed}); its largest shard about "
    "{largest:.3g} h, over --time {time} ({usable} of training before the stop signal). Slurm "
    "does not requeue a task that reaches its time limit: each task stops at the warning "
    "signal and requeues itself to resume; the largest shard needs about {allocations} "
    "allocations{requeues}")
MSG_TOO_FEW_REQUEUES = (
    ", more than the {max_requeues} requeues a task may make (--max-requeues): raise it, "
    "--time or --shards, or its study stops unfinished")
MSG_CPU_COST = ("; with no GPU per task (--gpus 0) training on CPUs takes far longer than "
                "these GPU-hours")
MSG_UNKNOWN_COST = "{count} runs of unknown cost are not counted"
#: Slurm time limits: MINUTES, MINUTES:SECONDS, HOURS:MINUTES:SECONDS, DAYS-HOURS,
#: DAYS-HOURS:MINUTES, DAYS-HOURS:MINUTES:SECONDS.
SLURM_TIME = re.compile(r"^(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?$")


def local_store_kind(uri: str) -> str | None:
    """``sqlite`` or ``file`` for a store that lives in files on one disk; None for a server
    or a database server (PostgreSQL, MySQL), which several machines can share."""
    if is_server_uri(uri):
        return None
    if uri.startswith("sqlite:"):
        return "sqlite"
    if uri.startswith("file:") or "://" not in uri:
        return "file"
    return None


def store_uris(plan: Plan, tracking_uri: str | None) -> list[str]:
    """The stores the tasks will write, as ``kdspec run`` resolves them (``--tracking-uri``,
    ``$MLFLOW_TRACKING_URI``, the spec's, the default)."""
    return sorted({resolve_tracking_uri(tracking_uri, study) for study in plan.studies})


def check_shared_store(uris: list[str], shards: int, *, allow_local: bool) -> list[str]:
    """Raise KdspecError when several tasks would share a local store, unless allowed (then
    a warning, returned)."""
    warnings = []
    for uri in uris:
        kind = local_store_kind(uri)
        if kind is None or shards < 2:
            continue
        if not allow_local:
            raise KdspecError(MSG_LOCAL_STORE_SHARDS.format(shards=shards, uri=uri, kind=kind))
        warnings.append(MSG_LOCAL_STORE_ALLOWED.format(shards=shards, uri=uri, kind=kind))
    return warnings


def check_from_here(plan: Plan, uris: list[str], *, cache_dir: Path | None) -> None:
    """What each task's ``kdspec run`` checks before training, checked from this machine: the
    optional packages, every store answering (read-only: nothing is created) and every
    study's data present. KdspecError with the first problem."""
    from kdspec.catalogue.optional_packages import check_optional_packages
    from kdspec.runtime.data import check_dataset_available
    from kdspec.tracking.reachability import bound_http_retries
    from kdspec.tracking.store import MlflowStore

    check_optional_packages(plan)
    bound_http_retries()
    try:
        for uri in uris:
            MlflowStore(uri, read_only=True).preflight()
        for study in plan.studies:
            check_dataset_available(study.dataset, cache_dir=cache_dir)
    except KdspecError as err:
        raise KdspecError(MSG_CHECK_FAILED.format(error=err)) from err


def slurm_seconds(value: str) -> int | None:
    """A Slurm time limit in seconds (None: ``UNLIMITED`` / ``infinite``)."""
    text = value.strip()
    if text.lower() in ("unlimited", "infinite"):
        return None
    match = SLURM_TIME.match(text)
    if match is None:
        raise KdspecError(MSG_BAD_TIME.format(value=value))
    days, second, third = (None if g is None else int(g) for g in match.group(1, 3, 4))
    first = int(match.group(2))
    if days is not None:  # D-HH[:MM[:SS]]
        return days * 86400 + first * 3600 + (second or 0) * 60 + (third or 0)
    if third is not None:  # HH:MM:SS
        return first * 3600 + (second or 0) * 60 + third
    if second is not None:  # MM:SS
        return first * 60 + second
    return first * 60  # MINUTES


@dataclass(frozen=True)
class ShardCost:
    """The plan's estimated training hours, in all and per shard (as ``--shard`` deals the
    runs), and how many runs have no estimate."""

    total_hours: float
    shard_hours: tuple[float, ...]
    unknown_runs: int


def shard_costs(plan: Plan, shards: int) -> ShardCost:
    """The estimate of ``kdspec plan``, per shard."""
    from kdspec.runtime.scheduling import runs_of_share

    hours_of: dict[str, float] = {}
    unknown = 0
    for run in plan.runs:
        work = run_work(plan.study_of(run.id), run)
        if work is None or work[1] is None:
            unknown += 1
        else:
            hours_of[run.id] = gpu_hours(work[1])
    per_shard = tuple(sum(hours_of.get(r.id, 0.0) for r in runs_of_share(plan, i, shards))
                      for i in range(shards))
    return ShardCost(sum(hours_of.values()), per_shard, unknown)


def _clock(seconds: float) -> str:
    whole = int(seconds)
    return f"{whole // 3600}:{whole % 3600 // 60:02d}:{whole % 60:02d}"


def time_warning(cost: ShardCost, *, time: str, warn_seconds: int, max_requeues: int,
                 gpus: int) -> str | None:
    """A warning when the largest shard's estimate exceeds what one allocation of ``time``
    trains (the time limit less the warning signal's lead), with the numbers and how many
    allocations it needs; None when it fits or the limit is unlimited."""
    limit = slurm_seconds(time)
    if limit is None or not cost.shard_hours:
        return None
    usable = max(limit - warn_seconds, 1)
    largest = max(cost.shard_hours)
    if largest * 3600.0 <= usable:
        return None
    allocations = math.ceil(largest * 3600.0 / usable)
    line = MSG_OVER_TIME.format(
        total=cost.total_hours, largest=largest, time=time, usable=_clock(usable),
        allocations=allocations,
        assumed=f"at {ASSUMED_TRAINING_FLOP_S / 1e12:g} TFLOP/s effective, as `kdspec plan` "
                "estimates",
        requeues=(MSG_TOO_FEW_REQUEUES.format(max_requeues=max_requeues)
                  if allocations - 1 > max_requeues else ""))
    if gpus == 0:
        line += MSG_CPU_COST
    if cost.unknown_runs:
        line += "; " + MSG_UNKNOWN_COST.format(count=cost.unknown_runs)
    return line
