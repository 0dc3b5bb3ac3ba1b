"""Who trains a run: the one place that decides it. The protocol is described once, in
docs/running.md ("Who trains a run"); this module is its code.

- :func:`run_state`: what the store holds for one kdspec run id, in one word (finished, live
  elsewhere, resumable, fresh, blocked), with the stored run that decides it. The scheduler, the
  executor, ``kdspec status`` and the report all ask it; none decides again.
- :func:`lease_holder`: the rule for "who holds this run right now": the oldest live claim.
- :func:`finished_run`: which FINISHED run of an id counts (the newest).
- :class:`Claim`: this process's claim on the runs of one lockstep group. It is made (runs created
  or reopened with lease tags), settled (checked once after a settle time: MLflow has no
  compare-and-set), verified before every write, renewed by a heartbeat thread every third of
  the lease, released on a stop signal and undone when it lost at the settle. A process whose
  claim no longer holds writes nothing more to the run: :class:`ClaimLost` tells its caller.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Literal, Protocol, TypeVar

from kdspec.plan import Run, Study
from kdspec.tracking import schema
from kdspec.tracking.leases import Lease, claim_tags, heartbeat_tags, now_ms
from kdspec.tracking.run_store import RunStore, StoredParent, StoredRun

#: A run whose heartbeat is older than this is taken for interrupted (``--lease-timeout``).
DEFAULT_LEASE_TIMEOUT_S = 600.0
#: Seconds between making a claim and checking that it held (``--claim-settle``).
CLAIM_SETTLE_S = 2.0
#: The owner renews its heartbeat this many times per lease, so a healthy owner's heartbeat is
#: never older than a third of the lease when another process looks.
HEARTBEATS_PER_LEASE = 3
#: The shortest lease a heartbeat can keep: renewed every second (a write to a local store
#: takes milliseconds, one to a server tens of them; see docs/running.md).
MIN_LEASE_TIMEOUT_S = 3.0
MSG_LEASE_TOO_SHORT = (
    "--lease-timeout {lease:g}: a lease is renewed every third of itself, and one under "
    f"{MIN_LEASE_TIMEOUT_S:g} s cannot be kept by the heartbeat; use at least "
    f"{MIN_LEASE_TIMEOUT_S:g}"
)
MSG_SETTLE_TOO_LONG = (
    "--claim-settle {settle:g}: a claim is checked after the settle time, which must be under a "
    "third of the lease ({lease:g} s), or a healthy owner's claim would count as expired at its "
    "own check"
)

RunStateKind = Literal["finished", "live", "resumable", "fresh", "blocked"]


def heartbeat_interval_s(lease_timeout_s: float) -> float:
    """How often an owner renews its heartbeat: a third of the lease."""
    return lease_timeout_s / HEARTBEATS_PER_LEASE


def lease_settings_problem(lease_timeout_s: float, settle_s: float) -> str | None:
    """Why a lease timeout and settle time cannot work together (None: they can)."""
    if lease_timeout_s < MIN_LEASE_TIMEOUT_S:
        return MSG_LEASE_TOO_SHORT.format(lease=lease_timeout_s)
    if settle_s < 0 or settle_s >= heartbeat_interval_s(lease_timeout_s):
        return MSG_SETTLE_TOO_LONG.format(settle=settle_s, lease=lease_timeout_s)
    return None


def is_live(status: str, lease: Lease, *, at_ms: int, timeout_s: float) -> bool:
    """Whether a stored run is being trained right now by some process: RUNNING, a heartbeat
    younger than the lease, and not an owner known to be dead (same machine, pid gone)."""
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
    (ties: the smaller MLflow run id); None when no run is live."""
    live = [s for s in stored if is_live(s.status, s.lease, at_ms=at_ms, timeout_s=timeout_s)]
    return min(live, key=lambda s: (s.lease.claimed_ms, s.mlflow_id), default=None)


def finished_run(stored: Sequence[StoredRun]) -> StoredRun | None:
    """The FINISHED run that counts for one kdspec id: the newest (``stored`` oldest first, as
    the store returns it). A store normally holds one (a ``--force`` retraining retires the
    old one when the new one finishes); several can be left by kdspec versions before claims
    were verified, and the report says so."""
    done = [s for s in stored if s.status == "FINISHED"]
    return done[-1] if done else None


@dataclass(frozen=True)
class RunState:
    """What the store holds for one run id.

    ``stored``: the FINISHED run (finished), the holder (live), the run to resume (resumable),
    the newest unfinished run (fresh, blocked; None when none exists). ``stale``: unfinished runs
    a new training or resumption replaces; ``superseded``: FINISHED runs a ``--force`` retraining
    retires once it finishes; ``teacher``: a blocked run's teacher state."""

    run: Run
    kind: RunStateKind
    stored: StoredRun | None = None
    start_epoch: int = 0
    stale: tuple[StoredRun, ...] = ()
    superseded: tuple[StoredRun, ...] = ()
    teacher: RunState | None = None


