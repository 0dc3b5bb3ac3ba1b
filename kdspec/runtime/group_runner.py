"""Training one lockstep group from its first epoch (or its checkpoint) to its final artifacts:
the epoch loop of :mod:`kdspec.runtime.training` plus calls to a recorder.

Everything tracking-related goes through a :class:`~kdspec.runtime.recorder.RunRecorder`
(writes) and an :class:`~kdspec.runtime.recorder.ArtifactSource` (teacher and checkpoints);
progress goes to a :class:`~kdspec.runtime.progress.GroupProgress`. A member whose loss is NaN
or diverges is failed with the reason; the others go on. A crash fails the group's unfinished
runs and the plan goes on, unless the store itself is gone (the plan stops: TrackingError) or
another process holds one of the runs (ClaimLost: the executor defers the group).
"""

from __future__ import annotations

import contextlib
import logging
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, cast

import torch

from kdspec.errors import DataError, DataParallelFailure, TrackingError
from kdspec.plan import Precision, Run, Study
from kdspec.runtime import checkpoints
from kdspec.runtime.evaluation import Evaluation, evaluate, with_individual_outputs
from kdspec.runtime.interfaces import AutocastFactory, LoadedDataset, TeacherSignal
from kdspec.runtime.precision import (
    COMPILE_VERIFIED_DEVICES,
    MSG_COMPILE_UNVERIFIED,
    autocast_for,
    keep_resumed_precision,
    model_macs,
    needs_grad_scaler,
    resolve_speed,
    to_training_layout,
)
from kdspec.runtime.progress import GroupProgress, MemberEpoch
from kdspec.runtime.recorder import (
    ArtifactSource,
    CheckpointUnreadable,
    ClaimLost,
    RunRecorder,
    run_name,
)
from kdspec.runtime.scheduling import Group
from kdspec.runtime.stop_request import Stopped, StopRequest
from kdspec.runtime.teacher_signal import make_teacher_signal
from kdspec.runtime.training import EpochResult, Trainee, new_trainee, train_lockstep
from kdspec.tracking import schema
from kdspec.tracking.reachability import is_unreachable

OutcomeStatus = Literal["finished", "reused", "failed", "skipped", "elsewhere", "interrupted"]
MSG_LOST_STORE = (
    "lost the MLflow store {uri} while training {group}; its last error: {error}. Finished runs "
    "are kept and interrupted ones resume from their last checkpoint: run the same command "
    "again when the store answers"
)


@dataclass
class Outcome:
    """How one run ended in this invocation (the summary table's row)."""

    run: Run
    status: OutcomeStatus
    reason: str = ""
    mlflow_id: str = ""
    test_acc: float | None = None
    note: str = ""  # e.g. "resumed at epoch 3"
    recorded: bool = False  # its final artifacts are recorded and its run FINISHED


@dataclass(frozen=True)
class GroupSettings:
    """How this process trains: where, in what precision, how often it evaluates, and (data-
    parallel) its share of each epoch's batches and the wrapper of its models."""

    device: torch.device
    #: The autocast context of a (resolved) precision; None: ``torch.autocast`` on ``device``.
    autocast_of: Callable[[Precision], AutocastFactory] | None = None
    eval_every: int = 1
    evaluates: bool = True  # False on processes of a data-parallel run that only train
    batch_share: tuple[int, int] = (0, 1)
    wrap_model: Callable[[torch.nn.Module], torch.nn.Module] | None = None
    store_uri: str = ""
    #: Data-parallel: every process takes process 0's answer (whether the claim held).
    agree: Callable[[bool], bool] = bool
    #: Looked at after every batch: a stop signal ends the group there.
    stop: StopRequest | None = None
    #: Data-parallel: the all-reduce (sum) behind the shared divergence check, and process 0's
    #: word after each epoch (None: go on; else why the group stops), sent to every process.
    sum_over_processes: Callable[[torch.Tensor], torch.Tensor] | None = None
    share_verdict: Callable[[str | None], str | None] | None = None

    @property
    def data_parallel(self) -> bool:
        return self.batch_share[1] > 1

    def autocast(self, precision: Precision) -> AutocastFactory:
        if self.autocast_of is not None:
            return self.autocast_of(precision)
        return lambda: autocast_for(self.device, precision)


