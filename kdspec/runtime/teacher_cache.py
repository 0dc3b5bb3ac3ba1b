"""Teacher logits computed once for every (sample, view) and looked up during distillation.

When the augmentation has finitely many views (none: 1, flip: 2, crop with 4-px padding: 81,
crop + flip: 162), every image a distilled student can ever see is ``render(index, view)`` for
some pair, so the teacher's logits for all ``N x views`` pairs can be computed once (batched,
no grad, eval mode, under the run's autocast) and every later batch's teacher logits are a
gather ``table[batch.index, batch.view]``: the same numbers a live forward would give.

Storage: the table keeps the dtype the teacher's forward produces under the run's precision,
on the training device: float32 for fp32 runs (bit-for-bit what the live forward returns),
bf16 (fp16) for bf16 (fp16) runs, where the live forward's last layer already rounds to that
dtype, so nothing is lost and the table takes half the memory. Size: ``N x views x classes x
bytes``, e.g. CIFAR-10 crop+flip 50,000 x 162 x 10 x 4 B = 324 MB (fp32) or 162 MB (bf16);
CIFAR-100 3.2 GB / 1.6 GB; Fashion-MNIST 60,000 x 162 x 10 x 4 B = 389 MB.

The "auto" rule (:func:`estimate_teacher_cache`): filling the table costs ``N x views`` teacher
forwards; a live teacher costs ``epochs x N x live_forwards_per_batch`` (1 when the students of a
lockstep group share each batch's forward). Cache when the first is at most the second and the
table fits the memory budget. Ties go to the cache: the same number of forwards, but run in large
batches outside the training step. So with a shared forward, no augmentation caches from 1 epoch,
flip from 2, crop+flip (162 views) only from 162 epochs (a 200-epoch CIFAR recipe does cache).

The table holds logits only: a group with a member that reads the teacher's features (fitnet,
at) or its classifier's input (crd) trains with the live forward whatever the mode
(:mod:`kdspec.runtime.teacher_signal`).
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import torch
from torch import nn

from kdspec.plan import Precision, TeacherCacheMode
from kdspec.runtime.interfaces import (
    AutocastFactory,
    Batch,
    TeacherOutputs,
    TeacherSignal,
    TrainSource,
)
from kdspec.runtime.precision import autocast_for

#: Forward batch size when filling the table: large batches amortise per-call overhead; 1024
#: images of 3x32x32 through a CIFAR ResNet stay well under 1 GB of activations without grad.
DEFAULT_FILL_BATCH_SIZE = 1024
#: Share of free device memory (CUDA) or of physical RAM (CPU) the table may take by default:
#: the rest is for the models, optimiser states, activations and the dataset itself.
DEFAULT_MEMORY_FRACTION = 0.25
#: Cap on the CPU default budget: the CPU is shared with the dataset and the MLflow process.
CPU_BUDGET_CAP_BYTES = 4 * 1024**3

ERR_NO_VIEWS = (
    "teacher cache 'on' needs an augmentation with finitely many views (none, flip, crop, "
    "crop_flip); this training source has continuous augmentation (num_views is None)"
)
ERR_BATCH_WITHOUT_VIEW = "a cached teacher needs batches with view ids (Batch.view is None)"


@dataclass(frozen=True)
class TeacherCacheEstimate:
    """What caching would cost and save, in teacher forwards of one image, and the decision."""

    cache_forwards: int  # N x views, spent once before training
    live_forwards: int  # epochs x N x live_forwards_per_batch, spent during training
    table_bytes: int  # N x views x classes x bytes per logit
    memory_budget_bytes: int
    use_cache: bool
    reason: str  # one line for logs


def estimate_teacher_cache(
    *,
    num_samples: int,
    num_views: int | None,
    epochs: int,
    num_classes: int,
    live_forwards_per_batch: int = 1,
    bytes_per_logit: int = 4,
    memory_budget_bytes: int,
) -> TeacherCacheEstimate:
    """Cost model of the "auto" mode (see the module docstring for the rule)."""
    if num_views is None:
        return TeacherCacheEstimate(0, epochs * num_samples * live_forwards_per_batch, 0,
                                    memory_budget_bytes, False,
                                    "continuous augmentation: views cannot be enumerated")
    cache = num_samples * num_views
    live = epochs * num_samples * live_forwards_per_batch
    table = num_samples * num_views * num_classes * bytes_per_logit
    if table > memory_budget_bytes:
        return TeacherCacheEstimate(cache, live, table, memory_budget_bytes, False,
                                    f"table of {table / 1e6:.0f} MB exceeds the budget of "
                                    f"{memory_budget_bytes / 1e6:.0f} MB")
    if cache > live:
        return TeacherCacheEstimate(cache, live, table, memory_budget_bytes, False,
                                    f"{num_views} views x N forwards cost more than the "
                                    f"{epochs * live_forwards_per_batch} x N live ones")
    return TeacherCacheEstimate(cache, live, table, memory_budget_bytes, True,
                                f"{num_views} views x N forwards replace "
                                f"{epochs * live_forwards_per_batch} x N live ones; "
                                f"table {table / 1e6:.0f} MB")


def default_memory_budget(device: torch.device) -> int:
    """Bytes the table may take: a share of free GPU memory, or of RAM (capped) on the CPU.

    On CUDA, free memory includes the blocks PyTorch's allocator holds but no tensor uses
    (``memory_reserved - memory_allocated``): the driver counts them as taken, so an earlier
    group's freed activations would otherwise shrink every later group's budget."""
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        reusable = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
        return int((free + reusable) * DEFAULT_MEMORY_FRACTION)
    physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return min(int(physical * DEFAULT_MEMORY_FRACTION), CPU_BUDGET_CAP_BYTES)


@torch.no_grad()
def compute_teacher_logit_table(
    teacher: nn.Module,
    source: TrainSource,
    *,
    autocast: AutocastFactory = contextlib.nullcontext,
    batch_size: int = DEFAULT_FILL_BATCH_SIZE,
) -> torch.Tensor:
    """The teacher's logits for every (sample, view): ``[N, views, classes]``.

    Pairs are enumerated as flat ids ``i = index * views + view`` and rendered in chunks of
    ``batch_size``; the teacher runs in eval mode (restored afterwards) and the table keeps the
    dtype of its output, on the device ``render`` returns images on.
    """
    if source.num_views is None:
        raise ValueError(ERR_NO_VIEWS)
    views = source.num_views
    total = source.num_samples * views
    was_training = teacher.training
    teacher.eval()
    table: torch.Tensor | None = None
    try:
        for start in range(0, total, batch_size):
            flat = torch.arange(start, min(start + batch_size, total))
            images = source.render(flat // views, flat % views)
            with autocast():
                out = teacher(images)
            if table is None:
                table = torch.empty((total, out.shape[1]), dtype=out.dtype, device=out.device)
            table[start:start + out.shape[0]] = out
    finally:
        teacher.train(was_training)
    assert table is not None, "a training source has at least one sample"
    return table.view(source.num_samples, views, -1)


class CachedTeacher:
    """A :class:`~kdspec.runtime.interfaces.TeacherSignal` that looks logits up in a table."""

    mode = "on"

    def __init__(self, table: torch.Tensor):
        """``table``: ``[N, views, classes]`` from :func:`compute_teacher_logit_table`."""
        if table.dim() != 3:
            raise ValueError(f"expected a [N, views, classes] table, got shape {tuple(table.shape)}")
        self.table = table

    @classmethod
    def compute(
        cls,
        teacher: nn.Module,
        source: TrainSource,
        *,
        autocast: AutocastFactory = contextlib.nullcontext,
        batch_size: int = DEFAULT_FILL_BATCH_SIZE,
    ) -> CachedTeacher:
        """Fill the table with ``teacher`` over every (sample, view) of ``source``."""
        return cls(compute_teacher_logit_table(teacher, source, autocast=autocast,
                                               batch_size=batch_size))

    @property
    def nbytes(self) -> int:
        """Memory the table takes."""
        return self.table.numel() * self.table.element_size()

    def logits(self, batch: Batch) -> torch.Tensor:
        """``table[batch.index, batch.view]`` as float32 ``[B, classes]``."""
        if batch.view is None:
            raise ValueError(ERR_BATCH_WITHOUT_VIEW)
        index = batch.index.to(self.table.device)
        view = batch.view.to(self.table.device)
        return self.table[index, view].float()

    def outputs(self, batch: Batch) -> TeacherOutputs:
        """The logits alone: a table holds no features (a group whose members read some
        trains with the live teacher)."""
        return TeacherOutputs(self.logits(batch))


@dataclass(frozen=True)
class TeacherDemand:
    """What one group of distilled students asks of its teacher: logits of ``num_classes``
    classes on ``train``'s batches for ``epochs`` epochs (from where the group resumes), for
    ``group_size`` students that share one live forward per batch (``shared_forward``, lockstep)
    or each run their own, and the features they read besides."""

    train: TrainSource
    epochs: int
    num_classes: int
    group_size: int = 1
    shared_forward: bool = True
    #: The teacher's feature points and classifier whose input the members read (feature
    #: methods; "" none): only a live forward gives them, so such a group is never cached.
    points: tuple[str, ...] = ()
    classifier: str = ""
    #: Why the members read them, in words ("fitnet needs the teacher's features").
    feature_reason: str = ""


@dataclass(frozen=True)
class CachePolicy:
    """How the cache is chosen and filled: the study's ``teacher_cache`` mode, the precision of
    the teacher's forwards (the table's dtype), the memory it may take (None: the device's
    default budget) and the forward batch size that fills it."""

    mode: TeacherCacheMode
    precision: Precision = "fp32"
    memory_budget_bytes: int | None = None
    fill_batch_size: int = DEFAULT_FILL_BATCH_SIZE


@dataclass(frozen=True)
class CacheDecision:
    """Whether a group's teacher logits are cached, and why (the ``kdspec.teacher_cache_reason``
    tag of its runs)."""

    use_cache: bool
    reason: str


def decide_teacher_cache(demand: TeacherDemand, policy: CachePolicy, *,
                         device: torch.device) -> CacheDecision:
    """Mode "off": live; "on": cached; "auto": :func:`estimate_teacher_cache`, counting one
    live forward per batch when the group shares it or ``group_size`` forwards when each
    student runs its own."""
    if policy.mode != "auto":
        return CacheDecision(policy.mode == "on", f"teacher_cache = {policy.mode}")
    budget = (policy.memory_budget_bytes if policy.memory_budget_bytes is not None
              else default_memory_budget(device))
    estimate = estimate_teacher_cache(
        num_samples=demand.train.num_samples, num_views=demand.train.num_views,
        epochs=demand.epochs, num_classes=demand.num_classes,
        live_forwards_per_batch=1 if demand.shared_forward else demand.group_size,
        bytes_per_logit=4 if policy.precision == "fp32" else 2,
        memory_budget_bytes=budget,
    )
    return CacheDecision(estimate.use_cache, f"auto: {estimate.reason}")


def build_teacher_signal(teacher: nn.Module, demand: TeacherDemand, policy: CachePolicy, *,
                         live: TeacherSignal, device: torch.device,
                         autocast: AutocastFactory | None = None) -> TeacherSignal:
    """The teacher signal for one group of distilled students: ``live`` or a filled cache, as
    :func:`decide_teacher_cache` says ("on" with continuous augmentation: ValueError).
    ``autocast`` defaults to the policy's precision (pass ``accelerator.autocast`` to match the
    live teacher exactly).
    """
    if not decide_teacher_cache(demand, policy, device=device).use_cache:
        return live
    make_autocast = autocast if autocast is not None else (
        lambda: autocast_for(device, policy.precision))
    return CachedTeacher.compute(teacher, demand.train, autocast=make_autocast,
                                 batch_size=policy.fill_batch_size)
