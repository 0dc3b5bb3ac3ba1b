"""The lease tags of a stored run: which process is training it and since when it last said so.

A RUNNING run carries four tags: ``kdspec.lease.owner`` (``host:pid:token`` of the process
training it), ``kdspec.lease.machine`` (the boot id and pid namespace it runs in),
``kdspec.lease.claimed`` and ``kdspec.lease.heartbeat`` (milliseconds since the epoch). This
module reads and writes them; what they decide (who holds a run, when it may be taken over) is
:mod:`kdspec.tracking.ownership`, and the protocol is described in docs/running.md ("Who trains
a run").
"""

from __future__ import annotations

import os
import secrets
import socket
import time
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from kdspec.tracking import schema


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


def claim_tags(owner: str, at_ms: int) -> dict[str, str]:
    """The tags a claim writes."""
    return {schema.TAG_LEASE_OWNER: owner, schema.TAG_LEASE_CLAIMED: str(at_ms),
            schema.TAG_LEASE_HEARTBEAT: str(at_ms), schema.TAG_LEASE_MACHINE: this_machine()}


def heartbeat_tags(at_ms: int) -> dict[str, str]:
    return {schema.TAG_LEASE_HEARTBEAT: str(at_ms)}