def run_state(run: Run, stored: Sequence[StoredRun], *, at_ms: int,
              timeout_s: float = DEFAULT_LEASE_TIMEOUT_S, force: bool = False,
              teacher: RunState | None = None) -> RunState:
    """The state of ``run`` from its stored runs (oldest first):

    - finished: it has a FINISHED run (unless ``force``: retrain it);
    - live: another process holds it (:func:`lease_holder`);
    - blocked: its teacher (state given in ``teacher``) is not finished;
    - resumable: the newest unfinished run that saved a checkpoint it can resume from;
    - fresh: nothing to reuse or resume: it trains from its first epoch.
    """
    done = finished_run(stored)
    if done is not None and not force:
        return RunState(run, "finished", stored=done)
    holder = lease_holder(stored, at_ms=at_ms, timeout_s=timeout_s)
    if holder is not None:
        return RunState(run, "live", stored=holder, start_epoch=holder.epochs_done)
    unfinished = tuple(s for s in stored if s.status != "FINISHED")
    newest = unfinished[-1] if unfinished else None
    if teacher is not None and teacher.kind != "finished" and not force:
        return RunState(run, "blocked", stored=newest, teacher=teacher)
    resumable = [s for s in unfinished if 0 < s.epochs_done <= run.recipe.epochs]
    if resumable and not force:
        resume = resumable[-1]
        return RunState(run, "resumable", stored=resume, start_epoch=resume.epochs_done,
                        stale=tuple(s for s in unfinished if s is not resume))
    finished = tuple(s for s in stored if s.status == "FINISHED")
    return RunState(run, "fresh", stored=newest, stale=unfinished, superseded=finished)


def first_made(parents: Sequence[StoredParent]) -> StoredParent | None:
    """Of several parent runs of one study made by processes that did not see each other, the
    one that counts: made first, ties to the smaller MLflow id."""
    return min(parents, key=lambda p: (p.start_time, p.mlflow_id), default=None)


def find_parent(store: RunStore, study: Study) -> str | None:
    """The MLflow id of the study's parent run, if one exists (never creates it)."""
    found = first_made(store.parents(study))
    return None if found is None else found.mlflow_id


def claim_parent(store: RunStore, study: Study, *, plan_json: str, spec_text: str | None,
                 overrides: tuple[str, ...] = (), settle_s: float = CLAIM_SETTLE_S) -> str:
    """The study's parent run: the existing one (reopened if it had ended), or a new one. A new
    one is checked after the settle time, like a claim: of the parents made meanwhile the first
    made wins, and the others are deleted by the processes that made them before any run
    refers to them."""
    existing = first_made(store.parents(study))
    if existing is not None:
        if existing.status != "RUNNING":
            store.reopen(existing.mlflow_id)
        return existing.mlflow_id
    mine = store.create_parent(study, overrides=overrides)
    if settle_s > 0:
        time.sleep(settle_s)
    winner = first_made(store.parents(study))
    if winner is not None and winner.mlflow_id != mine:
        store.delete_run(mine)
        return winner.mlflow_id
    store.describe_parent(mine, study, plan_json=plan_json, spec_text=spec_text)
    return mine


class ClaimLost(Exception):
    """Another process holds (or just took, or finished) one of the claimed runs; this
    process has written nothing more to it."""


@dataclass(frozen=True)
class LeaseSettings:
    """The lease timeout and claim settle time of one ``kdspec run``."""

    timeout_s: float = DEFAULT_LEASE_TIMEOUT_S
    settle_s: float = CLAIM_SETTLE_S

    @property
    def heartbeat_s(self) -> float:
        return heartbeat_interval_s(self.timeout_s)

    @property
    def own_timeout_s(self) -> float:
        """How fresh this process's own heartbeat must be for it to go on writing: two thirds
        of the lease. Others take a run over only after the whole lease, so a write made right
        after a check can never land in a run another process has taken (unless this process
        stops for a third of the lease between its check and its write: see docs/running.md)."""
        return self.timeout_s - self.heartbeat_s


@dataclass
class HeldRun:
    """One run of a claim: its MLflow run, whether this claim created it, the FINISHED runs
    its training replaces (``--force``), and whether it has ended here."""

    run_id: str
    mlflow_id: str
    created: bool
    superseded: frozenset[str] = frozenset()
    ended: bool = False


