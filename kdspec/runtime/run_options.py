"""The options of ``kdspec run`` as one typed value, and the shard a machine takes."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from kdspec.errors import KdspecError
from kdspec.tracking.ownership import CLAIM_SETTLE_S, DEFAULT_LEASE_TIMEOUT_S

ROLES = ("teacher", "student", "distilled")
DataParallel = Literal["auto", "on", "off"]

ERR_SHARD_FORMAT = "--shard wants I/N with 0 <= I < N (e.g. 0/4), got {value!r}"


@dataclass(frozen=True)
class Shard:
    """This machine's share of a plan: share ``index`` of ``count`` (0-based)."""

    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise KdspecError(ERR_SHARD_FORMAT.format(value=f"{self.index}/{self.count}"))

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def parse_shard(value: str) -> Shard:
    """``"i/n"`` -> ``Shard(i, n)``."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", value)
    if match is None:
        raise KdspecError(ERR_SHARD_FORMAT.format(value=value))
    return Shard(int(match.group(1)), int(match.group(2)))


def shard_from_env(env: Mapping[str, str] | None = None) -> Shard:
    """The shard of a Slurm array task: ``SLURM_ARRAY_TASK_ID - SLURM_ARRAY_TASK_MIN`` of
    ``SLURM_ARRAY_TASK_COUNT`` (so ``--array=0-3`` and ``--array=1-4`` both give 0..3 of 4);
    the whole plan outside an array job."""
    env = os.environ if env is None else env
    task, count = env.get("SLURM_ARRAY_TASK_ID"), env.get("SLURM_ARRAY_TASK_COUNT")
    if not task or not count:
        return Shard()
    low = int(env.get("SLURM_ARRAY_TASK_MIN", "0") or 0)
    return Shard(int(task) - low, int(count))


@dataclass(frozen=True)
class RunOptions:
    """What ``kdspec run`` was asked to do, beyond the plan itself."""

    tracking_uri: str | None = None  # None: $MLFLOW_TRACKING_URI, the spec's, or the default
    shard: Shard = field(default_factory=Shard)
    force: bool = False  # retrain runs that already have a FINISHED run
    only: tuple[str, ...] = ()  # roles and/or run ids (or unique id prefixes); empty = all
    dry_run: bool = False
    quiet: bool = False
    #: Evaluate on the test split every this many epochs (the last epoch always).
    eval_every: int = 1
    #: "auto": data-parallel for ImageNet studies under several processes, job-spreading else.
    data_parallel: DataParallel = "auto"
    log_dir: Path = Path(".kdspec/logs")
    cache_dir: Path | None = None  # dataset cache (None: the data module's default)
    spec_text: str | None = None  # logged as the parent run's spec.kdspec
    #: A RUNNING run whose heartbeat is older is taken for interrupted (kdspec.tracking.ownership).
    lease_timeout_s: float = DEFAULT_LEASE_TIMEOUT_S
    #: Seconds between making a claim on a run and checking it held.
    settle_seconds: float = CLAIM_SETTLE_S
    #: Seconds between looks at the store while only runs of other processes are left.
    poll_seconds: float = 30.0
    #: Train on the CPU even where a GPU is usable or present (``kdspec run --cpu``).
    cpu: bool = False


def select_runs(run_ids: list[str], roles: dict[str, str], only: tuple[str, ...]) -> set[str]:
    """The run ids ``--only`` keeps: a role name keeps its runs; anything else must be a run id
    or a prefix of exactly one."""
    if not only:
        return set(run_ids)
    keep: set[str] = set()
    for item in only:
        if item in ROLES:
            keep.update(r for r in run_ids if roles[r] == item)
            continue
        matches = [r for r in run_ids if r.startswith(item)]
        if len(matches) != 1:
            what = "no run" if not matches else f"{len(matches)} runs"
            raise KdspecError(
                f"--only {item!r} matches {what}; give a role ({', '.join(ROLES)}) or a run id "
                "from `kdspec plan`"
            )
        keep.add(matches[0])
    return keep
