"""What a lockstep group writes about its runs, and only that: the MLflow layout of
:mod:`kdspec.tracking.schema`, in order, off the training thread.

The group never sees MLflow: it calls a :class:`RunWriter`. :class:`StoreWriter` writes to any
:class:`~kdspec.tracking.store.RunStore` (MLflow, or the tests' in-memory store) behind the
group's :class:`~kdspec.tracking.ownership.Claim`: every write batch is preceded by a check that
this process still holds the runs, so a process that lost them (frozen past its lease, taken
over) writes nothing more to them. :class:`NullWriter` writes nothing (the processes of a
data-parallel run that only train).

What a group's runs get, in order (the ownership steps are docs/running.md, "Who trains a run"):
- ``open``: resumed runs reopened, the others created with params, tags, provenance and the
  dataset as an input, each claimed; the claim is settled at once for a resuming group (its
  checkpoints are read only once it holds), else while the group trains;
- ``note``: tags of what a run trains with (precision, compile, teacher cache), and the params
  its setup computed (a matched label-smoothing epsilon);
- ``epoch``: per member, ``checkpoints/last.pt`` then one request with the epoch's metrics,
  ``kdspec.last_epoch`` and the heartbeat (a run killed between the two resumes at the previous
  epoch without a duplicate metric step);
- ``finish``: ``predictions.npz``, ``class_accuracy.json``, ``confusion.npy``,
  ``checkpoints/final.pt``, status FINISHED, older FINISHED runs of a ``--force`` retraining
  retired; ``fail``: the reason in ``kdspec.failure``, status FAILED;
- ``release`` (a stop signal, a lost group): the queued writes flushed, every run still held
  ends KILLED with the reason in ``kdspec.interrupted``, resumable at once by anyone.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from kdspec.plan import Run, Study
from kdspec.runtime import checkpoints
from kdspec.runtime.evaluation import Evaluation
from kdspec.runtime.scheduling import Group
from kdspec.runtime.training import Trainee
from kdspec.runtime.write_queue import WriteQueue
from kdspec.tracking import schema
from kdspec.tracking.leases import heartbeat_tags, now_ms
from kdspec.tracking.ownership import Claim, ClaimLost, LeaseSettings
from kdspec.tracking.run_layout import run_name, run_params, run_tags
from kdspec.tracking.run_store import DatasetRecord, RunStore, StoredRun


@dataclass(frozen=True)
class EpochRecord:
    """One member's epoch, to be written: its trainee (whose state is checkpointed now), the
    epoch number (from 1) and its metrics."""

    trainee: Trainee
    epoch: int
    metrics: Mapping[str, float]


class RunWriter(Protocol):
    """Everything a group writes about its runs."""

    def open(self, group: Group) -> None: ...
    def check(self) -> None: ...
    def note(self, run: Run, tags: Mapping[str, str], *,
             params: Mapping[str, object] | None = None) -> None: ...
    def catch_up(self, run: Run, *, epoch: int, metrics: Mapping[str, float]) -> None: ...
    def epoch(self, records: Sequence[EpochRecord]) -> None: ...
    def give_up_resume(self, reason: str) -> None: ...
    def fail(self, run: Run, reason: str, *, epoch: int | None = None,
             metrics: Mapping[str, float] | None = None) -> None: ...
    def finish(self, trainee: Trainee, evaluation: Evaluation, validation: float | None,
               final_state: dict[str, Any]) -> None: ...
    def release(self, reason: str) -> None: ...
    def close(self) -> None: ...
    def mlflow_id(self, run: Run) -> str: ...


class NullWriter:
    """A writer that writes nothing (processes of a data-parallel run other than the first)."""

    def open(self, group: Group) -> None:
        pass

    def check(self) -> None:
        pass

    def note(self, run: Run, tags: Mapping[str, str], *,
             params: Mapping[str, object] | None = None) -> None:
        pass

    def catch_up(self, run: Run, *, epoch: int, metrics: Mapping[str, float]) -> None:
        pass

    def epoch(self, records: Sequence[EpochRecord]) -> None:
        pass

    def give_up_resume(self, reason: str) -> None:
        pass

    def fail(self, run: Run, reason: str, *, epoch: int | None = None,
             metrics: Mapping[str, float] | None = None) -> None:
        pass

    def finish(self, trainee: Trainee, evaluation: Evaluation, validation: float | None,
               final_state: dict[str, Any]) -> None:
        pass

    def release(self, reason: str) -> None:
        pass

    def close(self) -> None:
        pass

    def mlflow_id(self, run: Run) -> str:
        return ""


def finite(metrics: Mapping[str, float] | None) -> dict[str, float]:
    """The metrics MLflow can store (NaN and infinities dropped)."""
    return {k: v for k, v in (metrics or {}).items() if math.isfinite(v)}


@dataclass
class StoreWriter:
    """The :class:`RunWriter` over a :class:`RunStore`, behind the group's claim."""

    study: Study
    store: RunStore
    parent_id: str
    workdir: Path
    owner: str
    #: A group whose runs belong to several studies (the variants of a ``vary`` over the
    #: method train in one group): each run's own study by run id, and each study's parent run
    #: by study name; a run not named is ``study``'s, under ``parent_id``.
    run_studies: Mapping[str, Study] = field(default_factory=dict)
    parents: Mapping[str, str] = field(default_factory=dict)
    dataset: DatasetRecord | None = None
    logger: logging.Logger = field(default_factory=lambda: logging.getLogger("kdspec.run"))
    lease: LeaseSettings = field(default_factory=LeaseSettings)
    #: Check a new group's claim once the settle time has passed while it trains (the first
    #: write waits for the check) instead of sleeping in :meth:`open`. False for data-parallel
    #: runs, where every process must agree before any of them steps.
    defer_claim_check: bool = False
    claim: Claim | None = None
    _superseded: dict[str, tuple[StoredRun, ...]] = field(default_factory=dict)
    _writes: WriteQueue = field(default_factory=WriteQueue)

    def mlflow_id(self, run: Run) -> str:
        return self.claim.mlflow_id(run.id) if self.claim is not None else ""

    def _claim(self) -> Claim:
        assert self.claim is not None, "open() first"
        return self.claim

    # -- opening ------------------------------------------------------------------------------
    def open(self, group: Group) -> None:
        """Claim every member (reopen resumed runs, create the others, retire the stale ones)
        and settle the claim (at once for a resuming group); ClaimLost when it did not hold,
        with the runs this process created deleted."""
        claim = self.claim = Claim(self.store, self.owner, self.lease, self.logger)
        lockstep = {schema.TAG_LOCKSTEP: "solo" if len(group.actions) == 1
                    else str(len(group.actions))}
        for action in group.actions:
            run = action.run
            self._superseded[run.id] = action.superseded
            claim.retire(action.stale, replaced_by=self.owner)
            if action.kind == "resume" and action.stored is not None:
                claim.reopen(run.id, action.stored)
                self.note(run, lockstep)
            else:
                claim.create(run.id, self._maker(run, lockstep), superseded=action.superseded)
        if not self.defer_claim_check or group.start_epoch > 0:
            claim.settle(wait=True)
        claim.start_heartbeat()

    def _maker(self, run: Run, extra: Mapping[str, str]) -> Callable[[Mapping[str, str]], str]:
        """How the claim makes ``run``'s MLflow run: with its claim tags and ``extra``."""
        return lambda claim_tags: self._create(run, {**claim_tags, **extra})

    def _create(self, run: Run, tags: Mapping[str, str]) -> str:
        study = self.run_studies.get(run.id, self.study)
        mlflow_id = self.store.create_run(
            experiment=study.tracking.experiment,
            parent_id=self.parents.get(study.name, self.parent_id),
            run_name=run_name(run, study), tags={**run_tags(run, study), **tags})
        self.store.log_params(mlflow_id, run_params(run, study))
        if self.dataset is not None:
            self.store.log_input(mlflow_id, self.dataset)
        if run.temperature is not None:
            self.store.log_metrics(mlflow_id, {schema.METRIC_TEMPERATURE: run.temperature},
                                   step=0)
        return mlflow_id

    # -- while training -----------------------------------------------------------------------
    def _submit(self, write: Callable[[], None]) -> None:
        """Queue ``write`` behind a check of the claim (ClaimLost at the next submit or flush
        when it no longer holds; nothing of the batch is written then)."""
        claim = self._claim()

        def checked() -> None:
            claim.verify()
            write()

        self._writes.submit(checked)

    def check(self) -> None:
        """ClaimLost when the heartbeat found the claim lost (after every batch)."""
        self._claim().check()

    def note(self, run: Run, tags: Mapping[str, str], *,
             params: Mapping[str, object] | None = None) -> None:
        """Tags of a run (what it trains with) and params its setup computed, written once its
        claim has held."""
        mlflow_id, values = self.mlflow_id(run), {k: str(v) for k, v in tags.items()}
        computed = dict(params or {})

        def write() -> None:
            if computed:
                self.store.log_params(mlflow_id, computed)
            self.store.set_tags(mlflow_id, values)

        self._submit(write)

    def catch_up(self, run: Run, *, epoch: int, metrics: Mapping[str, float]) -> None:
        """An epoch whose checkpoint was saved but whose ``kdspec.last_epoch`` tag never reached
        the store (see :func:`kdspec.runtime.weights.resume_members`): its metrics that are not
        in the store yet, and the tag. MLflow's backends commit a request's metrics and its
        tags in separate transactions, so a process killed in between leaves the metrics
        without the tag; they are not logged twice."""
        mlflow_id, values = self.mlflow_id(run), finite(metrics)

        def write() -> None:
            missing = {key: value for key, value in values.items()
                       if epoch not in self.store.metric_steps(mlflow_id, key)}
            self.store.log_metrics(mlflow_id, missing, step=epoch,
                                   tags={schema.TAG_LAST_EPOCH: epoch})

        self._submit(write)

    def epoch(self, records: Sequence[EpochRecord]) -> None:
        """One write batch per epoch: each member's ``last.pt`` (saved to a local file now: the
        weights change at the next step), then its metrics, ``kdspec.last_epoch`` and the
        heartbeat in one request. Each epoch gets its own local file, removed once uploaded."""
        pending = []
        for record in records:
            run, values = record.trainee.run, finite(record.metrics)
            path = checkpoints.save(
                checkpoints.resume_state(record.trainee, values),
                self.workdir / "last" / run.id / f"epoch-{record.epoch}" / "last.pt")
            pending.append((self.mlflow_id(run), record.epoch, values, path))

        def write() -> None:
            for mlflow_id, epoch, values, path in pending:
                self.store.log_file(mlflow_id, path, schema.ARTIFACT_CHECKPOINT_DIR)
                self.store.log_metrics(mlflow_id, values, step=epoch, tags={
                    schema.TAG_LAST_EPOCH: epoch, **heartbeat_tags(now_ms())})
                shutil.rmtree(path.parent, ignore_errors=True)

        self._submit(write)

    def close(self) -> None:
        """Wait for the queued writes, stop their thread and the heartbeat; raises a write's
        error."""
        try:
            self._writes.close()
        finally:
            if self.claim is not None:
                self.claim.stop_heartbeat()

    # -- ending -------------------------------------------------------------------------------
    def _holds(self) -> bool:
        """Whether this process still holds the claim's open runs (a fresh look)."""
        try:
            self._claim().verify()
        except ClaimLost as lost:
            self.logger.warning("%s; this process writes nothing more to it", lost)
            return False
        return True

    def give_up_resume(self, reason: str) -> None:
        """The resumed runs whose checkpoints cannot be used: KILLED, with
        ``kdspec.last_epoch`` 0 (so the next decision trains them anew and retires these) and
        the reason in ``kdspec.failure``."""
        claim = self._claim()
        self._writes.flush()
        if not self._holds():
            return
        for run_id, held in claim.held.items():
            if held.ended:
                continue
            with claim.ending(run_id):
                self.store.set_tags(held.mlflow_id, {schema.TAG_LAST_EPOCH: "0",
                                                     schema.TAG_FAILURE: reason})
                self.store.finish(held.mlflow_id, "KILLED")

    def fail(self, run: Run, reason: str, *, epoch: int | None = None,
             metrics: Mapping[str, float] | None = None) -> None:
        """The run FAILED with ``reason`` (and its last epoch's metrics), if this process still
        holds it; what was queued before goes first, and the failure is recorded even when
        that raised (the caller gets the error)."""
        claim = self._claim()
        values = finite(metrics)
        try:
            self._writes.flush()
        finally:
            if self._holds():
                self._record_failure(claim, run, reason, epoch, values)

    def _record_failure(self, claim: Claim, run: Run, reason: str, epoch: int | None,
                        values: Mapping[str, float]) -> None:
        with claim.ending(run.id):
            mlflow_id = claim.mlflow_id(run.id)
            if values and epoch is not None:
                self.store.log_metrics(mlflow_id, values, step=epoch)
            self.store.fail(mlflow_id, reason)

    def finish(self, trainee: Trainee, evaluation: Evaluation, validation: float | None,
               final_state: dict[str, Any]) -> None:
        """Final evaluation artifacts, ``final.pt``, FINISHED (after every queued write: a run
        is FINISHED only with all its epochs in the store), superseded runs retired. The claim
        is verified before the artifacts and again before FINISHED; ClaimLost when it no longer
        holds. ``validation``: the accuracy on the held-out validation split of a run that was
        evaluated only (trained runs log ``val_acc`` every evaluated epoch)."""
        claim = self._claim()
        self._writes.flush()
        run = trainee.run
        mlflow_id = claim.mlflow_id(run.id)
        claim.verify()
        if run.recipe.epochs == 0:  # evaluated only: no epoch logged its accuracies
            scores = {schema.METRIC_TEST_ACC: evaluation.accuracy}
            if validation is not None:
                scores[schema.METRIC_VAL_ACC] = validation
            self.store.log_metrics(mlflow_id, scores, step=0)
        self._log_evaluation(mlflow_id, evaluation)
        final = checkpoints.save(final_state, self.workdir / "final" / run.id / "final.pt")
        self.store.log_file(mlflow_id, final, schema.ARTIFACT_CHECKPOINT_DIR)
        with claim.ending(run.id):
            claim.verify()
            self.store.finish(mlflow_id)  # kdspec.last_epoch already says the last epoch
        claim.resolve_finished(run.id)
        # --force: the older FINISHED runs become KILLED, so the store keeps one FINISHED run
        # per kdspec id (kdspec.superseded_by names the new one).
        for old in self._superseded.get(run.id, ()):
            self.store.set_tags(old.mlflow_id, {schema.TAG_SUPERSEDED_BY: mlflow_id})
            self.store.finish(old.mlflow_id, "KILLED")

    def _log_evaluation(self, mlflow_id: str, evaluation: Evaluation) -> None:
        self.store.log_bytes(mlflow_id, schema.ARTIFACT_PREDICTIONS,
                             evaluation.predictions_npz())
        self.store.log_bytes(mlflow_id, schema.ARTIFACT_CLASS_ACCURACY,
                             evaluation.class_accuracy_json(
                                 self.study.dataset.class_names).encode())
        buffer = io.BytesIO()
        np.save(buffer, evaluation.confusion)
        self.store.log_bytes(mlflow_id, schema.ARTIFACT_CONFUSION, buffer.getvalue())

    def release(self, reason: str) -> None:
        """Give the group's runs up (a stop signal, a lost member): flush what is queued, then
        end each run this process still holds KILLED with ``reason``, so that any process
        resumes it at once. Runs another process holds now are not touched."""
        if self.claim is None:
            return
        with contextlib.suppress(Exception):  # a failed write must not keep the runs leased
            self._writes.flush()
        self.claim.release(reason)