@dataclass
class Claim:
    """This process's claim on the runs of one lockstep group (see the module docstring).

    Thread-safe: the training thread, the write queue's thread and the heartbeat thread all
    verify through it."""

    store: RunStore
    owner: str
    lease: LeaseSettings = field(default_factory=LeaseSettings)
    logger: logging.Logger = field(default_factory=lambda: logging.getLogger("kdspec.run"))
    held: dict[str, HeldRun] = field(default_factory=dict)
    _made_at: float = 0.0
    _settled: bool = False
    _lost: ClaimLost | None = None
    _lock: threading.RLock = field(default_factory=threading.RLock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _heartbeat: threading.Thread | None = None

    # -- making -------------------------------------------------------------------------------
    def tags(self) -> dict[str, str]:
        """The lease tags a claim writes on its runs."""
        return claim_tags(self.owner, now_ms())

    def retire(self, stale: Sequence[StoredRun], *, replaced_by: str) -> None:
        """Mark unfinished runs this claim replaces KILLED (FAILED ones keep their status and
        reason), naming what replaced them."""
        for old in stale:
            if old.status == "RUNNING":
                self.store.set_tags(old.mlflow_id, {schema.TAG_REPLACED_BY: replaced_by})
                self.store.finish(old.mlflow_id, "KILLED")

    def reopen(self, run_id: str, stored: StoredRun) -> None:
        """Claim a stored run to resume it in place."""
        self.store.reopen(stored.mlflow_id)
        self.store.set_tags(stored.mlflow_id, self.tags())
        self._hold(HeldRun(run_id, stored.mlflow_id, created=False))

    def create(self, run_id: str, make: Callable[[Mapping[str, str]], str],
               superseded: Sequence[StoredRun] = ()) -> str:
        """Claim a run by making a new MLflow run with ``make(claim tags)``."""
        mlflow_id = make(self.tags())
        self._hold(HeldRun(run_id, mlflow_id, created=True,
                           superseded=frozenset(s.mlflow_id for s in superseded)))
        return mlflow_id

    def _hold(self, held: HeldRun) -> None:
        with self._lock:
            self.held[held.run_id] = held
            self._made_at = time.monotonic()
            self._settled = False

    def mlflow_id(self, run_id: str) -> str:
        held = self.held.get(run_id)
        return held.mlflow_id if held is not None else ""

    # -- checking -----------------------------------------------------------------------------
    def settle(self, *, wait: bool) -> bool:
        """Check the claim once the settle time has passed since it was made (sleeping out the
        rest with ``wait``). A claim that lost here is undone (the runs it created deleted) and
        raises ClaimLost. Returns whether the claim is settled."""
        with self._lock:
            if self._lost is not None:
                raise self._lost
            if self._settled:
                return True
            left = self.lease.settle_s - (time.monotonic() - self._made_at)
            if left > 0 and not wait:
                return False
        if left > 0:
            time.sleep(left)
        with self._lock:
            if self._settled:
                return True
            try:
                self._check()
            except ClaimLost as lost:
                self._lost = lost
                self._undo()
                raise
            self._settled = True
            return True

    def verify(self) -> None:
        """Raise ClaimLost unless this process still holds every run of the claim that has
        not ended: settled; no other FINISHED run; its run RUNNING and the lease holder; its own
        heartbeat fresh enough to write (:attr:`LeaseSettings.own_timeout_s`)."""
        self.settle(wait=True)
        with self._lock:
            if self._lost is not None:
                raise self._lost
            try:
                self._check()
            except ClaimLost as lost:
                self._lost = lost
                raise

    def check(self) -> None:
        """Raise ClaimLost if the heartbeat found the claim lost (cheap: no store access; the
        training thread calls it after every batch)."""
        if self._lost is not None:
            raise self._lost

    def _check(self) -> None:
        open_runs = [h for h in self.held.values() if not h.ended]
        if not open_runs:
            return
        stored = self.store.find_runs([h.run_id for h in open_runs])
        at = now_ms()
        for held in open_runs:
            problem = self._problem(held, stored[held.run_id], at)
            if problem is not None:
                raise ClaimLost(f"{held.run_id}: {problem}")

    def _problem(self, held: HeldRun, stored: Sequence[StoredRun], at: int) -> str | None:
        """Why this process no longer holds ``held`` (None: it does)."""
        other_done = [s for s in stored if s.status == "FINISHED"
                      and s.mlflow_id != held.mlflow_id and s.mlflow_id not in held.superseded]
        if other_done:
            return f"finished by another process (MLflow run {other_done[-1].mlflow_id})"
        mine = next((s for s in stored if s.mlflow_id == held.mlflow_id), None)
        if mine is None:
            return f"its MLflow run {held.mlflow_id} is gone"
        if mine.status != "RUNNING":
            return (f"its MLflow run {held.mlflow_id} was ended ({mine.status}) by another "
                    "process that took it over")
        holder = lease_holder(stored, at_ms=at, timeout_s=self.lease.timeout_s)
        if holder is None or holder.mlflow_id != held.mlflow_id or holder.lease.owner != self.owner:
            who = holder.lease.owner if holder is not None else "nobody (the lease expired)"
            return f"held by {who}"
        if mine.lease.age_s(at) >= self.lease.own_timeout_s:
            return (f"this process's heartbeat is {mine.lease.age_s(at):.0f} s old (stopped or "
                    "frozen): another process may be taking it over")
        return None

    # -- keeping ------------------------------------------------------------------------------
    def start_heartbeat(self) -> None:
        """Renew the heartbeat of every held run every third of the lease, in a thread (also
        through long evaluations, uploads and teacher-cache builds), checking the claim first;
        a lost claim is logged and raised at the training thread's next :meth:`check`."""
        if self._heartbeat is not None:
            return
        self._stop.clear()
        self._heartbeat = threading.Thread(target=self._beat, name="kdspec-heartbeat",
                                           daemon=True)
        self._heartbeat.start()

    def _beat(self) -> None:
        while not self._stop.wait(self.lease.heartbeat_s):
            try:
                self.heartbeat()
            except ClaimLost as lost:
                self.logger.warning("lost the claim on %s; this process writes nothing more "
                                    "to it", lost)
                return
            except Exception as err:  # a store hiccup: the next beat tries again
                self.logger.debug("heartbeat failed: %s", err)

    def heartbeat(self) -> None:
        """Verify the claim, then renew the heartbeat of its open runs."""
        with self._lock:
            self.verify()
            tags = heartbeat_tags(now_ms())
            for held in self.held.values():
                if not held.ended:
                    self.store.set_tags(held.mlflow_id, tags)

    def stop_heartbeat(self) -> None:
        self._stop.set()
        thread, self._heartbeat = self._heartbeat, None
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    # -- ending -------------------------------------------------------------------------------
    def end(self, run_id: str) -> None:
        """``run_id`` ended here (finished or failed): no longer verified or renewed."""
        with self._lock:
            if run_id in self.held:
                self.held[run_id].ended = True

    @contextmanager
    def ending(self, run_id: str) -> Iterator[None]:
        """Hold the claim's lock while the run's terminal status is written, then mark it ended:
        the heartbeat thread waits, so no heartbeat lands after the run's end time."""
        with self._lock:
            yield
            self.end(run_id)

    def resolve_finished(self, run_id: str) -> None:
        """After this process marked ``run_id`` FINISHED: if another FINISHED run of the id
        appeared meanwhile (two processes each checked, then both finished: possible only when
        one was frozen between its check and its write), keep the one :func:`finished_run`
        picks and retire the others, so the store ends with exactly one."""
        held = self.held[run_id]
        stored = self.store.find_runs([run_id])[run_id]
        done = [s for s in stored if s.status == "FINISHED" and s.mlflow_id not in held.superseded]
        winner = finished_run(done)
        if winner is None or len(done) < 2:
            return
        for other in done:
            if other.mlflow_id != winner.mlflow_id:
                self.logger.warning("%s: two processes finished it; keeping MLflow run %s and "
                                    "retiring %s", run_id, winner.mlflow_id, other.mlflow_id)
                self.store.set_tags(other.mlflow_id, {schema.TAG_SUPERSEDED_BY: winner.mlflow_id})
                self.store.finish(other.mlflow_id, "KILLED")

    def release(self, reason: str) -> list[str]:
        """Give up every open run this process still holds (a stop signal, a lost group): each
        ends KILLED with ``reason`` in ``kdspec.interrupted``, resumable at once by anyone. Runs
        this process no longer holds are not touched. Returns the released run ids."""
        self.stop_heartbeat()
        released = []
        with self._lock:
            for held in self.held.values():
                if held.ended or not self._still_holds(held):
                    continue
                self.store.set_tags(held.mlflow_id, {schema.TAG_INTERRUPTED: reason})
                self.store.finish(held.mlflow_id, "KILLED")
                held.ended = True
                released.append(held.run_id)
        return released

    def _still_holds(self, held: HeldRun) -> bool:
        if not self._settled:
            try:
                self.settle(wait=True)
            except ClaimLost:
                return False
        stored = self.store.find_runs([held.run_id])[held.run_id]
        problem = self._problem(held, stored, now_ms())
        # A stopped process may release what it holds even when its heartbeat has aged.
        return problem is None or problem.startswith("this process's heartbeat")

    def _undo(self) -> None:
        """A claim that lost at the settle: delete the runs it created (nothing else of this
        process was written on them) and stop holding anything."""
        for held in self.held.values():
            if held.created:
                self.store.delete_run(held.mlflow_id)
            held.ended = True
