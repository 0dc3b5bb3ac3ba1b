"""One lockstep group trained from its first epoch (or its checkpoint) to its final artifacts.

A :class:`LockstepGroup` reads top to bottom as :meth:`LockstepGroup.train` does it: claim the
runs (the writer's ``open``), prepare the members (models, given weights, the speed choice),
make their distillation methods ready (:mod:`kdspec.runtime.method_setup`), resume them from
their checkpoints, get the teacher signal, train the epochs (the loop of
:mod:`kdspec.runtime.training`; each epoch evaluated and recorded), finish each member. Every
error goes to one handler, :meth:`LockstepGroup._on_failure`, which decides what it means:

- a member whose loss is NaN or diverges is failed with the reason; the others go on;
- a crash fails the group's unfinished runs and the plan goes on, unless the store itself is
  gone (the plan stops: TrackingError) or a problem of the study's inputs stops it before any
  member trained (a data or weights error: the runs are released, the error raised);
- another process holding (or taking over) a run: ClaimLost; what this process still holds is
  released and the executor tries the group again later;
- a checkpoint that cannot be used: the runs are given up and decided again (they train anew);
- a stop signal: the runs are released, resumable at once, and come back "interrupted".

Tracking goes through a :class:`~kdspec.runtime.run_writer.RunWriter`, weights come from a
:class:`~kdspec.runtime.weights.WeightSource`, progress goes to a
:class:`~kdspec.runtime.progress.GroupProgress`: the group never sees MLflow.
"""

from __future__ import annotations

import contextlib
import logging
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal, cast

import torch

from kdspec.errors import DataError, DataParallelFailure, OutOfSpace, TrackingError
from kdspec.plan import Precision, Run, Study
from kdspec.runtime import checkpoints
from kdspec.runtime.disk_space import MSG_OUT_OF_SPACE, is_out_of_space
from kdspec.runtime.evaluation import Evaluation, evaluate, with_individual_outputs
from kdspec.runtime.given_weights import fit_weights
from kdspec.runtime.interfaces import AutocastFactory, LoadedDataset, TeacherSignal
from kdspec.runtime.method_setup import (
    MethodSetup,
    prepare_methods,
    reads_teacher_before_training,
)
from kdspec.runtime.method_state import student_needs
from kdspec.runtime.precision import (
    COMPILE_VERIFIED_DEVICES,
    MSG_COMPILE_UNVERIFIED,
    SpeedChoice,
    autocast_for,
    keep_resumed_precision,
    model_macs,
    needs_grad_scaler,
    resolve_speed,
    to_training_layout,
)
from kdspec.runtime.progress import GroupProgress, MemberEpoch
from kdspec.runtime.run_flags import (
    MSG_TEACHER_AT_CHANCE,
    chance_check,
    flag_tags,
    loss_flag,
)
from kdspec.runtime.run_writer import EpochRecord, RunWriter
from kdspec.runtime.scheduling import Group
from kdspec.runtime.stop_request import Stopped, StopRequest
from kdspec.runtime.teacher_cache import TeacherDemand
from kdspec.runtime.teacher_signal import (
    GroupTeacher,
    group_reads,
    group_teacher_choice,
    teacher_forwards,
)
from kdspec.runtime.training import (
    BatchStream,
    EpochResult,
    LoopHooks,
    Trainee,
    new_trainee,
    train_lockstep,
)
from kdspec.runtime.weights import CheckpointUnusable, WeightSource, first_line, resume_members
from kdspec.tracking import schema
from kdspec.tracking.ownership import ClaimLost
from kdspec.tracking.reachability import is_unreachable
from kdspec.tracking.run_layout import run_name

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
    #: Why a finished run is suspect (kdspec.runtime.run_flags), in words.
    flags: tuple[str, ...] = ()


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


