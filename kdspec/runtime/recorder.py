"""The one place a training group talks to tracking: a :class:`RunRecorder` (writes) and an
:class:`ArtifactSource` (the teacher's and the resumed runs' checkpoints).

The group runner is the training loop plus calls to these; it never sees MLflow. Three forms:
:class:`StoreRecorder` writes the layout of :mod:`kdspec.tracking.schema` to any
:class:`~kdspec.tracking.store.RunStore` (MLflow, or the tests' in-memory store) and holds the
runs' leases; :class:`NullRecorder` writes nothing, for the processes of a data-parallel run
that only train; :class:`StoreSource` reads checkpoints from a store.

What a group's runs get, in order:
- ``open``, before anything is built or downloaded: resumed runs are reopened, the others created
  with params, tags, provenance and the dataset as an input; each is claimed (a lease) and the
  claims checked after a settle time: a run another process holds raises :class:`ClaimLost`
  before anything trains. A group that resumes waits for the check in ``open`` (its checkpoints
  are downloaded only once the claim holds); a new group trains meanwhile, and its tags
  (``note``) are held back until the check has passed, so a process that steps back has
  written nothing on a run it does not own;
- ``epoch``: ``checkpoints/last.pt``, then one request with the epoch's metrics, the
  ``kdspec.last_epoch`` tag and the heartbeat (a run killed before it resumes at the previous
  epoch without a duplicate metric step); the lease is checked each epoch;
- ``alive``: a heartbeat within a long epoch, at most every ``HEARTBEAT_INTERVAL_S``;
- ``finish``: ``predictions.npz``, ``class_accuracy.json``, ``confusion.npy``,
  ``checkpoints/final.pt``, status FINISHED, older FINISHED runs of a ``--force`` retraining
  retired; ``fail``: the reason in ``kdspec.failure``, status FAILED;
- ``release`` (a stop signal): the queued writes flushed, every run not yet FINISHED or FAILED
  ends KILLED with the reason in ``kdspec.interrupted``: its lease is gone, so any process
  resumes it at once from its last saved epoch.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import math
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from kdspec.plan import ModelInit, Plan, Run, Study
from kdspec.registry import short_arch
from kdspec.runtime import checkpoints
from kdspec.runtime.evaluation import Evaluation
from kdspec.runtime.scheduling import Action, Group
from kdspec.runtime.training import Trainee
from kdspec.runtime.write_queue import WriteQueue
from kdspec.tracking import schema
from kdspec.tracking.leases import (
    CLAIM_SETTLE_S,
    DEFAULT_LEASE_TIMEOUT_S,
    HEARTBEAT_INTERVAL_S,
    Lease,
    claim_tags,
    heartbeat_tags,
    lease_holder,
    now_ms,
)
from kdspec.tracking.store import DatasetRecord, RunStore, StoredRun


class ClaimLost(Exception):
    """Another process holds (or just took) a lease on one of the group's runs."""


class CheckpointUnreadable(Exception):
    """A resumed run's checkpoint could not be read after it was claimed: the run was given up
    (KILLED, ``kdspec.last_epoch`` 0) and the group is to be decided again (it trains anew)."""


class RunRecorder(Protocol):
    """Everything a group writes about its runs."""

    def open(self, group: Group) -> None: ...
    def give_up_resume(self, run: Run, reason: str) -> None: ...
    def catch_up(self, run: Run, *, epoch: int, metrics: Mapping[str, float]) -> None: ...
    def note(self, run: Run, tags: Mapping[str, str]) -> None: ...
    def epoch(self, trainee: Trainee, *, epoch: int, metrics: Mapping[str, float]) -> None: ...
    def alive(self) -> None: ...
    def close(self) -> None: ...
    def fail(self, run: Run, reason: str, *, epoch: int | None = None,
             metrics: Mapping[str, float] | None = None) -> None: ...
    def finish(self, trainee: Trainee, evaluation: Evaluation, validation: float | None,
               final_state: dict[str, Any]) -> None: ...
    def release(self, reason: str) -> None: ...
    def mlflow_id(self, run: Run) -> str: ...