def step_forward(model: torch.nn.Module, *,
                 wrap: Callable[[torch.nn.Module], torch.nn.Module] | None,
                 compile_it: bool) -> torch.nn.Module:
    """What a training step calls: the data-parallel wrap first, then ``torch.compile`` of
    that, so a run tagged compiled runs compiled (compiling the model and wrapping it afterwards
    would drop the compiled forward, as an earlier version did)."""
    forward = wrap(model) if wrap is not None else model
    return cast(torch.nn.Module, torch.compile(forward)) if compile_it else forward


def _first_line(err: BaseException) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0][:300]


def restore(group: Group, trainees: Sequence[Trainee], source: ArtifactSource,
            logger: logging.Logger) -> tuple[dict[str, dict[str, float]], str | None]:
    """Load each resumed member's ``last.pt``: (metrics to catch up, None), or ({}, why) when
    any cannot be read (then none is restored).

    A checkpoint may be one epoch ahead of its ``kdspec.last_epoch`` tag: the run was killed
    after uploading ``last.pt`` but before the epoch's metrics and tag went out (they go in one
    request, after the checkpoint). Then the run resumes after that epoch instead of retraining
    it, and the metrics the checkpoint carries are returned (by run id) to be recorded.
    """
    if group.start_epoch == 0:
        return {}, None
    try:
        states = [source.resume_state(action) for action in group.actions]
        epochs = {int(s["epochs_done"]) for s in states}
        if len(epochs) != 1 or not epochs <= {group.start_epoch, group.start_epoch + 1}:
            raise ValueError(f"checkpoint epochs {sorted(epochs)} do not match the "
                             f"kdspec.last_epoch tags ({group.start_epoch})")
    except Exception as err:  # a missing or corrupt checkpoint must not stop the plan
        if is_unreachable(err):
            raise
        logger.warning("%s: cannot resume (%s); it will train from scratch", group.label, err)
        return {}, f"checkpoint unreadable ({_first_line(err)})"
    for trainee, state in zip(trainees, states, strict=True):
        checkpoints.restore_trainee(trainee, state)
    if trainees[0].epochs_done == group.start_epoch:
        return {}, None
    return {t.run.id: dict(s.get("epoch_metrics", {})) for t, s in zip(trainees, states,
                                                                        strict=True)}, None