@dataclass(frozen=True)
class GroupContext:
    """What a group trains with: its study and data, where it writes its runs and reads its
    weights, how this process trains, and where progress goes."""

    study: Study
    dataset: LoadedDataset
    writer: RunWriter
    weights: WeightSource
    settings: GroupSettings
    progress: GroupProgress
    logger: logging.Logger
    #: Runs of the group that belong to other studies than ``study`` (the variants of a
    #: ``vary`` over the method share a group), by run id.
    run_studies: Mapping[str, Study] = field(default_factory=dict)

    def study_of(self, run: Run) -> Study:
        """The study a run of the group belongs to."""
        return self.run_studies.get(run.id, self.study)


def step_forward(model: torch.nn.Module, *,
                 wrap: Callable[[torch.nn.Module], torch.nn.Module] | None,
                 compile_it: bool) -> torch.nn.Module:
    """What a training step calls: the data-parallel wrap first, then ``torch.compile`` of
    that, so a run tagged compiled runs compiled (compiling the model and wrapping it afterwards
    would drop the compiled forward, as an earlier version did)."""
    forward = wrap(model) if wrap is not None else model
    return cast(torch.nn.Module, torch.compile(forward)) if compile_it else forward


class LockstepGroup:
    """One group's training, from its claim to its members' final artifacts."""

    def __init__(self, group: Group, context: GroupContext) -> None:
        self.group = group
        self.ctx = context
        self.trainees: list[Trainee] = []
        self.outcomes = {run.id: Outcome(run, "finished") for run in group.runs}
        self.last_eval: dict[str, Evaluation] = {}
        self.autocast: AutocastFactory = contextlib.nullcontext
        self.teacher: TeacherSignal | None = None
        #: True while the members are built: an error of the study's inputs (data, given
        #: weights) then stops the plan instead of failing the group.
        self.preparing = True
        self._epoch_started = 0.0
        #: Each member's first and last epoch trained by this process: (epoch, mean loss).
        self._losses: dict[str, list[tuple[int, float]]] = {}

    @property
    def epochs(self) -> int:
        return self.group.runs[0].recipe.epochs

    def train(self) -> list[Outcome]:
        """Train the group to the end and record it; never raises for a training failure.

        Raises ClaimLost (another process holds a member: nothing more is written to it),
        CheckpointUnusable (decide again: the runs train anew), TrackingError (the store
        stopped answering: the plan must stop), DataParallelFailure, and the errors of the
        study's inputs found before any member trained."""
        self._claim()
        try:
            self._prepare()
            self.preparing = False
            self._resume()
            self._train_epochs()
            for trainee in self.trainees:
                if trainee.failure is None:
                    self._finish(trainee)
            self.ctx.writer.close()  # the queued writes are in the store, or their error here
        except BaseException as err:
            self._on_failure(err)
        for outcome in self.outcomes.values():
            outcome.mlflow_id = self.ctx.writer.mlflow_id(outcome.run)
        return list(self.outcomes.values())

    # -- the steps, in order ------------------------------------------------------------------
    def _claim(self) -> None:
        """The claim comes first: nothing is built or downloaded for runs that are not ours.
        Data-parallel, every process follows process 0's outcome."""
        lost: ClaimLost | None = None
        try:
            self.ctx.writer.open(self.group)
        except ClaimLost as err:
            lost = err
        if not self.ctx.settings.agree(lost is None):
            with contextlib.suppress(Exception):
                self.ctx.writer.close()
            raise lost or ClaimLost("the first process lost the claim")

    def _prepare(self) -> None:
        """The members' models (each from its own seed), the weights given to any that do not
        start from their seed, the speed choice and its autocast."""
        data, settings = self.ctx.dataset, self.ctx.settings
        self.trainees = [new_trainee(run, in_channels=data.channels, image_size=data.image_size,
                                     num_classes=data.num_classes, device=settings.device)
                         for run in self.group.runs]
        self._check_vocabulary()
        if self.group.start_epoch == 0:  # a resumed run's checkpoint holds its weights
            self._load_given_weights()
        choice = self._speed_choice()
        if needs_grad_scaler(choice.precision, settings.device):
            for trainee in self.trainees:  # each run its own scaler: grouping changes nothing
                trainee.scaler = torch.amp.GradScaler(settings.device.type)
        self.autocast = settings.autocast(choice.precision)
        self.ctx.logger.debug("%s: %s", self.group.label, choice.why)
        if choice.compile and settings.device.type not in COMPILE_VERIFIED_DEVICES:
            self.ctx.logger.warning("%s: %s", self.group.label,
                                    MSG_COMPILE_UNVERIFIED.format(device=settings.device.type))
        for trainee in self.trainees:
            self.ctx.writer.note(trainee.run, choice.tags())
            trainee.forward = step_forward(trainee.model, wrap=settings.wrap_model,
                                           compile_it=choice.compile)

    def _speed_choice(self) -> SpeedChoice:
        """One choice for the group (its members share architecture, recipe and data); a
        resumed group keeps the precision it started in. Members that read the student's
        features (through hooks on the eager model) are not compiled."""
        data = self.ctx.dataset
        choice = resolve_speed(
            self.ctx.study.runtime, device=self.ctx.settings.device,
            macs=model_macs(self.trainees[0].model, sequence_length=data.sequence_length,
                            in_channels=data.channels, image_size=data.image_size),
            training_images=self.epochs * data.train.num_samples)
        hooked = sorted({r.method.name for r in self.group.runs
                         if r.method is not None and student_needs(r.method).any})
        if choice.compile and hooked:
            choice = replace(choice, compile=False, why=f"{choice.why}; not compiled: "
                             f"{', '.join(hooked)} read the student's features through hooks")
        return keep_resumed_precision(choice, self.ctx.study.runtime, [
            a.stored.precision for a in self.group.actions
            if a.kind == "resume" and a.stored is not None])

    def _resume(self) -> None:
        """The members' methods made ready (with the teacher, where they read it before
        training), then resumed members load their checkpoints (CheckpointUnusable when any
        cannot be used); then the teacher signal of a distilled group."""
        teacher = self._teacher()
        self._prepare_methods(teacher)
        catch_up = resume_members(self.group, self.trainees, self.ctx.weights, self.ctx.logger)
        start = self.trainees[0].epochs_done
        for trainee in self.trainees:
            if trainee.run.id in catch_up:
                self.ctx.writer.catch_up(trainee.run, epoch=trainee.epochs_done,
                                         metrics=catch_up[trainee.run.id])
            if start > 0:
                self.outcomes[trainee.run.id].note = f"resumed at epoch {start + 1}"
        self.teacher = self._teacher_signal(teacher)

    def _teacher(self) -> GroupTeacher | None:
        """The group's teacher model, when a member reads it (while training, or before: a
        feature method's probe, a matched epsilon), its forwards in its own precision."""
        runs, settings = self.group.runs, self.ctx.settings
        teacher_id = runs[0].teacher_id
        if teacher_id is None or not (group_reads(runs).outputs or reads_teacher_before_training(
                runs, fresh=self.group.start_epoch == 0)):
            return None
        model = to_training_layout(self.ctx.weights.teacher(teacher_id, device=settings.device),
                                   settings.device)
        return GroupTeacher(model, teacher_forwards(
            model, runtime=self.ctx.study.runtime, data=self.ctx.dataset,
            device=settings.device, autocast_of=settings.autocast))

    def _prepare_methods(self, teacher: GroupTeacher | None) -> None:
        """Each member's method state built and attached; what it decided noted on its run."""
        notes = prepare_methods(self.trainees, MethodSetup(
            self.ctx.dataset, teacher.model if teacher is not None else None,
            teacher.forwards.autocast if teacher is not None else contextlib.nullcontext,
            fresh=self.group.start_epoch == 0, data_parallel=self.ctx.settings.data_parallel))
        for trainee in self.trainees:
            note = notes.get(trainee.run.id)
            if note is not None:
                self.ctx.writer.note(trainee.run, note.tags, params=note.params)

    def _teacher_signal(self, teacher: GroupTeacher | None) -> TeacherSignal | None:
        """The group's teacher signal, live or cached (none when no member reads the teacher
        while training); every run's tags say which and why."""
        if self.group.runs[0].teacher_id is None:
            return None
        data = self.ctx.dataset
        choice = group_teacher_choice(self.group.runs, teacher, TeacherDemand(
            data.train, epochs=self.epochs - self.trainees[0].epochs_done,
            num_classes=data.num_classes, group_size=len(self.trainees)),
            runtime=self.ctx.study.runtime)
        tags = choice.tags()
        if teacher is not None:
            tags[schema.TAG_TEACHER_PRECISION] = teacher.forwards.precision
        for run in self.group.runs:
            self.ctx.writer.note(run, tags)
        return choice.signal

    def _train_epochs(self) -> None:
        first, settings = self.group.runs[0], self.ctx.settings
        self.ctx.progress.start(epochs=self.epochs, start_epoch=self.trainees[0].epochs_done)
        self._epoch_started = time.monotonic()
        try:
            train_lockstep(
                self.trainees,
                BatchStream(self.ctx.dataset.train, seed=first.seed,
                            batch_size=first.recipe.batch_size, share=settings.batch_share),
                teacher=self.teacher, epochs=self.epochs, autocast=self.autocast,
                hooks=LoopHooks(on_batch=self._after_batch, on_epoch_end=self._record_epoch,
                                sum_over_processes=settings.sum_over_processes))
        finally:
            self.ctx.progress.close()

    def _after_batch(self) -> None:
        """Progress, the claim (single-process: a lost claim stops the group here; data-parallel
        processes must meet at the epoch's end first) and a stop request."""
        self.ctx.progress.batch()
        if not self.ctx.settings.data_parallel:
            self.ctx.writer.check()
        if self.ctx.settings.stop is not None:
            self.ctx.settings.stop.check()

    def _record_epoch(self, results: Sequence[EpochResult]) -> None:
        """Evaluate (every ``eval_every`` epochs and the last), fail the members that diverged,
        record the others' epoch in one write batch; data-parallel, every process hears of an
        error of process 0 before any raises."""
        seconds = time.monotonic() - self._epoch_started
        error: Exception | None = None
        members: list[MemberEpoch] = []
        try:
            evaluated = [self._evaluate_member(result) for result in results]
            members = [member for member, _ in evaluated]
            self.ctx.writer.epoch([EpochRecord(r.trainee, r.epoch + 1, metrics)
                                   for r, (_, metrics) in zip(results, evaluated, strict=True)
                                   if r.failure is None])
        except Exception as err:
            error = err
        verdict_of = self.ctx.settings.share_verdict
        if verdict_of is not None:
            verdict = verdict_of(None if error is None else first_line(error))
            if verdict is not None and error is None:
                raise DataParallelFailure(f"process 0 stopped {self.group.label}: {verdict}")
        if error is not None:
            raise error
        self.ctx.progress.epoch(members, seconds=seconds)
        self._epoch_started = time.monotonic()

    def _evaluate_member(self, result: EpochResult) -> tuple[MemberEpoch, dict[str, float]]:
        """A member's epoch: its metrics (evaluated when due); a diverged member is failed."""
        run, done = result.trainee.run, result.epoch + 1
        metrics = {schema.METRIC_TRAIN_LOSS: result.train_loss, schema.METRIC_LR: result.lr}
        first_last = self._losses.setdefault(run.id, [])
        if not first_last:
            first_last.append((done, result.train_loss))
        first_last[1:] = [(done, result.train_loss)]
        accuracy = None
        settings = self.ctx.settings
        if result.failure is None and settings.evaluates and (
                done % settings.eval_every == 0 or done == self.epochs):
            evaluation = self._evaluate(result.trainee.model, validation=False)
            self.last_eval[run.id] = evaluation
            accuracy = metrics[schema.METRIC_TEST_ACC] = evaluation.accuracy
            if self.ctx.dataset.validation is not None:
                metrics[schema.METRIC_VAL_ACC] = self._evaluate(result.trainee.model,
                                                                validation=True).accuracy
        else:
            self.last_eval.pop(run.id, None)
        if result.failure is not None:
            self.ctx.writer.fail(run, result.failure, epoch=done, metrics=metrics)
            outcome = self.outcomes[run.id]
            outcome.status, outcome.reason = "failed", result.failure
            self.ctx.logger.info("%s FAILED: %s", run_name(run), result.failure)
        return MemberEpoch(run=run, epoch=done, epochs=self.epochs, loss=result.train_loss,
                           accuracy=accuracy, failure=result.failure), metrics

    def _evaluate(self, model: torch.nn.Module, *, validation: bool) -> Evaluation:
        data = self.ctx.dataset
        split = data.validation if validation and data.validation is not None else data.test
        return evaluate(model, split, num_classes=data.num_classes, autocast=self.autocast)

    def _finish(self, trainee: Trainee) -> None:
        """Final evaluation (unless the last epoch's is at hand) and the recorded artifacts."""
        if not self.ctx.settings.evaluates:
            return
        data, study = self.ctx.dataset, self.ctx.study_of(trainee.run)
        evaluation = self.last_eval.get(trainee.run.id) or self._evaluate(trainee.model,
                                                                          validation=False)
        evaluation = with_individual_outputs(evaluation, trainee.model, data.test,
                                             study.individual_fairness, autocast=self.autocast)
        if not self._judge(trainee, evaluation):
            return
        validation = (None if data.validation is None or trainee.run.recipe.epochs
                      else self._evaluate(trainee.model, validation=True).accuracy)
        self.ctx.writer.finish(trainee, evaluation, validation, checkpoints.final_state(
            trainee, in_channels=data.channels, image_size=data.image_size,
            num_classes=data.num_classes))
        outcome = self.outcomes[trainee.run.id]
        outcome.recorded, outcome.test_acc = True, evaluation.accuracy
        self.ctx.logger.info("%s finished: test_acc %.4f", run_name(trainee.run, study),
                             evaluation.accuracy)

    def _judge(self, trainee: Trainee, evaluation: Evaluation) -> bool:
        """Whether the member may finish: a teacher at chance fails (its students would learn
        from noise) unless its block accepts chance or it is the untrained teacher of a
        ``random_teacher`` control; any other suspect run is flagged."""
        run, outcome = trainee.run, self.outcomes[trainee.run.id]
        chance = chance_check(evaluation.confusion)
        study = self.ctx.study_of(run)
        random_teacher = study.method.name == "random_teacher"  # at chance by design
        if (chance.at_chance and run.role == "teacher"
                and not (study.teacher.accept_chance or random_teacher)):
            reason = MSG_TEACHER_AT_CHANCE.format(check=chance.describe())
            self.ctx.writer.fail(run, reason)
            outcome.status, outcome.reason, outcome.test_acc = "failed", reason, chance.accuracy
            self.ctx.logger.error("%s FAILED: %s", run_name(run), reason)
            return False
        losses = self._losses.get(run.id, [])
        flags = flag_tags(chance=chance,
                          loss=loss_flag(losses[0], losses[-1]) if len(losses) == 2 else None)
        if flags:
            self.ctx.writer.note(run, flags)
            outcome.flags = tuple(flags.values())
            for flag in outcome.flags:
                self.ctx.logger.warning("%s: %s", run_name(run), flag)
        return True

    # -- members that start from given weights -------------------------------------------------
    def _check_vocabulary(self) -> None:
        """A text model must have an embedding for every token id of the data (else its first
        forward fails deep inside with an index error)."""
        data = self.ctx.dataset
        if data.largest_token_id is None:
            return
        from kdspec.runtime.models.huggingface import vocabulary_problem

        # The members of a group share their architecture: the first one speaks for all.
        problem = vocabulary_problem(self.trainees[0].model, data.largest_token_id,
                                     self.ctx.study.dataset.tokenizer or "", data.pad_token_id)
        if problem is not None:
            raise DataError(problem)

    def _load_given_weights(self) -> None:
        """Members with ``init`` start from those weights (pretrained, a checkpoint, another
        run's final.pt) instead of their seed's, fitted by the rules of
        :mod:`kdspec.runtime.given_weights` (weights that do not fit stop the plan, naming what
        did not match)."""
        loaded: dict[tuple[str, str], tuple[dict[str, torch.Tensor], dict[str, str]]] = {}
        for trainee in self.trainees:
            init = trainee.run.init
            if init is None:
                continue
            key = (init.kind, init.name)
            if key not in loaded:
                loaded[key] = self.ctx.weights.initial_weights(
                    init, num_classes=self.ctx.dataset.num_classes)
            weights, provenance = loaded[key]
            self.ctx.writer.note(trainee.run, provenance)
            fit = fit_weights(trainee.model, weights, init, arch=trainee.run.arch)
            self.ctx.logger.info(
                "%s: %s weights %s: %d tensors loaded%s", self.group.label, init.kind, init.name,
                len(fit.loaded), "" if fit.complete else
                f"; the seed's values kept where the weights do not fit: {fit.problems()}")

    # -- the one failure handler --------------------------------------------------------------
    def _on_failure(self, err: BaseException) -> None:
        """What an error means for the group's runs (see the module docstring); raises what
        the executor must hear of, returns when the outcomes say it all."""
        writer, logger, label = self.ctx.writer, self.ctx.logger, self.group.label
        if isinstance(err, CheckpointUnusable):
            with contextlib.suppress(Exception):
                writer.give_up_resume(str(err))
        elif isinstance(err, ClaimLost):
            logger.warning("%s: %s; this process writes nothing more to it", label, err)
            with contextlib.suppress(Exception):
                writer.release(f"released by a process that lost another run of its lockstep "
                               f"group ({err})")
        elif isinstance(err, Stopped):
            self._stopped(err)
            return
        elif isinstance(err, Exception) and not isinstance(err, DataParallelFailure):
            if isinstance(err, TrackingError) or is_unreachable(err):
                self._close_quietly()
                raise TrackingError(MSG_LOST_STORE.format(
                    uri=self.ctx.settings.store_uri, group=label, error=first_line(err))
                ) from err
            if is_out_of_space(err):  # every later write would fail too: stop the plan
                with contextlib.suppress(Exception):
                    writer.release(f"stopped: out of disk space ({first_line(err)})")
                self._close_quietly()
                raise OutOfSpace(MSG_OUT_OF_SPACE.format(what=label, error=first_line(err))
                                 ) from err
            if self.preparing and not isinstance(err, CheckpointUnusable):
                with contextlib.suppress(Exception):  # the study's inputs: the plan stops
                    writer.release(f"stopped before training: {first_line(err)}")
            else:
                self._fail_members(err)
                return
        self._close_quietly()
        raise err

    def _close_quietly(self) -> None:
        with contextlib.suppress(Exception):  # queued writes done, their thread stopped
            self.ctx.writer.close()

    def _stopped(self, stop: Stopped) -> None:
        """A stop signal: the runs are given up, resumable at once by anyone."""
        epoch = self.trainees[0].epochs_done if self.trainees else 0
        reason = (f"{stop}: stopped in epoch {epoch + 1}; resumes at epoch {epoch + 1} from "
                  f"the checkpoint of epoch {epoch}" if epoch else
                  f"{stop}: stopped in epoch 1; no checkpoint yet, starts again")
        self.ctx.writer.release(reason)
        self._close_quietly()
        self.ctx.logger.warning("%s: %s", self.group.label, reason)
        for outcome in self.outcomes.values():
            if outcome.status == "finished" and not outcome.recorded:
                outcome.status, outcome.reason = "interrupted", reason

    def _fail_members(self, err: Exception) -> None:
        """One group's crash fails its unfinished runs; the plan goes on (data-parallel, every
        process stops: the others cannot step without this one)."""
        self._close_quietly()
        reason = f"{type(err).__name__}: {err}"
        # One line on the console; the traceback goes to the log file only (DEBUG).
        self.ctx.logger.error("%s failed: %s", self.group.label, reason)
        self.ctx.logger.debug("%s", traceback.format_exc())
        for trainee in self.trainees:
            outcome = self.outcomes[trainee.run.id]
            if outcome.status == "finished" and not outcome.recorded:
                trainee.failure = reason
                outcome.status, outcome.reason = "failed", reason
                with contextlib.suppress(Exception):
                    self.ctx.writer.fail(trainee.run, reason)
        if self.ctx.settings.data_parallel:
            raise DataParallelFailure(f"{self.group.label} failed on this process ({reason}); "
                                      "every process stops") from err
