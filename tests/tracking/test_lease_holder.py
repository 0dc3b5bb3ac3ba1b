"""One rule for who trains a run: the claim check, the scheduler and ``kdspec status`` name the
same holder while two claims on one kdspec id are being settled (the oldest live claim)."""

from __future__ import annotations

from kdspec.commands.status import run_status
from kdspec.runtime.scheduling import decide_action
from kdspec.tracking.leases import Lease
from kdspec.tracking.ownership import lease_holder
from kdspec.tracking.run_store import StoredRun
from tests.factories import tiny_plan

NOW = 1_000_000_000


def _stored(mlflow_id: str, owner: str, claimed: int, heartbeat: int, *, start: int,
            status: str = "RUNNING") -> StoredRun:
    return StoredRun(mlflow_id=mlflow_id, kdspec_id="k", status=status, epochs_done=0,
                     start_time=start, experiment_id="1", failure="",
                     lease=Lease(owner=owner, claimed_ms=claimed, heartbeat_ms=heartbeat))


def test_the_oldest_live_claim_holds_wherever_it_is_asked() -> None:
    older = _stored("zz", "node-a:11:x", claimed=NOW - 5_000, heartbeat=NOW - 1_000, start=1)
    newer = _stored("aa", "node-b:22:y", claimed=NOW - 2_000, heartbeat=NOW - 500, start=2)
    stored = [older, newer]  # start-time order, as the store returns them
    assert lease_holder(stored, at_ms=NOW, timeout_s=60) is older
    run = tiny_plan().runs[0]
    action = decide_action(run, stored, force=False, lease_timeout_s=60, at_ms=NOW)
    assert action.kind == "elsewhere" and action.stored is older
    status = run_status(run, stored, at_ms=NOW, timeout_s=60)
    assert status.state == "running" and "node-a" in status.detail


def test_expired_or_ended_claims_do_not_hold_and_ties_go_to_the_smaller_id() -> None:
    expired = _stored("a1", "node-a:1:x", claimed=NOW - 900_000, heartbeat=NOW - 700_000,
                      start=1)
    ended = _stored("a2", "node-a:2:x", claimed=NOW - 1_000, heartbeat=NOW - 1_000, start=2,
                    status="KILLED")
    assert lease_holder([expired, ended], at_ms=NOW, timeout_s=600) is None
    first = _stored("b2", "node-b:1:x", claimed=NOW - 1_000, heartbeat=NOW, start=3)
    second = _stored("b1", "node-c:1:x", claimed=NOW - 1_000, heartbeat=NOW, start=4)
    assert lease_holder([first, second], at_ms=NOW, timeout_s=600) is second