def train_group(group: Group, *, study: Study, dataset: LoadedDataset, recorder: RunRecorder,
                source: ArtifactSource, settings: GroupSettings, progress: GroupProgress,
                logger: logging.Logger) -> list[Outcome]:
    """Train ``group`` to the end and record it; never raises for a training failure.

    Raises ClaimLost (another process holds a member: nothing was trained) and TrackingError
    (the store stopped answering: the plan must stop). A stop signal (``settings.stop``) ends
    the group after the current batch: its unfinished runs are released and come back as
    "interrupted"."""
    # The claim comes first: nothing is built or downloaded for runs that are not ours.
    lost: ClaimLost | None = None
    try:
        recorder.open(group)
    except ClaimLost as err:
        lost = err
    if not settings.agree(lost is None):
        with contextlib.suppress(Exception):
            recorder.close()
        raise lost or ClaimLost("the first process lost the claim")
    trainees = [new_trainee(run, in_channels=dataset.channels, image_size=dataset.image_size,
                            num_classes=dataset.num_classes, device=settings.device)
                for run in group.runs]
    _check_vocabulary(trainees, dataset, study)
    if group.start_epoch == 0:  # a resumed run's checkpoint holds its weights
        _start_from_given_weights(trainees, source, recorder, group, logger, dataset.num_classes)
    # One choice for the group (its members share architecture, recipe and data).
    choice = resolve_speed(
        study.runtime, device=settings.device,
        macs=model_macs(trainees[0].model, sequence_length=dataset.sequence_length,
                        in_channels=dataset.channels,
                        image_size=dataset.image_size),
        training_images=group.runs[0].recipe.epochs * dataset.train.num_samples)
    choice = keep_resumed_precision(choice, study.runtime, [
        a.stored.precision for a in group.actions if a.kind == "resume" and a.stored is not None])
    if needs_grad_scaler(choice.precision, settings.device):
        for trainee in trainees:  # each run its own scaler: grouping changes nothing
            trainee.scaler = torch.amp.GradScaler(settings.device.type)
    autocast = settings.autocast(choice.precision)
    logger.debug("%s: %s", group.label, choice.why)
    if choice.compile and settings.device.type not in COMPILE_VERIFIED_DEVICES:
        logger.warning("%s: %s", group.label,
                       MSG_COMPILE_UNVERIFIED.format(device=settings.device.type))
    outcomes = {run.id: Outcome(run, "finished") for run in group.runs}
    try:
        catch_up, unreadable = restore(group, trainees, source, logger)
        if unreadable is not None:
            for run in group.runs:
                recorder.give_up_resume(run, unreadable)
            raise CheckpointUnreadable(f"{unreadable}; decided again: it trains from scratch")
        start = trainees[0].epochs_done
        for trainee in trainees:
            if trainee.run.id in catch_up:
                recorder.catch_up(trainee.run, epoch=trainee.epochs_done,
                                  metrics=catch_up[trainee.run.id])
            if start > 0:
                outcomes[trainee.run.id].note = f"resumed at epoch {start + 1}"
            recorder.note(trainee.run, choice.tags())
            trainee.forward = step_forward(trainee.model, wrap=settings.wrap_model,
                                           compile_it=choice.compile)
        teacher: TeacherSignal | None = None
        if (signal := _teacher_signal(group, trainees, study, dataset, source, settings)):
            teacher, teacher_precision = signal
            for run in group.runs:
                recorder.note(run, {schema.TAG_TEACHER_CACHE: teacher.mode,
                                    schema.TAG_TEACHER_PRECISION: teacher_precision})
        _train(group, trainees, teacher, study, dataset, recorder, settings, autocast,
               progress, outcomes, logger)
        recorder.close()  # the queued writes are in the store (or their error is raised here)
    except (ClaimLost, CheckpointUnreadable, DataParallelFailure):
        with contextlib.suppress(Exception):
            recorder.close()
        raise
    except Stopped as stop:  # a signal: give the runs up, resumable at once by anyone
        epoch = trainees[0].epochs_done
        reason = (f"{stop}: stopped in epoch {epoch + 1}; resumes at epoch {epoch + 1} from "
                  f"the checkpoint of epoch {epoch}" if epoch else
                  f"{stop}: stopped in epoch 1; no checkpoint yet, starts again")
        recorder.release(reason)
        with contextlib.suppress(Exception):
            recorder.close()
        logger.warning("%s: %s", group.label, reason)
        for trainee in trainees:
            outcome = outcomes[trainee.run.id]
            if outcome.status == "finished" and not outcome.recorded:
                outcome.status, outcome.reason = "interrupted", reason
    except Exception as err:  # one group's crash fails its runs, the plan goes on
        with contextlib.suppress(Exception):  # queued writes done, their thread stopped
            recorder.close()
        if isinstance(err, TrackingError) or is_unreachable(err):  # ... unless the store is gone
            raise TrackingError(MSG_LOST_STORE.format(uri=settings.store_uri, group=group.label,
                                                      error=_first_line(err))) from err
        reason = f"{type(err).__name__}: {err}"
        # One line on the console; the traceback goes to the log file only (DEBUG).
        logger.error("%s failed: %s", group.label, reason)
        logger.debug("%s", traceback.format_exc())
        for trainee in trainees:
            outcome = outcomes[trainee.run.id]
            if outcome.status == "finished" and not outcome.recorded:
                trainee.failure = reason
                outcome.status, outcome.reason = "failed", reason
                with contextlib.suppress(Exception):
                    recorder.fail(trainee.run, reason)
        if settings.data_parallel:  # the other processes cannot step without this one
            raise DataParallelFailure(f"{group.label} failed on this process ({reason}); "
                                      "every process stops") from err
    for outcome in outcomes.values():
        outcome.mlflow_id = recorder.mlflow_id(outcome.run)
    return list(outcomes.values())


