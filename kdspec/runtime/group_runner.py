"""Training one lockstep group with MLflow tracking, from its first epoch (or its checkpoint) to
its final artifacts.

At creation: params, tags and (distilled runs) the metric ``temperature``. Per member and epoch:
``checkpoints/last.pt``, then metrics ``train_loss``, ``lr`` and (when due) ``test_acc`` at step =
the epoch number (1-based) with the tag ``kdspec.last_epoch``. At the end: ``predictions.npz``,
``class_accuracy.json``, ``confusion.npy``, ``checkpoints/final.pt`` and status FINISHED. A member whose loss is NaN or
diverges is marked FAILED with the reason in ``kdspec.failure``; the others go on.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, cast

import numpy as np
import torch

from kdspec import tracking_schema as schema
from kdspec.errors import TrackingError
from kdspec.plan import Plan, Run, Study
from kdspec.runtime import checkpoints
from kdspec.runtime.evaluation import Evaluation, evaluate
from kdspec.runtime.interfaces import AutocastFactory, LoadedDataset, TeacherSignal
from kdspec.runtime.progress import GroupProgress
from kdspec.runtime.scheduling import Group
from kdspec.runtime.teacher_signal import make_teacher_signal
from kdspec.runtime.tracking import StoredRun, TrackingStore
from kdspec.runtime.training import (
    EpochResult,
    Trainee,
    new_trainee,
    train_lockstep,
)
from kdspec.tracking.reachability import is_unreachable

OutcomeStatus = Literal["finished", "reused", "failed", "skipped"]
MSG_LOST_STORE = (
    "lost the MLflow store {uri} while training {group} ({error}); finished runs are kept and "
    "interrupted ones resume from their last checkpoint: run the same command again when the "
    "store answers"
)


def _first_line(err: BaseException) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0][:300]


@dataclass
class Outcome:
    """How one run ended in this invocation (the summary table's row)."""

    run: Run
    status: OutcomeStatus
    reason: str = ""
    mlflow_id: str = ""
    test_acc: float | None = None
    note: str = ""  # e.g. "resumed at epoch 3"
    recorded: bool = False  # its final artifacts are logged and its MLflow run FINISHED


@dataclass
class GroupContext:
    """Everything a group needs from the executor."""

    plan: Plan
    study: Study
    store: TrackingStore
    teacher_store: TrackingStore
    dataset: LoadedDataset
    device: torch.device
    autocast: AutocastFactory
    parent_id: str
    workdir: Path
    logger: logging.Logger
    eval_every: int = 1
    show_progress: bool = True
    writer: bool = True  # False on non-main processes of a data-parallel run: train only
    batch_share: tuple[int, int] = (0, 1)
    wrap_model: Callable[[torch.nn.Module], torch.nn.Module] | None = None
    mlflow_ids: dict[str, str] = field(default_factory=dict)


def run_params(run: Run, study: Study) -> dict[str, object]:
    """The params of a nested run: the recipe, flattened, plus what the compare view groups by."""
    recipe = run.recipe
    params: dict[str, object] = {
        "role": run.role, "arch": run.arch, "seed": run.seed, "dataset": study.dataset.name,
        "epochs": recipe.epochs, "batch_size": recipe.batch_size, "optimizer": recipe.optimizer,
        "lr": recipe.lr, "momentum": recipe.momentum, "nesterov": recipe.nesterov,
        "weight_decay": recipe.weight_decay, "schedule": recipe.schedule.kind,
        "schedule.milestones": ",".join(str(m) for m in recipe.schedule.milestones),
        "schedule.gamma": recipe.schedule.gamma,
        "schedule.warmup_epochs": recipe.schedule.warmup_epochs,
        "precision": study.runtime.precision, "augment": study.dataset.augment,
    }
    if run.role == "distilled" and run.loss is not None:
        params.update({"temperature": run.temperature, "hard_weight": run.loss.hard_weight,
                       "soft_weight": run.loss.soft_weight, "t_squared": run.loss.t_squared,
                       "teacher_run_id": run.teacher_id})
    return params


def run_tags(run: Run, study: Study) -> dict[str, str]:
    return {
        schema.TAG_RUN_ID: run.id, schema.TAG_ROLE: run.role, schema.TAG_SEED: str(run.seed),
        schema.TAG_TEMPERATURE: "" if run.temperature is None else f"{run.temperature:g}",
        schema.TAG_TEACHER_RUN_ID: run.teacher_id or "", schema.TAG_STUDY: study.name,
        schema.TAG_LAST_EPOCH: "0",
    }


def run_name(run: Run) -> str:
    """The name shown in the MLflow UI, e.g. ``distilled-lenet5-T4-s0``."""
    temp = f"-T{run.temperature:g}" if run.temperature is not None else ""
    return f"{run.role}-{run.arch}{temp}-s{run.seed}"


def load_teacher(ctx: GroupContext, teacher_id: str) -> torch.nn.Module:
    """The teacher's trained model, from ``checkpoints/final.pt`` of its newest FINISHED run."""
    found = [r for r in ctx.teacher_store.find_runs([teacher_id])[teacher_id]
             if r.status == "FINISHED"]
    if not found:
        raise RuntimeError(f"teacher {teacher_id} has no FINISHED run in {ctx.teacher_store.uri}")
    path = ctx.teacher_store.download(found[-1].mlflow_id, schema.ARTIFACT_FINAL_CHECKPOINT,
                                      ctx.workdir / "teachers" / teacher_id)
    return checkpoints.load_model(path, device=ctx.device)


def _open_mlflow_runs(ctx: GroupContext, group: Group, trainees: list[Trainee]) -> None:
    """Reopen resumed runs, create the others, retire stale unfinished runs."""
    lockstep = "solo" if len(trainees) == 1 else str(len(trainees))
    for action, trainee in zip(group.actions, trainees, strict=True):
        run = action.run
        stale_runs = list(action.stale)
        if action.kind == "resume" and action.stored is not None and trainee.epochs_done == 0:
            stale_runs.append(action.stored)  # its checkpoint could not be read
        for stale in stale_runs:
            if stale.status == "RUNNING":  # killed mid-run; FAILED ones keep their reason
                ctx.store.finish(stale.mlflow_id, "KILLED")
        if action.kind == "resume" and action.stored is not None and trainee.epochs_done > 0:
            ctx.store.reopen(action.stored.mlflow_id)
            ctx.store.set_tags(action.stored.mlflow_id, {schema.TAG_LOCKSTEP: lockstep})
            ctx.mlflow_ids[run.id] = action.stored.mlflow_id
        else:
            mlflow_id = ctx.store.create_run(experiment=ctx.study.tracking.experiment,
                                             parent_id=ctx.parent_id, run_name=run_name(run),
                                             tags={**run_tags(run, ctx.study),
                                                   schema.TAG_LOCKSTEP: lockstep})
            ctx.store.log_params(mlflow_id, run_params(run, ctx.study))
            if run.temperature is not None:
                ctx.store.log_metrics(mlflow_id, {schema.METRIC_TEMPERATURE: run.temperature},
                                      step=0)
            ctx.mlflow_ids[run.id] = mlflow_id


def _restore(ctx: GroupContext, group: Group, trainees: list[Trainee]) -> None:
    """Load each resumed member's ``last.pt``; if any cannot be read, all start from scratch.

    A checkpoint may be one epoch ahead of its ``kdspec.last_epoch`` tag: the run was killed
    after uploading ``last.pt`` but before the epoch's metrics and tag went out (they go in one
    request, after the checkpoint). Then the metrics carried in the checkpoint are logged now,
    and the run resumes after that epoch instead of retraining from scratch.
    """
    if group.start_epoch == 0:
        return
    states = []
    try:
        for action in group.actions:
            assert action.stored is not None
            path = ctx.store.download(action.stored.mlflow_id, "checkpoints/last.pt",
                                      ctx.workdir / "resume" / action.run.id)
            states.append(checkpoints.load(path))
        epochs = {int(s["epochs_done"]) for s in states}
        if len(epochs) != 1 or not epochs <= {group.start_epoch, group.start_epoch + 1}:
            raise ValueError(f"checkpoint epochs {sorted(epochs)} do not match the "
                             f"kdspec.last_epoch tags ({group.start_epoch})")
    except Exception as err:  # a missing or corrupt checkpoint must not stop the plan
        ctx.logger.warning("%s: cannot resume (%s); training from scratch", group.label, err)
        return
    (done,) = epochs
    for action, state in zip(group.actions, states, strict=True):
        if done > group.start_epoch and ctx.writer:
            assert action.stored is not None
            ctx.store.log_metrics(action.stored.mlflow_id, dict(state.get("epoch_metrics", {})),
                                  step=done, tags={schema.TAG_LAST_EPOCH: done})
    for trainee, state in zip(trainees, states, strict=True):
        checkpoints.restore_trainee(trainee, state)


def train_group(ctx: GroupContext, group: Group) -> list[Outcome]:
    """Train ``group`` to the end and record it; never raises for a training failure."""
    dataset = ctx.dataset
    trainees = [new_trainee(run, in_channels=dataset.channels, image_size=dataset.image_size,
                            num_classes=dataset.num_classes, device=ctx.device,
                            fp16_scaler=ctx.study.runtime.precision == "fp16"
                            and ctx.device.type == "cuda")
                for run in group.runs]
    outcomes = {run.id: Outcome(run, "finished") for run in group.runs}
    try:
        _restore(ctx, group, trainees)
        start = trainees[0].epochs_done
        for outcome in outcomes.values():
            if start > 0:
                outcome.note = f"resumed at epoch {start + 1}"
        if ctx.writer:
            _open_mlflow_runs(ctx, group, trainees)
        for trainee in trainees:
            if ctx.study.runtime.compile:
                trainee.forward = cast(torch.nn.Module, torch.compile(trainee.model))
            if ctx.wrap_model is not None:
                trainee.forward = ctx.wrap_model(trainee.model)
        teacher = _teacher_signal(ctx, group, trainees)
        if ctx.writer and teacher is not None:
            for run in group.runs:
                ctx.store.set_tags(ctx.mlflow_ids[run.id], {schema.TAG_TEACHER_CACHE: teacher.mode})
        _train(ctx, group, trainees, teacher, outcomes)
    except Exception as err:  # one group's crash fails its runs, the plan goes on
        if is_unreachable(err):  # ... unless the store itself is gone: the plan stops
            raise TrackingError(MSG_LOST_STORE.format(uri=ctx.store.uri, group=group.label,
                                                      error=_first_line(err))) from err
        reason = f"{type(err).__name__}: {err}"
        # One line on the console; the traceback goes to the log file only (DEBUG).
        ctx.logger.error("%s failed: %s", group.label, reason)
        ctx.logger.debug("%s", traceback.format_exc())
        for trainee in trainees:
            outcome = outcomes[trainee.run.id]
            if outcome.status == "finished" and not outcome.recorded:
                trainee.failure = reason
                outcome.status, outcome.reason = "failed", reason
                mlflow_id = ctx.mlflow_ids.get(trainee.run.id)
                if ctx.writer and mlflow_id:
                    with contextlib.suppress(Exception):
                        ctx.store.fail(mlflow_id, reason)
    for outcome in outcomes.values():
        outcome.mlflow_id = ctx.mlflow_ids.get(outcome.run.id, "")
    return list(outcomes.values())


def _teacher_signal(ctx: GroupContext, group: Group,
                    trainees: list[Trainee]) -> TeacherSignal | None:
    first = group.runs[0]
    if first.teacher_id is None:
        return None
    teacher = load_teacher(ctx, first.teacher_id)
    return make_teacher_signal(
        teacher, ctx.dataset.train, runtime=ctx.study.runtime,
        epochs=first.recipe.epochs - trainees[0].epochs_done, group_size=len(trainees),
        num_classes=ctx.dataset.num_classes, device=ctx.device, autocast=ctx.autocast)


def _train(ctx: GroupContext, group: Group, trainees: list[Trainee],
           teacher: TeacherSignal | None, outcomes: dict[str, Outcome]) -> None:
    first = group.runs[0]
    epochs = first.recipe.epochs
    batches = math.ceil(ctx.dataset.train.num_samples / first.recipe.batch_size)
    progress = GroupProgress(group.label, epochs=epochs, start_epoch=trainees[0].epochs_done,
                             batches_per_epoch=batches // ctx.batch_share[1],
                             enabled=ctx.show_progress)
    last_eval: dict[str, Evaluation] = {}

    def on_epoch_end(results: Sequence[EpochResult]) -> None:
        for result in results:
            _record_epoch(ctx, result, epochs, last_eval, outcomes)
        accs = [last_eval[r.trainee.run.id].accuracy for r in results
                if r.trainee.run.id in last_eval]
        progress.epoch(loss=float(np.mean([r.train_loss for r in results])),
                       accuracy=float(np.mean(accs)) if accs else None)

    try:
        train_lockstep(trainees, ctx.dataset.train, teacher=teacher, seed=first.seed,
                       batch_size=first.recipe.batch_size, epochs=epochs, autocast=ctx.autocast,
                       on_batch=progress.batch, on_epoch_end=on_epoch_end,
                       batch_share=ctx.batch_share)
    finally:
        progress.close()
    for action, trainee in zip(group.actions, trainees, strict=True):
        if trainee.failure is None:
            _finalize(ctx, trainee, last_eval.get(trainee.run.id), outcomes[trainee.run.id])
            if ctx.writer:
                _retire_superseded(ctx, action.superseded, ctx.mlflow_ids[action.run.id])


def _retire_superseded(ctx: GroupContext, superseded: Sequence[StoredRun], new_id: str) -> None:
    """``--force``: the older FINISHED runs of a retrained run become KILLED, so the store keeps
    exactly one FINISHED run per kdspec id (tag ``kdspec.superseded_by`` names the new one)."""
    for old in superseded:
        ctx.store.set_tags(old.mlflow_id, {schema.TAG_SUPERSEDED_BY: new_id})
        ctx.store.finish(old.mlflow_id, "KILLED")


def _record_epoch(ctx: GroupContext, result: EpochResult, epochs: int,
                  last_eval: dict[str, Evaluation], outcomes: dict[str, Outcome]) -> None:
    trainee = result.trainee
    run = trainee.run
    done = result.epoch + 1
    metrics = {schema.METRIC_TRAIN_LOSS: result.train_loss, schema.METRIC_LR: result.lr}
    if result.failure is None and ctx.writer and (done % ctx.eval_every == 0 or done == epochs):
        evaluation = evaluate(trainee.model, ctx.dataset.test,
                              num_classes=ctx.dataset.num_classes, autocast=ctx.autocast)
        last_eval[run.id] = evaluation
        metrics[schema.METRIC_TEST_ACC] = evaluation.accuracy
    else:
        last_eval.pop(run.id, None)
    ctx.logger.debug("%s epoch %d/%d: %s", run_name(run), done, epochs,
                     ", ".join(f"{k}={v:.4g}" for k, v in metrics.items()))
    if not ctx.writer:
        return
    mlflow_id = ctx.mlflow_ids[run.id]
    metrics = {k: v for k, v in metrics.items() if math.isfinite(v)}
    if result.failure is not None:
        ctx.store.log_metrics(mlflow_id, metrics, step=done)
        ctx.store.fail(mlflow_id, result.failure)
        outcome = outcomes[run.id]
        outcome.status, outcome.reason = "failed", result.failure
        ctx.logger.info("%s FAILED: %s", run_name(run), result.failure)
        return
    path = checkpoints.save(checkpoints.resume_state(trainee, metrics),
                            ctx.workdir / "last" / run.id / "last.pt")
    ctx.store.log_file(mlflow_id, path, schema.ARTIFACT_CHECKPOINT_DIR)
    # One request for the epoch's metrics and its last_epoch tag, after the checkpoint: a run
    # killed before it resumes at the previous epoch without a duplicate metric step.
    ctx.store.log_metrics(mlflow_id, metrics, step=done, tags={schema.TAG_LAST_EPOCH: done})


def _finalize(ctx: GroupContext, trainee: Trainee, evaluation: Evaluation | None,
              outcome: Outcome) -> None:
    """Final evaluation artifacts, ``final.pt`` and FINISHED."""
    run = trainee.run
    if not ctx.writer:
        return
    if evaluation is None:
        evaluation = evaluate(trainee.model, ctx.dataset.test,
                              num_classes=ctx.dataset.num_classes, autocast=ctx.autocast)
    mlflow_id = ctx.mlflow_ids[run.id]
    store = ctx.store
    store.log_bytes(mlflow_id, schema.ARTIFACT_PREDICTIONS, evaluation.predictions_npz())
    store.log_text(mlflow_id, schema.ARTIFACT_CLASS_ACCURACY,
                   evaluation.class_accuracy_json(ctx.dataset.class_names))
    buffer = io.BytesIO()
    np.save(buffer, evaluation.confusion)
    store.log_bytes(mlflow_id, schema.ARTIFACT_CONFUSION, buffer.getvalue())
    final = checkpoints.save(
        checkpoints.final_state(trainee, in_channels=ctx.dataset.channels,
                                image_size=ctx.dataset.image_size,
                                num_classes=ctx.dataset.num_classes),
        ctx.workdir / "final" / run.id / "final.pt")
    store.log_file(mlflow_id, final, schema.ARTIFACT_CHECKPOINT_DIR)
    store.finish(mlflow_id)  # kdspec.last_epoch already says the last epoch (_record_epoch)
    outcome.recorded = True
    outcome.test_acc = evaluation.accuracy
    ctx.logger.info("%s finished: test_acc %.4f", run_name(run), evaluation.accuracy)
