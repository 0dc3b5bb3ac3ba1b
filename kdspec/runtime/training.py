"""The epoch loop: one or more runs trained in lockstep on identical batches.

A lockstep group is the distilled students of one seed (one per temperature and method, same
architecture, recipe and teacher), or a single run (a group of one). Every epoch the group draws
ONE batch iterator ``train.epoch(seed=..., epoch=...)``; for each batch the teacher signal is
asked once for what the members read (logits, and the features of feature methods), then each
member takes its own optimisation step (separate models, optimizers and schedulers: on a small
CPU K separate steps beat a fused step: five ResNet-20 steps ran at 790-990 img/s in sequence and
285 img/s fused with ``torch.func`` on 2 cores, docs/speed.md), whose loss is its method's
(:mod:`kdspec.runtime.method_step`).

Why a run's result does not depend on its group:
1. its initial weights, and those of its method's own modules, come from generators seeded by
   the run's seed alone (:func:`new_trainee`, :mod:`kdspec.runtime.method_state`);
2. batches and augmentation depend only on ``(seed, epoch)`` (the TrainSource contract), and
   CRD's negatives only on ``(seed, epoch, batch number)``;
3. teacher outputs are a function of the batch, whoever asks (hooks read features, they change
   nothing);
4. a member's step reads nothing of the other members'.

No host synchronisation inside an epoch: losses are summed on the device and read once per epoch
(the divergence check), so the CPU never waits on a GPU mid-epoch.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from kdspec.plan import Run
from kdspec.runtime.data.in_memory import derived_seed
from kdspec.runtime.interfaces import (
    AutocastFactory,
    Batch,
    TeacherOutputs,
    TeacherSignal,
    TrainSource,
    shard_batches,
)
from kdspec.runtime.method_state import MethodState
from kdspec.runtime.method_step import FIRST_STEP, StepPlace, step_loss, student_forward
from kdspec.runtime.models import build_model
from kdspec.runtime.optimization import (
    build_optimizer,
    build_scheduler,
    current_lr,
    set_step_rate,
    warmup_factor,
)
from kdspec.runtime.precision import to_training_layout

#: Layers that draw random numbers in training mode.
RANDOM_LAYERS = (torch.nn.Dropout, torch.nn.Dropout1d, torch.nn.Dropout2d, torch.nn.Dropout3d,
                 torch.nn.AlphaDropout, torch.nn.FeatureAlphaDropout)


def has_random_layers(model: torch.nn.Module) -> bool:
    """Whether ``model`` has a dropout layer that drops anything (p > 0)."""
    return any(isinstance(m, RANDOM_LAYERS) and m.p > 0 for m in model.modules())

#: A run whose epoch-mean loss exceeds this multiple of its very first batch's loss is diverging
#: (a healthy run's loss falls below its first value within an epoch; 1000x is far past noise).
DIVERGENCE_FACTOR = 1e3



@dataclass
class Trainee:
    """One run being trained: its model, optimizer, per-epoch scheduler and progress."""

    run: Run
    model: torch.nn.Module
    optimizer: Optimizer
    scheduler: LRScheduler
    #: fp16 only: this run's own gradient scaler (never shared, so grouping changes nothing).
    scaler: torch.amp.GradScaler | None = None
    #: What the step calls: ``model`` itself, or a compiled / data-parallel wrapper of it.
    forward: torch.nn.Module | None = None
    epochs_done: int = 0
    failure: str | None = None
    first_loss: torch.Tensor | None = field(default=None, repr=False)
    #: Whether the model draws random numbers while training (dropout, as in every
    #: transformer): each of its steps then seeds the global RNG from (seed, epoch, step), so
    #: its masks never depend on what else the process trained (lockstep = solo, resume =
    #: straight through).
    stochastic: bool = False
    #: What the run's distillation method keeps besides the model (fitnet's regressor, crd's
    #: heads and memory, label smoothing's epsilon); None when it keeps nothing.
    method: MethodState | None = None

    def __post_init__(self) -> None:
        if self.forward is None:
            self.forward = self.model

    def attach(self, state: MethodState) -> None:
        """Give the run its method's state, before its first step: the optimizer (and its
        scheduler) are built again over the model's parameters then those of the method's
        learned modules, with the recipe's settings."""
        self.method = state
        learned = state.learned()
        if any(True for _ in learned.parameters()):
            both = torch.nn.ModuleList([self.model, learned])
            self.optimizer = build_optimizer(both, self.run.recipe)
            self.scheduler = build_scheduler(self.optimizer, self.run.recipe)