def _check_vocabulary(trainees: Sequence[Trainee], dataset: LoadedDataset,
                      study: Study) -> None:
    """A text model must have an embedding for every token id of the data (else its first
    forward fails deep inside with an index error)."""
    if dataset.largest_token_id is None:
        return
    from kdspec.huggingface_models import vocabulary_problem

    # The members of a group share their architecture: the first one speaks for all.
    problem = vocabulary_problem(trainees[0].model, dataset.largest_token_id,
                                 study.dataset.tokenizer or "", dataset.pad_token_id)
    if problem is not None:
        raise DataError(problem)


def _start_from_given_weights(trainees: Sequence[Trainee], source: ArtifactSource,
                              recorder: RunRecorder, group: Group, logger: logging.Logger,
                              num_classes: int) -> None:
    """Members with ``init`` start from those weights (pretrained, a checkpoint, another
    run's final.pt) instead of their seed's; what does not fit keeps the seed's values."""
    loaded: dict[tuple[str, str], tuple[dict[str, torch.Tensor], dict[str, str]]] = {}
    for trainee in trainees:
        init = trainee.run.init
        if init is None:
            continue
        key = (init.kind, init.name)
        if key not in loaded:
            loaded[key] = source.initial_weights(init, num_classes=num_classes)
        weights, provenance = loaded[key]
        recorder.note(trainee.run, provenance)
        count, kept = checkpoints.load_initial(trainee.model, weights)
        logger.info("%s: %s weights %s: %d tensors loaded%s", group.label, init.kind, init.name,
                    count, f"; kept the seed's for {len(kept)}: {', '.join(kept[:4])}"
                    + (" ..." if len(kept) > 4 else "") if kept else "")


def _teacher_signal(group: Group, trainees: list[Trainee], study: Study, dataset: LoadedDataset,
                    source: ArtifactSource, settings: GroupSettings
                    ) -> tuple[TeacherSignal, Precision] | None:
    """The group's teacher signal and the precision of the teacher's forwards (its own
    ``auto`` choice: the teacher's size decides, not the students')."""
    first = group.runs[0]
    if first.teacher_id is None:
        return None
    teacher = to_training_layout(source.teacher(first.teacher_id, device=settings.device),
                                 settings.device)
    precision = resolve_speed(
        study.runtime, device=settings.device, training_images=0,
        macs=model_macs(teacher, in_channels=dataset.channels,
                        sequence_length=dataset.sequence_length,
                        image_size=dataset.image_size)).precision
    signal = make_teacher_signal(
        teacher, dataset.train, runtime=study.runtime, precision=precision,
        epochs=first.recipe.epochs - trainees[0].epochs_done, group_size=len(trainees),
        num_classes=dataset.num_classes, device=settings.device,
        autocast=settings.autocast(precision))
    return signal, precision