class ArtifactSource(Protocol):
    """Checkpoints a group reads: its teacher's trained model, its resumed runs' states, and
    the starting weights of models that do not start from their seed."""

    def teacher(self, teacher_id: str, *, device: torch.device) -> torch.nn.Module: ...
    def resume_state(self, action: Action) -> dict[str, Any]: ...
    def initial_weights(self, init: ModelInit, *, num_classes: int
                        ) -> tuple[dict[str, torch.Tensor], dict[str, str]]: ...


class NullRecorder:
    """A recorder that writes nothing (processes of a data-parallel run other than the first)."""

    def open(self, group: Group) -> None:
        pass

    def give_up_resume(self, run: Run, reason: str) -> None:
        pass

    def catch_up(self, run: Run, *, epoch: int, metrics: Mapping[str, float]) -> None:
        pass

    def note(self, run: Run, tags: Mapping[str, str]) -> None:
        pass

    def epoch(self, trainee: Trainee, *, epoch: int, metrics: Mapping[str, float]) -> None:
        pass

    def alive(self) -> None:
        pass

    def close(self) -> None:
        pass

    def fail(self, run: Run, reason: str, *, epoch: int | None = None,
             metrics: Mapping[str, float] | None = None) -> None:
        pass

    def finish(self, trainee: Trainee, evaluation: Evaluation, validation: float | None,
               final_state: dict[str, Any]) -> None:
        pass

    def release(self, reason: str) -> None:
        pass

    def mlflow_id(self, run: Run) -> str:
        return ""


@dataclass
class StoreSource:
    """Checkpoints read from a store: ``final.pt`` of the teacher's newest FINISHED run (found
    across the whole store), ``last.pt`` of a resumed run."""

    store: RunStore
    teacher_store: RunStore
    workdir: Path

    def teacher(self, teacher_id: str, *, device: torch.device) -> torch.nn.Module:
        found = [r for r in self.teacher_store.find_runs([teacher_id])[teacher_id]
                 if r.status == "FINISHED"]
        if not found:
            raise RuntimeError(f"teacher {teacher_id} has no FINISHED run in "
                               f"{self.teacher_store.uri}")
        path = self.teacher_store.download(found[-1].mlflow_id, schema.ARTIFACT_FINAL_CHECKPOINT,
                                           self.workdir / "teachers" / teacher_id)
        return checkpoints.load_model(path, device=device)

    def resume_state(self, action: Action) -> dict[str, Any]:
        assert action.stored is not None, "only a resumed run has a checkpoint"
        path = self.store.download(action.stored.mlflow_id, schema.ARTIFACT_LAST_CHECKPOINT,
                                   self.workdir / "resume" / action.run.id)
        return checkpoints.load(path)

    def initial_weights(self, init: ModelInit, *, num_classes: int
                        ) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
        """``(weights, provenance tags)``: torchvision's or Hugging Face's published weights
        (their caches; downloaded where the machine can; a hub model's tags name the commit it
        was read at), a checkpoint file (its sha256 checked against the plan's), or
        ``final.pt`` of an MLflow run of the store."""
        source = {schema.TAG_WEIGHTS_SOURCE: f"{init.kind}:{init.name}"}
        if init.kind == "torchvision":
            from torchvision.models import get_model_weights

            builder, _, member = init.name.partition(":")
            enum = get_model_weights(builder)
            weights = enum.DEFAULT if member == "DEFAULT" else enum[member]
            return dict(weights.get_state_dict(progress=False)), source
        if init.kind == "huggingface":
            from kdspec.huggingface_models import pretrained_weights, weights_digest

            if init.digest and weights_digest(Path(init.name)) != init.digest:
                raise RuntimeError(f"the weights in {init.name} changed since the plan was "
                                   "made: compile the spec again")
            state, revision = pretrained_weights(init.name, num_classes)
            return state, ({**source, schema.TAG_WEIGHTS_REVISION: revision} if revision
                           else source)
        if init.kind == "checkpoint":
            path = Path(init.name)
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            if digest != init.digest:
                raise RuntimeError(f"checkpoint {path} changed since the plan was made (sha256 "
                                   f"{digest[:12]}..., the plan says {init.digest[:12]}...): "
                                   "compile the spec again")
            return checkpoints.model_weights(torch.load(path, map_location="cpu",
                                                        weights_only=True)), source
        path = self.store.download(init.name, schema.ARTIFACT_FINAL_CHECKPOINT,
                                   self.workdir / "from_run" / init.name)
        return checkpoints.model_weights(checkpoints.load(path)), source