@dataclass(frozen=True)
class EpochResult:
    """What one member did in one epoch (``epoch`` 0-based); ``failure`` set if it diverged."""

    trainee: Trainee
    epoch: int
    train_loss: float
    lr: float
    failure: str | None


def new_trainee(
    run: Run,
    *,
    in_channels: int,
    image_size: int,
    num_classes: int,
    device: torch.device,
    fp16_scaler: bool = False,
) -> Trainee:
    """A freshly initialised run: weights drawn from a CPU generator seeded by ``run.seed`` only
    (global RNG state is saved and restored around it), then moved to ``device`` (channels-last
    on CUDA, where convolutions are faster in that layout)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(run.seed)
        model = build_model(run.arch, in_channels=in_channels, image_size=image_size,
                            num_classes=num_classes)
    model = to_training_layout(model, device)
    optimizer = build_optimizer(model, run.recipe)
    scheduler = build_scheduler(optimizer, run.recipe)
    scaler = torch.amp.GradScaler(device.type) if fp16_scaler else None
    return Trainee(run=run, model=model, optimizer=optimizer, scheduler=scheduler, scaler=scaler,
                   stochastic=has_random_layers(model))


def train_step(
    trainee: Trainee,
    batch: Batch,
    teacher: TeacherOutputs | None,
    *,
    autocast: AutocastFactory = contextlib.nullcontext,
    place: StepPlace = FIRST_STEP,
) -> torch.Tensor:
    """One optimisation step of one member; returns the detached loss (a device scalar).

    The model's one forward runs under ``autocast`` (reading the features its method needs);
    the loss is the run's method's (:func:`kdspec.runtime.method_step.step_loss`: CE for
    teachers and non-distilled students, Hinton's loss for kd; ``teacher`` required for every
    distilled run but label smoothing). ``place``: the step's epoch and batch number.
    """
    run = trainee.run
    assert trainee.forward is not None
    with autocast():
        student = student_forward(trainee.model, trainee.forward, batch.inputs, run)
    loss = step_loss(run, student, teacher, batch, trainee.method, place)
    trainee.optimizer.zero_grad(set_to_none=True)
    if trainee.scaler is not None:
        trainee.scaler.scale(loss).backward()
        trainee.scaler.step(trainee.optimizer)
        trainee.scaler.update()
    else:
        loss.backward()
        trainee.optimizer.step()
    return loss.detach()


def check_loss(loss: float, first_loss: float, epoch: int) -> str | None:
    """Why an epoch's mean loss means the run failed, or None: a NaN or infinite loss, or a loss
    above ``DIVERGENCE_FACTOR`` times the run's first-batch loss."""
    if not math.isfinite(loss):
        return f"non-finite training loss ({loss}) in epoch {epoch + 1}"
    if math.isfinite(first_loss) and first_loss > 0 and loss > DIVERGENCE_FACTOR * first_loss:
        return (f"diverging training loss in epoch {epoch + 1}: {loss:.4g} > "
                f"{DIVERGENCE_FACTOR:g} x the first batch's {first_loss:.4g}")
    return None


@dataclass(frozen=True)
class BatchStream:
    """A group's batches: ``source.epoch(seed=, epoch=, batch_size=, share=)``, a function of
    the group's seed and the epoch alone. ``share = (k, n)`` (data-parallel training): only this
    process's batches (:func:`kdspec.runtime.interfaces.shard_batches`), the same number in
    every process."""

    source: TrainSource
    seed: int
    batch_size: int
    share: tuple[int, int] = (0, 1)


@dataclass(frozen=True)
class LoopHooks:
    """What the loop calls out to: ``on_batch`` after every batch (progress, the claim check, a
    stop request), ``on_epoch_end`` with one result per member still training that epoch
    (evaluation, logging, checkpoints), and ``sum_over_processes`` (data-parallel: the
    all-reduce that makes every process judge divergence on the same numbers)."""

    on_batch: Callable[[], None] | None = None
    on_epoch_end: Callable[[Sequence[EpochResult]], None] | None = None
    sum_over_processes: Callable[[torch.Tensor], torch.Tensor] | None = None