def _train(group: Group, trainees: list[Trainee], teacher: TeacherSignal | None, study: Study,
           dataset: LoadedDataset, recorder: RunRecorder, settings: GroupSettings,
           autocast: AutocastFactory, progress: GroupProgress, outcomes: dict[str, Outcome],
           logger: logging.Logger) -> None:
    first = group.runs[0]
    epochs = first.recipe.epochs
    last_eval: dict[str, Evaluation] = {}
    progress.start(epochs=epochs, start_epoch=trainees[0].epochs_done)
    epoch_started = time.monotonic()

    def on_batch() -> None:
        progress.batch()
        recorder.alive()
        if settings.stop is not None:
            settings.stop.check()

    def on_epoch_end(results: Sequence[EpochResult]) -> None:
        nonlocal epoch_started
        seconds = time.monotonic() - epoch_started
        error: Exception | None = None
        members: list[MemberEpoch] = []
        try:
            members = [_record_epoch(result, epochs, last_eval, dataset, recorder, settings,
                                     autocast, outcomes, logger) for result in results]
        except Exception as err:  # data-parallel: every process must hear of it first
            error = err
        if settings.share_verdict is not None:
            verdict = settings.share_verdict(None if error is None else _first_line(error))
            if verdict is not None and error is None:
                raise DataParallelFailure(f"process 0 stopped {group.label}: {verdict}")
        if error is not None:
            raise error
        progress.epoch(members, seconds=seconds)
        epoch_started = time.monotonic()

    try:
        train_lockstep(trainees, dataset.train, teacher=teacher, seed=first.seed,
                       batch_size=first.recipe.batch_size, epochs=epochs,
                       autocast=autocast, on_batch=on_batch,
                       on_epoch_end=on_epoch_end, batch_share=settings.batch_share,
                       sum_over_processes=settings.sum_over_processes)
    finally:
        progress.close()
    for trainee in trainees:
        if trainee.failure is None:
            _finish(trainee, last_eval.get(trainee.run.id), dataset, recorder, settings,
                    autocast, outcomes[trainee.run.id], logger, study)


def _record_epoch(result: EpochResult, epochs: int, last_eval: dict[str, Evaluation],
                  dataset: LoadedDataset, recorder: RunRecorder, settings: GroupSettings,
                  autocast: AutocastFactory, outcomes: dict[str, Outcome],
                  logger: logging.Logger) -> MemberEpoch:
    trainee = result.trainee
    run = trainee.run
    done = result.epoch + 1
    metrics = {schema.METRIC_TRAIN_LOSS: result.train_loss, schema.METRIC_LR: result.lr}
    accuracy = None
    if result.failure is None and settings.evaluates and (done % settings.eval_every == 0
                                                          or done == epochs):
        evaluation = evaluate(trainee.model, dataset.test, num_classes=dataset.num_classes,
                              autocast=autocast)
        last_eval[run.id] = evaluation
        accuracy = evaluation.accuracy
        metrics[schema.METRIC_TEST_ACC] = accuracy
        if dataset.validation is not None:
            metrics[schema.METRIC_VAL_ACC] = evaluate(
                trainee.model, dataset.validation, num_classes=dataset.num_classes,
                autocast=autocast).accuracy
    else:
        last_eval.pop(run.id, None)
    if result.failure is not None:
        recorder.fail(run, result.failure, epoch=done, metrics=metrics)
        outcome = outcomes[run.id]
        outcome.status, outcome.reason = "failed", result.failure
        logger.info("%s FAILED: %s", run_name(run), result.failure)
    else:
        recorder.epoch(trainee, epoch=done, metrics=metrics)
    return MemberEpoch(run=run, epoch=done, epochs=epochs, loss=result.train_loss,
                       accuracy=accuracy, failure=result.failure)


def _finish(trainee: Trainee, evaluation: Evaluation | None, dataset: LoadedDataset,
            recorder: RunRecorder, settings: GroupSettings, autocast: AutocastFactory,
            outcome: Outcome, logger: logging.Logger, study: Study) -> None:
    """Final evaluation (unless the last epoch's is at hand) and the recorded artifacts."""
    if not settings.evaluates:
        return
    if evaluation is None:
        evaluation = evaluate(trainee.model, dataset.test, num_classes=dataset.num_classes,
                              autocast=autocast)
    evaluation = with_individual_outputs(evaluation, trainee.model, dataset.test,
                                         study.individual_fairness, autocast=autocast)
    validation = None if dataset.validation is None or trainee.run.recipe.epochs else evaluate(
        trainee.model, dataset.validation, num_classes=dataset.num_classes,
        autocast=autocast).accuracy
    recorder.finish(trainee, evaluation, validation, checkpoints.final_state(
        trainee, in_channels=dataset.channels, image_size=dataset.image_size,
        num_classes=dataset.num_classes))
    outcome.recorded = True
    outcome.test_acc = evaluation.accuracy
    logger.info("%s finished: test_acc %.4f", run_name(trainee.run, study), evaluation.accuracy)
