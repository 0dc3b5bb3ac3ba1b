"""Who trains a run (kdspec.tracking.ownership) on an in-memory store: the one run_state rule,
and a claim that is made, settled, verified before every write, renewed by its heartbeat,
released and undone; a process that lost its run writes nothing more to it."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import pytest

from kdspec.plan import Run
from kdspec.tracking import schema
from kdspec.tracking.leases import Lease, claim_tags, now_ms
from kdspec.tracking.ownership import (
    MIN_LEASE_TIMEOUT_S,
    Claim,
    ClaimLost,
    LeaseSettings,
    finished_run,
    heartbeat_interval_s,
    lease_settings_problem,
    run_state,
)
from kdspec.tracking.run_store import StoredRun
from tests.factories import tiny_plan, tiny_recipe
from tests.runtime.memory_store import MemoryStore

NOW = 1_000_000_000
LOGGER = logging.getLogger("kdspec.test")


def _stored(mlflow_id: str, status: str, *, epochs_done: int = 0, start: int = 0,
            owner: str = "", heartbeat: int = 0) -> StoredRun:
    return StoredRun(mlflow_id=mlflow_id, kdspec_id="k", status=status, epochs_done=epochs_done,
                     start_time=start, experiment_id="1", failure="",
                     lease=Lease(owner=owner, claimed_ms=heartbeat, heartbeat_ms=heartbeat))


def _run(epochs: int = 5) -> Run:
    plan = tiny_plan(student_recipe=tiny_recipe(epochs=epochs))
    return plan.runs_of(plan.studies[0], "distilled")[0]


# -- run_state: one word per run id -----------------------------------------------------------

def test_a_finished_run_is_finished_unless_forced_and_the_newest_counts() -> None:
    run = _run()
    old, new = _stored("a", "FINISHED", start=1), _stored("b", "FINISHED", start=2)
    assert finished_run([old, new]) is new
    state = run_state(run, [old, new], at_ms=NOW)
    assert state.kind == "finished" and state.stored is new
    forced = run_state(run, [old, new], at_ms=NOW, force=True)
    assert forced.kind == "fresh" and forced.superseded == (old, new)


def test_a_live_lease_makes_a_run_live_elsewhere_whatever_its_teacher() -> None:
    run = _run()
    live = _stored("a", "RUNNING", owner="node:1:x", heartbeat=NOW - 1_000, epochs_done=2)
    teacher = run_state(_run(), [], at_ms=NOW)  # not finished
    state = run_state(run, [live], at_ms=NOW, timeout_s=60, teacher=teacher)
    assert state.kind == "live" and state.stored is live and state.start_epoch == 2


def test_a_run_whose_teacher_is_not_finished_is_blocked() -> None:
    run = _run()
    teacher = run_state(_run(), [_stored("t", "FAILED")], at_ms=NOW)
    state = run_state(run, [], at_ms=NOW, teacher=teacher)
    assert state.kind == "blocked" and state.teacher is teacher
    done = run_state(_run(), [_stored("t", "FINISHED")], at_ms=NOW)
    assert run_state(run, [], at_ms=NOW, teacher=done).kind == "fresh"


def test_the_newest_unfinished_run_with_a_checkpoint_is_resumable() -> None:
    run = _run(epochs=5)
    old = _stored("a", "KILLED", epochs_done=1, start=1)
    new = _stored("b", "FAILED", epochs_done=3, start=2)
    expired = _stored("c", "RUNNING", epochs_done=0, start=3, owner="x:1:y",
                      heartbeat=NOW - 900_000)
    state = run_state(run, [old, new, expired], at_ms=NOW, timeout_s=600)
    assert state.kind == "resumable" and state.stored is new and state.start_epoch == 3
    assert state.stale == (old, expired)
    # A checkpoint past the recipe's epochs (another recipe) is not resumable: fresh.
    beyond = _stored("d", "KILLED", epochs_done=9, start=4)
    fresh = run_state(run, [beyond], at_ms=NOW)
    assert fresh.kind == "fresh" and fresh.stale == (beyond,) and fresh.stored is beyond


def test_nothing_stored_is_fresh() -> None:
    state = run_state(_run(), [], at_ms=NOW)
    assert state.kind == "fresh" and state.stored is None and not state.stale


# -- lease settings -------------------------------------------------------------------------

def test_a_lease_the_heartbeat_cannot_keep_is_refused() -> None:
    assert heartbeat_interval_s(600) == 200
    assert lease_settings_problem(600, 2) is None
    assert lease_settings_problem(MIN_LEASE_TIMEOUT_S, 0.2) is None
    too_short = lease_settings_problem(2, 0.2)
    assert too_short is not None and "--lease-timeout 2" in too_short
    slow_settle = lease_settings_problem(20, 7)
    assert slow_settle is not None and "--claim-settle 7" in slow_settle


# -- claims -----------------------------------------------------------------------------------

def _claim(store: MemoryStore, owner: str = "me:1:a", *, timeout_s: float = 600.0,
           settle_s: float = 0.0) -> Claim:
    return Claim(store, owner, LeaseSettings(timeout_s, settle_s), LOGGER)


def _maker(store: MemoryStore, kdspec_id: str) -> Callable[..., str]:
    def make(tags: dict[str, str]) -> str:
        return store.create_run(experiment="e", parent_id="p", run_name=kdspec_id,
                                tags={schema.TAG_RUN_ID: kdspec_id, **tags})
    return make


def _take_over(store: MemoryStore, mlflow_id: str, owner: str) -> None:
    """Another process resumes the run in place (the claim of kdspec run's resume)."""
    store.reopen(mlflow_id)
    store.set_tags(mlflow_id, claim_tags(owner, now_ms()))


def test_a_claim_that_loses_at_the_settle_deletes_what_it_created() -> None:
    store = MemoryStore()
    rival = store.create_run(experiment="e", parent_id="", run_name="rival", tags={
        schema.TAG_RUN_ID: "k", **claim_tags("rival:2:b", now_ms() - 1_000)})
    claim = _claim(store)
    mine = claim.create("k", _maker(store, "k"))
    with pytest.raises(ClaimLost, match="k: held by rival:2:b"):
        claim.settle(wait=True)
    assert store.runs[mine].deleted and not store.runs[rival].deleted
    with pytest.raises(ClaimLost):
        claim.check()  # the training thread hears of it at its next batch


@pytest.mark.parametrize("takeover", ["resumed in place", "killed and replaced", "finished"])
def test_a_claim_taken_over_is_lost_and_nothing_more_is_written(takeover: str) -> None:
    """The frozen-owner cases: after another process took the run, verify() fails before any
    write, release() leaves the run alone, and the heartbeat writes nothing."""
    store = MemoryStore()
    claim = _claim(store)
    mine = claim.create("k", _maker(store, "k"))
    claim.settle(wait=True)
    claim.verify()
    if takeover == "resumed in place":
        _take_over(store, mine, "other:2:b")
    elif takeover == "killed and replaced":
        store.finish(mine, "KILLED")
        store.create_run(experiment="e", parent_id="p", run_name="new", tags={
            schema.TAG_RUN_ID: "k", **claim_tags("other:2:b", now_ms())})
    else:
        other = store.create_run(experiment="e", parent_id="p", run_name="new",
                                 tags={schema.TAG_RUN_ID: "k"})
        store.finish(other)
    before = dict(store.runs[mine].tags), store.runs[mine].status
    with pytest.raises(ClaimLost):
        claim.verify()
    with pytest.raises(ClaimLost):
        claim.heartbeat()
    assert claim.release("stop") == []
    assert (dict(store.runs[mine].tags), store.runs[mine].status) == before


def test_a_claim_whose_own_heartbeat_aged_past_two_thirds_of_the_lease_stops_writing() -> None:
    """Frozen long enough that another process may be taking the run over right now: the
    owner does not write (others take a run only after the whole lease)."""
    store = MemoryStore()
    claim = _claim(store, timeout_s=600.0)
    mine = claim.create("k", _maker(store, "k"))
    claim.settle(wait=True)
    store.runs[mine].tags[schema.TAG_LEASE_HEARTBEAT] = str(now_ms() - 401_000)
    with pytest.raises(ClaimLost, match="heartbeat is 401 s old"):
        claim.verify()
    # A stopping owner still releases it (nobody took it yet), so it resumes at once.
    fresh = _claim(store, timeout_s=600.0)
    again = fresh.create("j", _maker(store, "j"))
    fresh.settle(wait=True)
    store.runs[again].tags[schema.TAG_LEASE_HEARTBEAT] = str(now_ms() - 401_000)
    assert fresh.release("SIGTERM") == ["j"] and store.runs[again].status == "KILLED"


def test_the_heartbeat_renews_the_lease_and_stops_once_the_run_is_taken() -> None:
    store = MemoryStore()
    claim = _claim(store, timeout_s=0.6)  # a beat every 0.2 s
    mine = claim.create("k", _maker(store, "k"))
    claim.settle(wait=True)
    first = int(store.runs[mine].tags[schema.TAG_LEASE_HEARTBEAT])
    claim.start_heartbeat()
    try:
        deadline = time.monotonic() + 30
        while int(store.runs[mine].tags[schema.TAG_LEASE_HEARTBEAT]) == first:
            assert time.monotonic() < deadline, "no heartbeat"
            time.sleep(0.02)
        with claim._lock:  # between two beats
            _take_over(store, mine, "other:2:b")
            taken = store.runs[mine].tags[schema.TAG_LEASE_HEARTBEAT]
        while claim._lost is None:
            assert time.monotonic() < deadline, "the heartbeat did not notice"
            time.sleep(0.02)
        with pytest.raises(ClaimLost, match="held by other:2:b"):
            claim.check()
        assert store.runs[mine].tags[schema.TAG_LEASE_HEARTBEAT] == taken
    finally:
        claim.stop_heartbeat()


def test_no_heartbeat_lands_after_a_run_ended() -> None:
    """A beat due while the run's FINISHED is being written waits for it and then skips the
    ended run: its heartbeat never postdates its end time (seen once on a loaded machine
    against an mlflow server, 200 ms after the end)."""
    store = MemoryStore()
    claim = _claim(store)
    mine = claim.create("k", _maker(store, "k"))
    claim.settle(wait=True)
    beat = threading.Thread(target=claim.heartbeat)
    with claim.ending("k"):
        claim.verify()
        beat.start()
        beat.join(timeout=0.3)
        assert beat.is_alive()  # waiting for the lock, not writing
        store.finish(mine)
        ended_ms = now_ms()
    beat.join(timeout=30)
    assert not beat.is_alive()
    assert int(store.runs[mine].tags[schema.TAG_LEASE_HEARTBEAT]) <= ended_ms


def test_two_finished_runs_of_one_id_are_resolved_to_one() -> None:
    """Both processes checked, then both finished (one froze between its check and its write):
    the one that looks after finishing keeps the run finished_run picks and retires the other."""
    store = MemoryStore()
    claim = _claim(store)
    mine = claim.create("k", _maker(store, "k"))
    claim.settle(wait=True)
    other = store.create_run(experiment="e", parent_id="p", run_name="other",
                             tags={schema.TAG_RUN_ID: "k"})
    store.finish(other)
    store.finish(mine)
    claim.end("k")
    claim.resolve_finished("k")
    finished = [r for r in store.nested("k") if r.status == "FINISHED"]
    assert len(finished) == 1
    [retired] = [r for r in store.nested("k") if r.status == "KILLED"]
    assert retired.tags[schema.TAG_SUPERSEDED_BY] == finished[0].mlflow_id


def test_a_released_claim_ends_its_runs_killed_and_resumable_at_once() -> None:
    store = MemoryStore()
    claim = _claim(store)
    one, two = claim.create("a", _maker(store, "a")), claim.create("b", _maker(store, "b"))
    claim.settle(wait=True)
    store.finish(two)  # ended here already (e.g. FAILED)
    claim.end("b")
    assert claim.release("SIGTERM: stopped in epoch 2") == ["a"]
    assert store.runs[one].status == "KILLED"
    assert store.runs[one].tags[schema.TAG_INTERRUPTED] == "SIGTERM: stopped in epoch 2"
    run = _run()
    stored = store.find_runs(["a"])["a"]
    assert run_state(run, stored, at_ms=now_ms()).kind == "fresh"  # no lease to wait out