def train_lockstep(
    trainees: Sequence[Trainee],
    batches: BatchStream,
    *,
    teacher: TeacherSignal | None,
    epochs: int,
    autocast: AutocastFactory = contextlib.nullcontext,
    hooks: LoopHooks | None = None,
) -> None:
    """Train ``trainees`` (all at the same ``epochs_done``) from there up to ``epochs`` epochs.

    ``teacher`` is required iff a member reads its teacher while training (every distilled
    run but label smoothing's). A member whose loss is NaN or
    diverges gets ``failure`` set in its epoch result and trains no further; the others go on.
    With ``hooks.sum_over_processes`` the loss is summed over all processes' samples and the
    first losses averaged before the divergence check.
    """
    if not trainees:
        return
    hooks = hooks if hooks is not None else LoopHooks()
    start = trainees[0].epochs_done
    if any(t.epochs_done != start for t in trainees):
        raise ValueError("lockstep members must resume from the same epoch")
    for epoch in range(start, epochs):
        active = [t for t in trainees if t.failure is None]
        if not active:
            return
        loss_sums, seen = _train_epoch(active, batches, epoch, teacher=teacher,
                                       autocast=autocast, on_batch=hooks.on_batch)
        results = _end_epoch(active, epoch, loss_sums, seen, batches.share,
                             hooks.sum_over_processes)
        if hooks.on_epoch_end is not None:
            hooks.on_epoch_end(results)


def _train_epoch(active: Sequence[Trainee], batches: BatchStream, epoch: int, *,
                 teacher: TeacherSignal | None, autocast: AutocastFactory,
                 on_batch: Callable[[], None] | None) -> tuple[list[torch.Tensor], int]:
    """One epoch of every active member on the group's batches (one teacher forward or lookup
    per batch, shared); returns each member's summed loss (device scalars) and the samples
    seen."""
    device = next(active[0].model.parameters()).device
    loss_sums = [torch.zeros((), device=device) for _ in active]
    seen = 0
    warming = [t for t in active if t.run.recipe.schedule.warmup_steps]
    first_step = epoch * len(shard_batches(batches.source.num_samples, batches.batch_size,
                                           batches.share))
    for number, batch in enumerate(batches.source.epoch(
            seed=batches.seed, epoch=epoch, batch_size=batches.batch_size,
            share=batches.share)):
        outputs = teacher.outputs(batch) if teacher is not None else None
        n = batch.labels.shape[0]
        for member in warming:
            set_step_rate(member.optimizer, member.scheduler, warmup_factor(
                member.run.recipe.schedule, first_step + number))
        place = StepPlace(epoch, number)
        for member, loss_sum in zip(active, loss_sums, strict=True):
            if member.stochastic:
                torch.manual_seed(derived_seed(member.run.seed, epoch, number))
            loss = train_step(member, batch, outputs, autocast=autocast, place=place)
            if member.first_loss is None:
                member.first_loss = loss.clone()
            loss_sum += loss * n
        seen += n
        if on_batch is not None:
            on_batch()
    return loss_sums, seen


def _end_epoch(active: Sequence[Trainee], epoch: int, loss_sums: Sequence[torch.Tensor],
               seen: int, share: tuple[int, int],
               sum_over_processes: Callable[[torch.Tensor], torch.Tensor] | None
               ) -> list[EpochResult]:
    """The one host synchronisation of the epoch: every member's summed loss at once, judged
    for divergence; each member's scheduler steps and its epoch is counted."""
    device = loss_sums[0].device
    firsts = [t.first_loss if t.first_loss is not None else torch.zeros((), device=device)
              for t in active]
    totals = torch.stack([*loss_sums, *firsts, torch.tensor(float(seen), device=device)]
                         ).double()
    if sum_over_processes is not None:
        totals = sum_over_processes(totals)
        totals[len(active):2 * len(active)] /= share[1]
    values = totals.cpu().tolist()
    seen_all = values[-1]
    results = []
    for j, member in enumerate(active):
        mean_loss = values[j] / max(seen_all, 1)
        failure = check_loss(mean_loss, values[len(active) + j], epoch)
        lr = current_lr(member.optimizer)
        member.scheduler.step()
        member.epochs_done = epoch + 1
        member.failure = failure
        results.append(EpochResult(member, epoch, mean_loss, lr, failure))
    return results