def run_params(run: Run, study: Study) -> dict[str, object]:
    """The params of a nested run: the recipe, flattened, plus what the compare view groups by
    (the temperature written so that it sorts in numeric order)."""
    recipe = run.recipe
    params: dict[str, object] = {
        "role": run.role, "arch": run.arch, "seed": run.seed, "dataset": study.dataset.name,
        "epochs": recipe.epochs, "batch_size": recipe.batch_size, "optimizer": recipe.optimizer,
        "lr": recipe.lr, "momentum": recipe.momentum, "nesterov": recipe.nesterov,
        "weight_decay": recipe.weight_decay, "schedule": recipe.schedule.kind,
        "schedule.milestones": ",".join(str(m) for m in recipe.schedule.milestones),
        "schedule.gamma": recipe.schedule.gamma,
        "schedule.warmup_epochs": recipe.schedule.warmup_epochs,
        **({"schedule.warmup_steps": recipe.schedule.warmup_steps}
           if recipe.schedule.warmup_steps else {}),
        "precision": study.runtime.precision, "augment": study.dataset.augment,
    }
    if run.role == "distilled" and run.loss is not None and run.temperature is not None:
        params.update({"temperature": schema.temperature_param(run.temperature),
                       "hard_weight": run.loss.hard_weight, "soft_weight": run.loss.soft_weight,
                       "t_squared": run.loss.t_squared, "teacher_run_id": run.teacher_id})
    return params


def run_tags(run: Run, study: Study) -> dict[str, str]:
    return {
        schema.TAG_RUN_ID: run.id, schema.TAG_ROLE: run.role, schema.TAG_SEED: str(run.seed),
        schema.TAG_TEMPERATURE: "" if run.temperature is None else f"{run.temperature:g}",
        schema.TAG_TEACHER_RUN_ID: run.teacher_id or "", schema.TAG_STUDY: study.name,
        schema.TAG_LAST_EPOCH: "0",
    }


def run_name(run: Run, study: Study | None = None) -> str:
    """The name shown in the MLflow UI, unique within a study's experiment:
    ``<study>.distilled-lenet5-T4-s0`` (``distilled-lenet5-T4-s0`` without a study)."""
    temp = f"-T{run.temperature:g}" if run.temperature is not None else ""
    base = f"{run.role}-{short_arch(run.arch)}{temp}-s{run.seed}"
    return base if study is None else f"{study.name}.{base}"


