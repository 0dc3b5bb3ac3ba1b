"""``kdspec run``: execute a plan's runs with MLflow tracking.

1. Take this machine's share of the plan (``--shard``, Slurm array, and under ``accelerate
   launch`` this process's share of it), narrowed by ``--only``.
2. Before any training: every tracking store answers and can store artifacts, every study's
   data is there (one clear error otherwise).
3. Look every run up by ``kdspec.run_id`` across the store and act on its state
   (:func:`kdspec.tracking.ownership.run_state`, the one rule; who trains a run is described
   once, in docs/running.md, "Who trains a run"): reuse, leave to its holder, resume, train.
4. Train the lockstep groups in plan order (teachers first), each a
   :class:`~kdspec.runtime.lockstep_group.LockstepGroup`. Right before a group trains, its runs
   (and its teacher) are looked up again; a group whose runs another process holds, or whose
   claim another process wins (or takes over later), is deferred and tried again after the
   others; when only such groups are left, the executor waits until the first blocking lease
   can have expired (at most ``--poll-seconds``), naming the run, its owner and the expiry.
5. A stop signal (:mod:`kdspec.runtime.stop_request`) ends the current group after its batch
   (its runs released, resumable at once) and leaves the rest; the parents end KILLED.
6. Return one :class:`Outcome` per run; the command prints the summary.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TypeVar

import torch
from accelerate import Accelerator
from accelerate.utils import InitProcessGroupKwargs, broadcast_object_list, gather_object

from kdspec.errors import DataParallelFailure, KdspecError, OutOfSpace, TrackingError
from kdspec.plan import Plan, Run, Study
from kdspec.runtime.data import check_dataset_available, load_dataset
from kdspec.runtime.disk_space import (
    MSG_LITTLE_ROOM,
    MSG_NO_ROOM,
    free_bytes,
    human,
    space_need,
)
from kdspec.runtime.interfaces import LoadedDataset
from kdspec.runtime.lockstep_group import GroupContext, GroupSettings, LockstepGroup, Outcome
from kdspec.runtime.precision import accelerator_mode, autocast_factory, configure_cuda_numerics
from kdspec.runtime.progress import GroupProgress, PlanClock, console_mode
from kdspec.runtime.run_options import RunOptions, select_runs
from kdspec.runtime.run_writer import NullWriter, RunWriter, StoreWriter
from kdspec.runtime.scheduling import (
    Action,
    Group,
    form_groups,
    group_epoch_costs,
    group_remaining_cost,
    runs_of_share,
)
from kdspec.runtime.stop_request import Stopped, StopRequest
from kdspec.runtime.weights import CheckpointUnusable, StoreWeights
from kdspec.tracking.leases import new_owner, now_ms
from kdspec.tracking.ownership import (
    ClaimLost,
    LeaseSettings,
    RunState,
    claim_parent,
    find_parent,
    finished_run,
    run_state,
)
from kdspec.tracking.reachability import is_unreachable
from kdspec.tracking.run_layout import run_name
from kdspec.tracking.run_store import DatasetRecord, RunStore, StoredRun
from kdspec.tracking.schema import resolve_tracking_uri
from kdspec.tracking.store import MlflowStore
from kdspec.tracking.store_uri import local_artifact_root

T = TypeVar("T")


#: How long a collective (a barrier, an all-reduce) may wait for the other processes. Spreading
#: jobs, processes meet only at the end of the plan, hours apart; data-parallel, they meet every
#: step, and a process that failed exits (its peers' collectives then fail at once), so the
#: timeout only bounds a process that hangs without exiting.
JOB_SPREADING_TIMEOUT = timedelta(days=7)
DATA_PARALLEL_TIMEOUT = timedelta(minutes=30)


def make_accelerator(plan: Plan, *, collective_timeout: timedelta = JOB_SPREADING_TIMEOUT,
                     force_cpu: bool = False) -> Accelerator:
    """One Accelerator per process, with the plan's precision when all its studies agree.

    Accelerate keeps its state per process: if it was already set up with another precision
    (several plans in one Python process, as in tests), reuse it; :func:`autocast_factory` then
    falls back to ``torch.autocast`` for the studies it does not match.
    """
    wanted = accelerator_mode(s.runtime.precision for s in plan.studies)
    # Without an accelerator, cpu=True is what lets Accelerate see the processes of
    # `accelerate launch --multi_gpu` / torchrun (it then uses gloo); otherwise every process
    # believes it is alone.
    cpu = force_cpu or not torch.cuda.is_available()
    handlers = [InitProcessGroupKwargs(timeout=collective_timeout)]
    try:
        return Accelerator(mixed_precision=wanted, cpu=cpu, kwargs_handlers=handlers)
    except ValueError:
        return Accelerator(cpu=cpu, kwargs_handlers=handlers)


def use_data_parallel(plan: Plan, options: RunOptions, num_processes: int) -> bool:
    """Data-parallel (every process trains every run on its share of each epoch's batches)
    instead of job-spreading (each process trains whole runs): ``--data-parallel on``, or
    ``auto`` with several processes and an ImageNet study."""
    if num_processes < 2 or options.data_parallel == "off":
        return False
    if options.data_parallel == "on":
        return True
    return any(s.dataset.name == "imagenet" for s in plan.studies)


@dataclass(frozen=True)
class Preparation:
    """What will happen, before anything is trained (also what ``--dry-run`` prints)."""

    actions: list[Action]
    blocked: dict[str, str]  # run id -> why it cannot run (teacher missing)
    groups: list[Group]  # the runs to train or resume, in lockstep groups, in training order
    #: Runs another process is training now, grouped as they would train here: looked at again
    #: while this process works, taken over when their lease expires or their owner is gone.
    waiting: list[Group] = field(default_factory=list)


@dataclass(frozen=True)
class Blocker:
    """The run a deferred group waits for, and the lease that holds it."""

    run: Run
    stored: StoredRun

    def expires_in_s(self, timeout_s: float) -> float:
        """Seconds until the lease expires if its owner stops renewing it."""
        return max(0.0, timeout_s - self.stored.lease.age_s(now_ms()))

    def describe(self, timeout_s: float) -> str:
        lease = self.stored.lease
        run = self.run
        what = f"{run.role} {run.arch} seed {run.seed}" + (
            f" T={run.temperature:g}" if run.temperature is not None else "")
        return (f"{what} (kdspec id {run.id}, MLflow run {self.stored.mlflow_id}) is held by "
                f"{lease.owner or 'an unknown process'}, heartbeat "
                f"{lease.age_s(now_ms()):.0f} s ago; its lease expires in "
                f"{self.expires_in_s(timeout_s):.0f} s unless renewed")


#: Opens the store of a tracking URI (``read_only`` for ``--dry-run``).
StoreOpener = Callable[..., RunStore]


class Executor:
    """Runs one plan in this process. ``open_store`` makes the store of a tracking URI:
    MLflow's, or the tests' in-memory one."""

    def __init__(self, plan: Plan, options: RunOptions, logger: logging.Logger, *,
                 open_store: StoreOpener = MlflowStore, stop: StopRequest | None = None):
        self.plan = plan
        self.stop = stop if stop is not None else StopRequest()
        #: Set when a stop signal ended :meth:`execute` early.
        self.stopped: Stopped | None = None
        self._blockers: dict[str, Blocker] = {}
        #: Runs of the groups still pending in this pass: a group whose teacher is one of them
        #: waits for it instead of counting it as missing.
        self._waiting_ids: set[str] = set()
        self.open_store = open_store
        self.options = options
        self.logger = logger
        world = int(os.environ.get("WORLD_SIZE", "1") or 1)
        self.accelerator = make_accelerator(
            plan, collective_timeout=DATA_PARALLEL_TIMEOUT
            if use_data_parallel(plan, options, world) else JOB_SPREADING_TIMEOUT,
            force_cpu=options.cpu)
        configure_cuda_numerics(self.accelerator.device)
        self.processes = self.accelerator.num_processes
        self.process_index = self.accelerator.process_index
        self.data_parallel = use_data_parallel(plan, options, self.processes)
        self.stores: dict[str, RunStore] = {}
        self.owner = new_owner()
        self._datasets: dict[str, LoadedDataset] = {}
        self._dataset_records: dict[str, DatasetRecord] = {}

    @property
    def writes_tracking(self) -> bool:
        """Whether this process writes MLflow and prints: all of them when spreading jobs, only
        process 0 when training data-parallel."""
        return self.process_index == 0 or not self.data_parallel

    def _agree(self, value: T) -> T:
        """Data-parallel: every process takes process 0's value (one decision for all)."""
        if not self.data_parallel:
            return value
        return broadcast_object_list([value], from_process=0)[0]

    # -- what to do ---------------------------------------------------------------------------
    def store_of(self, study: Study) -> RunStore:
        uri = resolve_tracking_uri(self.options.tracking_uri, study)
        if uri not in self.stores:
            self.stores[uri] = self.open_store(uri, read_only=self.options.dry_run)
        return self.stores[uri]

    def my_runs(self) -> list[Run]:
        """This process's runs: shard ``i/n`` of the plan, then (job-spreading) share ``p/P`` of
        it, as one share ``i * P + p`` of ``n * P``; then ``--only``."""
        shard = self.options.shard
        if self.data_parallel:
            runs = runs_of_share(self.plan, shard.index, shard.count)
        else:
            runs = runs_of_share(self.plan, shard.index * self.processes + self.process_index,
                                 shard.count * self.processes)
        ids = [r.id for r in self.plan.runs]
        keep = select_runs(ids, {r.id: r.role for r in self.plan.runs}, self.options.only)
        return [r for r in runs if r.id in keep]

    def preflight(self, runs: list[Run]) -> None:
        """Every store reachable and writable, every needed dataset present: else one error."""
        studies = self._studies_of(self.plan.runs)
        # Process 0 opens the stores first (the others find them made).
        error: KdspecError | None = None
        for turn in (0, 1):
            if (self.process_index == 0) == (turn == 0):
                try:
                    for study in studies:
                        self.store_of(study).preflight()
                except KdspecError as err:
                    error = err
            if self.processes > 1:
                self.accelerator.wait_for_everyone()
        if error is not None:
            raise error
        for study in self._studies_of(runs):
            check_dataset_available(study.dataset, cache_dir=self.options.cache_dir)

    def check_space(self, prep: Preparation) -> None:
        """Room for the checkpoints of what will train (:mod:`kdspec.runtime.disk_space`): the
        working folder must hold the largest group's epoch checkpoints and a local artifact
        store the next group's artifacts (else OutOfSpace, nothing trained); a store that
        cannot hold every run's is warned about."""
        if not self.writes_tracking or not prep.groups:
            return
        runs = [r for g in prep.groups + prep.waiting for r in g.runs]
        largest = max((g.runs for g in prep.groups), key=len)
        need = space_need(runs, largest)
        first = space_need(prep.groups[0].runs, prep.groups[0].runs)
        folders = [(Path(tempfile.gettempdir()), need.workdir, need.workdir, "TMPDIR")]
        for study in self._studies_of(runs):
            root = local_artifact_root(self.store_of(study).uri)
            if root is not None:
                folders.append((root, first.artifacts, need.artifacts, "--tracking-uri"))
        unknown = f" (not counting {', '.join(need.unknown)})" if need.unknown else ""
        for folder, now, later, option in dict.fromkeys(folders):
            free = free_bytes(folder)
            if free < now:
                raise OutOfSpace(MSG_NO_ROOM.format(folder=folder, free=human(free),
                                                    need=human(now), option=option,
                                                    what="the checkpoints of its runs"))
            if free < later:
                self.logger.warning(MSG_LITTLE_ROOM.format(folder=folder, free=human(free),
                                                           need=human(later), unknown=unknown))

    def _stored(self, runs: Sequence[Run]) -> dict[str, list[StoredRun]]:
        stored: dict[str, list[StoredRun]] = {}
        for store, ids in self._ids_by_store(runs).items():
            stored.update(store.find_runs(ids))
        return stored

    def _decide(self, run: Run, stored: Sequence[StoredRun]) -> Action:
        return Action.of(self._state(run, stored))

    def _state(self, run: Run, stored: Sequence[StoredRun], *,
               teacher: RunState | None = None) -> RunState:
        return run_state(run, stored, at_ms=now_ms(), timeout_s=self.options.lease_timeout_s,
                         force=self.options.force, teacher=teacher)

    def prepare(self, runs: list[Run]) -> Preparation:
        """Decide each run's action from the store; find distilled runs with no teacher."""
        stored = self._stored(runs)
        actions = [self._decide(r, stored[r.id]) for r in runs]
        trained_here = {a.run.id for a in actions}
        outside = [self.plan.run(t) for t in {r.teacher_id for r in runs if r.teacher_id}
                   if t not in trained_here]
        teachers = self._stored(outside)
        blocked: dict[str, str] = {}
        for run in runs:
            tid = run.teacher_id
            if tid in teachers and not any(s.status == "FINISHED" or s.status == "RUNNING"
                                           for s in teachers[tid]):
                blocked[run.id] = (f"teacher {tid} is not trained and not selected "
                                   "(drop --only, or run the teacher's shard first)")
        kept = [a for a in actions if a.run.id not in blocked]
        # Grouped as they would train here: a "train" action stands in for each, as _refresh
        # decides again from the store before anything is done with them.
        waiting = form_groups(self.plan, [Action(a.run, "train") for a in kept
                                          if a.kind == "elsewhere"])
        return Preparation(kept, blocked, form_groups(self.plan, kept), waiting)

    def close(self) -> None:
        """Several processes: destroy the process group before the interpreter exits (what
        ``Accelerator.end_training`` does). Left to interpreter finalisation, gloo's worker
        threads can abort the process ("terminate called without an active exception",
        SIGABRT) after every run has finished, and ``accelerate launch`` then fails."""
        if self.processes > 1:
            self.accelerator.end_training()

    # -- doing it -----------------------------------------------------------------------------
    def execute(self, prep: Preparation, *, spec_text: str | None) -> list[Outcome]:
        """Train every group of ``prep``; returns one outcome per run (reused ones included)."""
        outcomes: dict[str, Outcome] = {}
        for rid, reason in prep.blocked.items():
            outcomes[rid] = Outcome(self.plan.run(rid), "skipped", reason)
        for action in prep.actions:
            if action.kind == "reuse" and action.stored is not None:
                outcomes[action.run.id] = Outcome(action.run, "reused",
                                                  mlflow_id=action.stored.mlflow_id,
                                                  test_acc=action.stored.test_acc,
                                                  flags=action.stored.flags)
            elif action.kind == "elsewhere":
                outcomes[action.run.id] = Outcome(action.run, "elsewhere", action.describe())
        parents = self._parent_runs(prep)
        clock = PlanClock(total=sum(group_remaining_cost(self.plan, g) for g in prep.groups))
        places = self._places(prep)
        order = {r.id: i for i, r in enumerate(self.plan.runs)}
        try:
            with tempfile.TemporaryDirectory(prefix="kdspec-run-") as tmp:
                pending = sorted(prep.groups + prep.waiting,
                                 key=lambda g: order[g.runs[0].id])
                while pending:
                    deferred = []
                    self._waiting_ids = {r.id for g in pending for r in g.runs}
                    for group in pending:
                        if self.stop.requested or not self._attempt(
                                group, outcomes, parents, Path(tmp), clock, places):
                            deferred.append(group)
                    if self.stop.requested:
                        self._stop_here(deferred, outcomes)
                        break
                    if not deferred:
                        break
                    if len(deferred) == len(pending):  # nothing moved: wait for the others
                        self._wait_for(deferred)
                    pending = deferred
        except BaseException as err:
            # The plan stops here (a dataset that cannot be read, Ctrl-C): the parent runs say
            # so instead of staying RUNNING for ever. Finished runs are kept. A lost store
            # cannot be told anything; a full disk may refuse the telling too.
            if not (isinstance(err, TrackingError) or is_unreachable(err)):
                status = "KILLED" if isinstance(err, KeyboardInterrupt) else "FAILED"
                # A failed data-parallel group: the peers are gone, meet at no barrier.
                with contextlib.suppress(*(Exception,) if isinstance(err, OutOfSpace) else ()):
                    self._end_parents(parents, outcomes,
                                      interrupted=(status, f"{type(err).__name__}: {err}"),
                                      together=not isinstance(err, DataParallelFailure))
            raise
        if self.stopped is not None:
            self._end_parents(parents, outcomes, interrupted=("KILLED", str(self.stopped)))
        else:
            self._end_parents(parents, outcomes)
        return sorted(outcomes.values(), key=lambda o: order[o.run.id])

    def _stop_here(self, left: list[Group], outcomes: dict[str, Outcome]) -> None:
        """A stop signal: the groups not started are left for the next run."""
        assert self.stop.signal_number is not None
        self.stopped = Stopped(self.stop.signal_number)
        for group in left:
            for run in group.runs:
                if outcomes.get(run.id) is None or outcomes[run.id].status == "elsewhere":
                    outcomes[run.id] = Outcome(run, "interrupted",
                                               f"not started: {self.stopped}")

    def _wait_for(self, deferred: list[Group]) -> None:
        """Sleep until the first blocking lease can have expired (at most ``poll_seconds``),
        saying which run blocks which group; a stop signal ends the wait."""
        timeout = self.options.lease_timeout_s
        blockers = [self._blockers[g.runs[0].id] for g in deferred
                    if g.runs[0].id in self._blockers]
        wait = self.options.poll_seconds
        if blockers:
            first = min(blockers, key=lambda b: b.expires_in_s(timeout))
            wait = min(wait, first.expires_in_s(timeout) + 1.0)
            self.logger.info("waiting %.0f s: %d group(s) wait for runs another process holds; "
                             "%s", wait, len(deferred), first.describe(timeout))
        else:
            self.logger.info("waiting %.0f s for %d group(s) running elsewhere (%s)", wait,
                             len(deferred), ", ".join(g.label for g in deferred[:3]))
        until = time.monotonic() + wait
        while time.monotonic() < until and not self.stop.requested:
            time.sleep(min(0.2, max(0.0, until - time.monotonic())))

    def _places(self, prep: Preparation) -> dict[str, str]:
        """Each group's place in this process's plan, numbered in the order the groups train
        (so the log counts up, after the runs already done): ``runs 7-10/60``."""
        total = len(prep.actions) + len(prep.blocked)
        places, done = {}, max(0, total - sum(len(g.runs) for g in prep.groups))
        for group in prep.groups:
            first, done = done + 1, done + len(group.runs)
            span = f"run {first}" if first == done else f"runs {first}-{done}"
            places[group.runs[0].id] = f"{span}/{total}"  # labels repeat across studies
        return places

    def _refresh(self, group: Group) -> tuple[Group | None, str]:
        """The group as the store has it now: None and why when it is not to be trained here
        right now ("done": finished meanwhile; "elsewhere": a member or the teacher is live in
        another process, recorded in ``_blockers``; "waiting for teacher" / "blocked": its
        teacher is pending in this pass / failed or missing)."""
        teacher_id = group.runs[0].teacher_id
        ids = [r.id for r in group.runs] + ([teacher_id] if teacher_id else [])
        stored = self._stored([self.plan.run(i) for i in ids])
        key = group.runs[0].id
        self._blockers.pop(key, None)
        teacher = (self._state(self.plan.run(teacher_id), stored[teacher_id])
                   if teacher_id is not None else None)
        states = [self._state(a.run, stored[a.run.id], teacher=teacher) for a in group.actions]
        if all(s.kind == "finished" for s in states):
            return None, "done"
        held = next((s for s in [*states, teacher] if s is not None and s.kind == "live"), None)
        if held is not None:
            if held.stored is not None:
                self._blockers[key] = Blocker(held.run, held.stored)
            return None, "elsewhere"
        if any(s.kind == "blocked" for s in states):
            return None, ("waiting for teacher" if teacher_id in self._waiting_ids
                          else "blocked")
        groups = form_groups(self.plan, [Action.of(s) for s in states])
        return (groups[0], "") if groups else (None, "done")

    def _attempt(self, group: Group, outcomes: dict[str, Outcome], parents: dict[str, str],
                 workdir: Path, clock: PlanClock, places: dict[str, str]) -> bool:
        """Train one group if it is this process's to train now; False to defer it."""
        failed_teacher = next((outcomes[r.teacher_id] for r in group.runs
                               if r.teacher_id in outcomes
                               and outcomes[r.teacher_id].status in ("failed", "skipped")), None)
        if self._agree(failed_teacher is not None):  # data-parallel: process 0's view
            for run in group.runs:
                outcomes[run.id] = Outcome(run, "skipped", f"its teacher {run.teacher_id} failed")
            return True
        fresh, why = self._agree(self._refresh(group) if self.writes_tracking else (None, ""))
        if fresh is None and why == "done":
            stored = self._stored(group.runs)
            for run in group.runs:
                done = finished_run(stored[run.id])
                assert done is not None, "a done group has a FINISHED run per member"
                outcomes[run.id] = Outcome(run, "reused", mlflow_id=done.mlflow_id,
                                           test_acc=done.test_acc, flags=done.flags,
                                           note="finished by another process")
            return True
        if fresh is None and why == "blocked":
            for run in group.runs:
                outcomes[run.id] = Outcome(run, "skipped", f"its teacher {run.teacher_id} "
                                           "has no finished run")
            return True
        if fresh is None:
            return False
        study = self.plan.study_of(fresh.runs[0].id)
        self.logger.info("%s: training %s%s", study.name, fresh.label,
                         f" (resuming at epoch {fresh.start_epoch + 1})"
                         if fresh.start_epoch else "")
        # The variants of a `vary` over the method share a group: each run keeps its study.
        others = {r.id: self.plan.study_of(r.id) for r in fresh.runs
                  if self.plan.study_of(r.id).name != study.name}
        context = GroupContext(
            study=study, dataset=self._dataset(study),
            writer=self._writer(study, parents, workdir, others),
            weights=self._weights(fresh.runs[0], workdir), settings=self._settings(study),
            progress=self._progress(fresh, study, clock, places.get(group.runs[0].id, "")),
            logger=self.logger, run_studies=others)
        try:
            results = LockstepGroup(fresh, context).train()
        except ClaimLost as lost:
            self.logger.info("%s: %s; trying again later", fresh.label, lost)
            for run in fresh.runs:
                outcomes[run.id] = Outcome(run, "elsewhere", str(lost))
            return False
        except CheckpointUnusable as unusable:
            self.logger.warning("%s: %s; decided again: it trains from its first epoch",
                                fresh.label, unusable)
            return False
        finally:
            if self.data_parallel:  # prepare_model kept a reference to each of the group's
                self.accelerator.free_memory()  # models; let them go with the group
        for outcome in results:
            outcomes[outcome.run.id] = outcome
        if self.data_parallel:
            self.accelerator.wait_for_everyone()
        return True

    def _writer(self, study: Study, parents: dict[str, str], workdir: Path,
                run_studies: dict[str, Study]) -> RunWriter:
        if not self.writes_tracking:
            return NullWriter()
        return StoreWriter(study=study, store=self.store_of(study),
                           parent_id=parents.get(study.name, ""), workdir=workdir,
                           run_studies=run_studies, parents=parents,
                           owner=self.owner, dataset=self._dataset_records.get(study.name),
                           logger=self.logger,
                           lease=LeaseSettings(self.options.lease_timeout_s,
                                               self.options.settle_seconds),
                           defer_claim_check=not self.data_parallel)

    def _weights(self, first: Run, workdir: Path) -> StoreWeights:
        study = self.plan.study_of(first.id)
        teacher_study = self.plan.study_of(first.teacher_id) if first.teacher_id else study
        return StoreWeights(self.store_of(study), self.store_of(teacher_study), workdir)

    def _settings(self, study: Study) -> GroupSettings:
        wrap = None
        if self.data_parallel:
            def wrap(model: torch.nn.Module) -> torch.nn.Module:
                return self.accelerator.prepare_model(model)
        return GroupSettings(
            device=self.accelerator.device,
            autocast_of=lambda precision: autocast_factory(self.accelerator, precision),
            eval_every=self.options.eval_every, evaluates=self.writes_tracking,
            batch_share=(self.process_index, self.processes) if self.data_parallel else (0, 1),
            wrap_model=wrap, store_uri=self.store_of(study).uri,
            agree=self._agree, stop=self.stop,
            sum_over_processes=(lambda t: self.accelerator.reduce(t, reduction="sum"))
            if self.data_parallel else None,
            share_verdict=self._agree if self.data_parallel else None)

    def _progress(self, group: Group, study: Study, clock: PlanClock,
                  place: str) -> GroupProgress:
        dataset = self._dataset(study)
        first = group.runs[0]
        batches = -(-dataset.train.num_samples // first.recipe.batch_size)
        mode = console_mode(quiet=self.options.quiet) if self.writes_tracking else "quiet"
        return GroupProgress(
            label=group.label, study=study.name, place=place, mode=mode, logger=self.logger,
            clock=clock,
            epoch_cost=group_epoch_costs(self.plan, group),
            batches_per_epoch=batches // (self.processes if self.data_parallel else 1),
            names={r.id: run_name(r) for r in group.runs})

    def _dataset(self, study: Study) -> LoadedDataset:
        key = study.dataset.model_dump_json()
        if key not in self._datasets:
            self._datasets[key] = load_dataset(study.dataset, device=self.accelerator.device,
                                               cache_dir=self.options.cache_dir)
            self.logger.info("data: %s", self._datasets[key].description)
        data = self._datasets[key]
        self._dataset_records.setdefault(study.name, DatasetRecord(
            name=study.dataset.name, digest=data.digest, source=data.source))
        return data

    # -- parent runs --------------------------------------------------------------------------
    def _parent_runs(self, prep: Preparation) -> dict[str, str]:
        """Get or create the parent run of every study with a run to train. Under job-spreading
        process 0 creates them first, then the others find them by their plan-hash tag."""
        studies = self._studies_of([a.run for a in prep.actions
                                    if a.kind in ("train", "resume")])
        parents: dict[str, str] = {}
        plan_json = self.plan.to_json()
        for turn in (0, 1):
            if (self.process_index == 0) == (turn == 0) and self.writes_tracking:
                for study in studies:
                    parents[study.name] = claim_parent(
                        self.store_of(study), study, plan_json=plan_json,
                        spec_text=self.options.spec_text, overrides=self.plan.overrides,
                        settle_s=self.options.settle_seconds)
            if self.processes > 1:
                self.accelerator.wait_for_everyone()
        return parents

    def machine_runs(self) -> list[Run]:
        """Every process's runs together: this machine's shard of the plan, then ``--only``."""
        shard = self.options.shard
        runs = runs_of_share(self.plan, shard.index, shard.count)
        ids = [r.id for r in self.plan.runs]
        keep = select_runs(ids, {r.id: r.role for r in self.plan.runs}, self.options.only)
        return [r for r in runs if r.id in keep]

    def _end_parents(self, parents: dict[str, str], outcomes: dict[str, Outcome], *,
                     interrupted: tuple[str, str] | None = None, together: bool = True
                     ) -> None:
        """Each study's parent run ends as its runs did: FINISHED once every run of the study
        is (also a study whose runs were all reused now, left RUNNING by a process that died
        after its last run); FAILED when one of its runs failed or the plan stopped
        (``interrupted``: status and reason); RUNNING otherwise (other shards are at work).
        Process 0 decides for every study of the machine's shard, with every process's
        outcomes (job-spreading: each trained its own share)."""
        failures = [(o.run.id, o.reason) for o in outcomes.values()
                    if o.status in ("failed", "skipped")]
        if self.processes > 1 and together:
            self.accelerator.wait_for_everyone()
            if not self.data_parallel:
                failures = list(gather_object(failures))
                stops = [s for s in gather_object([interrupted]) if s is not None]
                interrupted = interrupted or (stops[0] if stops else None)
        if self.process_index != 0:
            return
        for study in self._studies_of(self.machine_runs()):
            store = self.store_of(study)
            parent_id = parents.get(study.name) or find_parent(store, study)
            if parent_id is None:
                continue
            failed = [(rid, why) for rid, why in failures if rid in self.plan.study_runs(study)]
            if all(finished_run(runs) is not None
                   for runs in store.find_runs(study.run_ids).values()):
                store.finish(parent_id)
            elif interrupted is not None:
                store.fail(parent_id, interrupted[1], status=interrupted[0])
            elif failed:
                store.fail(parent_id, f"{len(failed)} run(s) did not finish, e.g. "
                                      f"{failed[0][0]}: {failed[0][1]}")

    def _studies_of(self, runs: Sequence[Run]) -> list[Study]:
        names = {self.plan.study_of(r.id).name for r in runs}
        return [s for s in self.plan.studies if s.name in names]

    def _ids_by_store(self, runs: Sequence[Run]) -> dict[RunStore, list[str]]:
        by_store: dict[RunStore, list[str]] = {}
        for run in runs:
            by_store.setdefault(self.store_of(self.plan.study_of(run.id)), []).append(run.id)
        return by_store
