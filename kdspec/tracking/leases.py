"""Leases on live runs: which process is training a run right now, and since when it last said so.

A RUNNING run carries four tags: ``kdspec.lease.owner`` (``host:pid:token`` of the process
training it), ``kdspec.lease.machine`` (the boot id and pid namespace it runs in),
``kdspec.lease.claimed`` and ``kdspec.lease.heartbeat`` (milliseconds since the epoch). The
owner renews the heartbeat every epoch and every ``HEARTBEAT_INTERVAL_S`` within an epoch. A
RUNNING run whose heartbeat is younger than the lease timeout is *live*: no other ``kdspec run``
resumes or retrains it. One whose heartbeat is older (or that has none: a run of a kdspec from
before leases) is *interrupted*: its owner died, and the next run resumes it. On the owner's own
machine (same boot, same pid namespace) a dead owner is known at once: its pid is gone, so a
``kill -9`` or a stop for a lost server is resumed by the next run without waiting.

MLflow has no compare-and-set, so a claim is made and then checked after ``CLAIM_SETTLE_S``:
of the live runs of one kdspec id, the oldest claim wins (ties: the smaller MLflow run id);
on one MLflow run reopened by two processes, the owner tag left after the settle time wins.
A process that lost steps back before it records anything: it trains meanwhile (the settle
time is not spent idle), checks at its first batch after the settle time or before its first
epoch's results go out, whichever comes first, and a loser deletes the runs it created. The
settle time only has to exceed the time between a process's last look at the store and its
claim (milliseconds).
"""

from __future__ import annotations

import os
import secrets
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Protocol, TypeVar

from kdspec.tracking import schema

#: A run whose heartbeat is older than this is taken for interrupted (``--lease-timeout``).
DEFAULT_LEASE_TIMEOUT_S = 600.0
#: How often a run in a long epoch renews its heartbeat.
HEARTBEAT_INTERVAL_S = 60.0
#: Seconds between making a claim and checking that it held.
CLAIM_SETTLE_S = 2.0


def now_ms() -> int:
    return int(time.time() * 1000)


def new_owner() -> str:
    """This process's owner id: host, pid and a random token (pids are reused)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


@cache
def this_machine() -> str:
    """Where a pid means this process table: the kernel's boot id and the pid namespace (two
    containers on one host share the boot, not the pids); empty where neither can be read."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""
    return f"{boot}/{namespace}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


@dataclass(frozen=True)
class Lease:
    """The lease tags of a stored run (empty owner: none)."""

    owner: str = ""
    claimed_ms: int = 0
    heartbeat_ms: int = 0
    machine: str = ""

    @property
    def host(self) -> str:
        return self.owner.split(":", 1)[0] if self.owner else ""

    @property
    def pid(self) -> str:
        parts = self.owner.split(":")
        return parts[1] if len(parts) > 1 else ""

    def age_s(self, at_ms: int) -> float:
        """Seconds since the last heartbeat (infinite without one)."""
        return float("inf") if not self.heartbeat_ms else (at_ms - self.heartbeat_ms) / 1000.0

    @classmethod
    def from_tags(cls, tags: dict[str, str]) -> Lease:
        def number(key: str) -> int:
            value = tags.get(key, "")
            return int(value) if value.isdigit() else 0

        return cls(owner=tags.get(schema.TAG_LEASE_OWNER, ""),
                   claimed_ms=number(schema.TAG_LEASE_CLAIMED),
                   heartbeat_ms=number(schema.TAG_LEASE_HEARTBEAT),
                   machine=tags.get(schema.TAG_LEASE_MACHINE, ""))

    def owner_dead(self) -> bool:
        """The owner ran on this machine and its process is gone."""
        return (bool(self.machine) and self.machine == this_machine() and self.pid.isdigit()
                and not _pid_alive(int(self.pid)))


def is_live(status: str, lease: Lease, *, at_ms: int, timeout_s: float) -> bool:
    """Whether a stored run is being trained right now by some process."""
    return status == "RUNNING" and lease.age_s(at_ms) < timeout_s and not lease.owner_dead()


class Leased(Protocol):
    """What :func:`lease_holder` reads of a stored run."""

    @property
    def status(self) -> str: ...
    @property
    def lease(self) -> Lease: ...
    @property
    def mlflow_id(self) -> str: ...


LeasedRun = TypeVar("LeasedRun", bound=Leased)


def lease_holder(stored: Sequence[LeasedRun], *, at_ms: int, timeout_s: float
                 ) -> LeasedRun | None:
    """Of the stored runs of one kdspec id, the one whose claim holds: the oldest live claim
    (ties: the smaller MLflow run id); None when no run is live. The only rule for "who trains
    this run": the claim check, the scheduler and ``kdspec status`` all use it, so they name
    the same process while two claims are being settled."""
    live = [s for s in stored if is_live(s.status, s.lease, at_ms=at_ms, timeout_s=timeout_s)]
    return min(live, key=lambda s: (s.lease.claimed_ms, s.mlflow_id), default=None)


def claim_tags(owner: str, at_ms: int) -> dict[str, str]:
    """The tags a claim writes."""
    return {schema.TAG_LEASE_OWNER: owner, schema.TAG_LEASE_CLAIMED: str(at_ms),
            schema.TAG_LEASE_HEARTBEAT: str(at_ms), schema.TAG_LEASE_MACHINE: this_machine()}


def heartbeat_tags(at_ms: int) -> dict[str, str]:
    return {schema.TAG_LEASE_HEARTBEAT: str(at_ms)}