@dataclass
class StoreRecorder:
    """The :class:`RunRecorder` over a :class:`RunStore`, holding the group's leases."""

    plan: Plan
    study: Study
    store: RunStore
    parent_id: str
    workdir: Path
    owner: str
    dataset: DatasetRecord | None = None
    logger: logging.Logger = field(default_factory=lambda: logging.getLogger("kdspec.run"))
    lease_timeout_s: float = DEFAULT_LEASE_TIMEOUT_S
    settle_s: float = CLAIM_SETTLE_S
    #: Check the claims once the settle time has passed while the group already trains (the
    #: first write of an epoch's results waits for the check), instead of sleeping in
    #: :meth:`open`. False for data-parallel runs, where every process must agree before any
    #: of them steps.
    defer_claim_check: bool = False
    heartbeat_s: float = HEARTBEAT_INTERVAL_S
    mlflow_ids: dict[str, str] = field(default_factory=dict)
    _created: set[str] = field(default_factory=set)
    _superseded: dict[str, tuple[StoredRun, ...]] = field(default_factory=dict)
    _ended: set[str] = field(default_factory=set)
    #: Tags noted before the claims were checked, written once they have held.
    _held_notes: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    _last_heartbeat: float = 0.0
    #: The group whose claims are made but not checked yet, and when they were made.
    _unchecked: Group | None = None
    _claimed_at: float = 0.0
    #: The writes of the training loop (epoch results, notes, heartbeats), in order, off the
    #: training thread; open() and the claim check stay synchronous.
    _writes: WriteQueue = field(default_factory=WriteQueue)

    def mlflow_id(self, run: Run) -> str:
        return self.mlflow_ids.get(run.id, "")

    # -- opening and claiming -----------------------------------------------------------------
    def open(self, group: Group) -> None:
        """Reopen resumed runs, create the others, retire stale unfinished runs, claim every
        member and check the claims (at once for a resuming group, else once the settle time
        has passed while it trains); on a lost claim, undo what was created and raise."""
        lockstep = "solo" if len(group.actions) == 1 else str(len(group.actions))
        at = now_ms()
        for action in group.actions:
            run = action.run
            self._superseded[run.id] = action.superseded
            resumed = action.kind == "resume" and action.stored is not None
            for old in action.stale:
                if old.status == "RUNNING":  # killed mid-run; FAILED ones keep their reason
                    self.store.finish(old.mlflow_id, "KILLED")
            claim = {**claim_tags(self.owner, at), schema.TAG_LOCKSTEP: lockstep}
            if resumed:
                assert action.stored is not None
                self.store.reopen(action.stored.mlflow_id)
                self.store.set_tags(action.stored.mlflow_id, claim)
                self.mlflow_ids[run.id] = action.stored.mlflow_id
                continue
            mlflow_id = self.store.create_run(
                experiment=self.study.tracking.experiment, parent_id=self.parent_id,
                run_name=run_name(run, self.study), tags={**run_tags(run, self.study), **claim})
            self.mlflow_ids[run.id] = mlflow_id
            self._created.add(run.id)
            self.store.log_params(mlflow_id, run_params(run, self.study))
            if self.dataset is not None:
                self.store.log_input(mlflow_id, self.dataset)
            if run.temperature is not None:
                self.store.log_metrics(mlflow_id, {schema.METRIC_TEMPERATURE: run.temperature},
                                       step=0)
        self._unchecked, self._claimed_at = group, time.monotonic()
        if not self.defer_claim_check or group.start_epoch > 0:
            self._settle(wait=True)
        self._last_heartbeat = time.monotonic()

    def _write_notes(self, notes: list[tuple[str, dict[str, str]]]) -> None:
        for mlflow_id, tags in notes:
            self.store.set_tags(mlflow_id, tags)

    def give_up_resume(self, run: Run, reason: str) -> None:
        """A reopened run whose checkpoint cannot be read: KILLED, with ``kdspec.last_epoch``
        0 (so the next decision trains it anew and retires this run) and the reason."""
        mlflow_id = self.mlflow_ids[run.id]
        self.store.set_tags(mlflow_id, {schema.TAG_LAST_EPOCH: "0",
                                        schema.TAG_FAILURE: reason})
        self.store.finish(mlflow_id, "KILLED")
        self._ended.add(run.id)

    def _settle(self, *, wait: bool) -> None:
        """Check the open claims once the settle time has passed since they were made; with
        ``wait``, sleep out what is left of it first. A no-op once checked."""
        group = self._unchecked
        if group is None:
            return
        left = self.settle_s - (time.monotonic() - self._claimed_at)
        if left > 0:
            if not wait:
                return
            time.sleep(left)
        self._unchecked = None
        self._check_claims(group)

    def _check_claims(self, group: Group) -> None:
        """After the settle time, every member's claim must be the one that holds: no other
        process finished the run meanwhile (a FINISHED run this group did not know of when it
        decided), and of the live runs of its id, this process's claim is the oldest."""
        self._writes.flush()  # nothing of this group may still be on its way if it steps back
        stored = self.store.find_runs([r.id for r in group.runs])
        at = now_ms()
        lost: list[tuple[Run, StoredRun | None]] = []
        for run in group.runs:
            mine = self.mlflow_ids[run.id]
            known = {s.mlflow_id for s in self._superseded.get(run.id, ())}
            done = [s for s in stored[run.id] if s.status == "FINISHED"
                    and s.mlflow_id not in known]
            holder = lease_holder(stored[run.id], at_ms=at, timeout_s=self.lease_timeout_s)
            if done:
                lost.append((run, done[-1]))
            elif holder is None or holder.mlflow_id != mine or holder.lease.owner != self.owner:
                lost.append((run, holder))
        if not lost:
            held, self._held_notes = self._held_notes, []
            if held:
                self._writes.submit(lambda: self._write_notes(held))
            return
        self._held_notes.clear()
        for run in group.runs:
            if run.id in self._created:
                self.store.delete_run(self.mlflow_ids[run.id])
        run, holder = lost[0]
        if holder is not None and holder.status == "FINISHED":
            raise ClaimLost(f"{run.id} was just finished by another process")
        who = holder.lease.owner if holder is not None else "another process"
        raise ClaimLost(f"{run.id} is being trained by {who}")

    # -- while training -----------------------------------------------------------------------
    def catch_up(self, run: Run, *, epoch: int, metrics: Mapping[str, float]) -> None:
        """A checkpoint one epoch ahead of its tag: log the epoch it carries (see
        ``group_runner.restore``)."""
        self._settle(wait=True)
        mlflow_id, values = self.mlflow_ids[run.id], dict(metrics)
        self._writes.submit(lambda: self.store.log_metrics(
            mlflow_id, values, step=epoch, tags={schema.TAG_LAST_EPOCH: epoch}))

    def note(self, run: Run, tags: Mapping[str, str]) -> None:
        """Tags of a run (what it trains with), written once its claim has held."""
        mlflow_id, values = self.mlflow_ids[run.id], {k: str(v) for k, v in tags.items()}
        if self._unchecked is not None:
            self._held_notes.append((mlflow_id, values))
            return
        self._writes.submit(lambda: self.store.set_tags(mlflow_id, values))

    def epoch(self, trainee: Trainee, *, epoch: int, metrics: Mapping[str, float]) -> None:
        """``last.pt``, then the epoch's metrics, ``kdspec.last_epoch`` and the heartbeat in one
        request; ClaimLost (at the next write or flush) when another process has taken the run
        over meanwhile.

        The checkpoint is written to a local file here (the weights change at the next step);
        the lease check, its upload and the metrics go to the write queue. Each epoch gets its
        own local file, removed once uploaded, so a queued upload never reads a newer one."""
        self._settle(wait=True)
        run = trainee.run
        mlflow_id = self.mlflow_ids[run.id]
        finite = {k: v for k, v in metrics.items() if math.isfinite(v)}
        path = checkpoints.save(checkpoints.resume_state(trainee, finite),
                                self.workdir / "last" / run.id / f"epoch-{epoch}" / "last.pt")

        def write() -> None:
            if Lease.from_tags(self.store.tags(mlflow_id)).owner != self.owner:
                raise ClaimLost(f"{run.id} was taken over by another process")
            self.store.log_file(mlflow_id, path, schema.ARTIFACT_CHECKPOINT_DIR)
            self.store.log_metrics(mlflow_id, finite, step=epoch, tags={
                schema.TAG_LAST_EPOCH: epoch, **heartbeat_tags(now_ms())})
            shutil.rmtree(path.parent, ignore_errors=True)

        self._writes.submit(write)
        self._last_heartbeat = time.monotonic()

    def alive(self) -> None:
        """Renew the heartbeat of every open run, at most every ``heartbeat_s`` seconds (and,
        the first time the settle time has passed, check the claims: ClaimLost if one did not
        hold)."""
        self._settle(wait=False)
        if time.monotonic() - self._last_heartbeat < self.heartbeat_s:
            return
        self._last_heartbeat = time.monotonic()
        ids = list(self.mlflow_ids.values())

        def write() -> None:
            tags = heartbeat_tags(now_ms())
            for mlflow_id in ids:
                self.store.set_tags(mlflow_id, tags)

        self._writes.submit(write)

    def close(self) -> None:
        """Wait for the queued writes and stop their thread; raises a write's error."""
        self._writes.close()

    # -- ending -------------------------------------------------------------------------------
    def fail(self, run: Run, reason: str, *, epoch: int | None = None,
             metrics: Mapping[str, float] | None = None) -> None:
        mlflow_id = self.mlflow_ids.get(run.id)
        if mlflow_id is None:
            return
        self._settle(wait=True)  # a run that is not this process's is not failed by it
        finite = {k: v for k, v in (metrics or {}).items() if math.isfinite(v)}
        try:
            self._writes.flush()  # what was queued before goes first ...
        finally:  # ... and the failure is recorded even when that raised (the caller gets it)
            if finite and epoch is not None:
                self.store.log_metrics(mlflow_id, finite, step=epoch)
            self.store.fail(mlflow_id, reason)
            self._ended.add(run.id)

    def finish(self, trainee: Trainee, evaluation: Evaluation, validation: float | None,
               final_state: dict[str, Any]) -> None:
        """Final evaluation artifacts, ``final.pt``, FINISHED, superseded runs retired (after
        every queued write: a run is FINISHED only with all its epochs in the store).
        ``validation``: the accuracy on the held-out validation split, when the dataset has
        one (trained runs log ``val_acc`` every evaluated epoch; an evaluated-only run here)."""
        self._settle(wait=True)
        self._writes.flush()
        run = trainee.run
        mlflow_id = self.mlflow_ids[run.id]
        store = self.store
        if run.recipe.epochs == 0:  # evaluated only: no epoch logged its accuracies
            scores = {schema.METRIC_TEST_ACC: evaluation.accuracy}
            if validation is not None:
                scores[schema.METRIC_VAL_ACC] = validation
            store.log_metrics(mlflow_id, scores, step=0)
        store.log_bytes(mlflow_id, schema.ARTIFACT_PREDICTIONS, evaluation.predictions_npz())
        store.log_bytes(mlflow_id, schema.ARTIFACT_CLASS_ACCURACY,
                        evaluation.class_accuracy_json(self.study.dataset.class_names).encode())
        buffer = io.BytesIO()
        np.save(buffer, evaluation.confusion)
        store.log_bytes(mlflow_id, schema.ARTIFACT_CONFUSION, buffer.getvalue())
        final = checkpoints.save(final_state, self.workdir / "final" / run.id / "final.pt")
        store.log_file(mlflow_id, final, schema.ARTIFACT_CHECKPOINT_DIR)
        store.finish(mlflow_id)  # kdspec.last_epoch already says the last epoch
        self._ended.add(run.id)
        # --force: the older FINISHED runs become KILLED, so the store keeps one FINISHED run
        # per kdspec id (kdspec.superseded_by names the new one).
        for old in self._superseded.get(run.id, ()):
            store.set_tags(old.mlflow_id, {schema.TAG_SUPERSEDED_BY: mlflow_id})
            store.finish(old.mlflow_id, "KILLED")

    def release(self, reason: str) -> None:
        """Give the group's unfinished runs up (a stop signal): flush what is queued, then end
        each KILLED with ``reason``, so that any process resumes it at once. Runs whose claim
        turns out not to have held are not touched (their winner trains them)."""
        try:
            self._settle(wait=True)
        except ClaimLost:
            return
        with contextlib.suppress(Exception):  # a failed write must not keep the runs leased
            self._writes.flush()
        for run_id, mlflow_id in self.mlflow_ids.items():
            if run_id in self._ended:
                continue
            self.store.set_tags(mlflow_id, {schema.TAG_INTERRUPTED: reason})
            self.store.finish(mlflow_id, "KILLED")
            self._ended.add(run_id)
