"""Where the training loop gets a distilled group's teacher logits: :class:`LiveTeacher` (one
teacher forward per batch, shared by every student of a lockstep group) or the exact logit cache
of :mod:`kdspec.runtime.teacher_cache`, chosen by :func:`make_teacher_signal` from the study's
``runtime.teacher_cache`` setting ("off", "on", or "auto": cache when it costs fewer forwards).
"""

from __future__ import annotations

import contextlib
from dataclasses import replace

import torch

from kdspec.plan import Precision, RuntimeSpec
from kdspec.runtime.interfaces import AutocastFactory, Batch, TeacherSignal
from kdspec.runtime.teacher_cache import CachePolicy, TeacherDemand, build_teacher_signal


class LiveTeacher:
    """Teacher logits from a forward pass on each batch: eval mode (BatchNorm uses its running
    statistics, no dropout), no gradient, under the same autocast as the students' steps.

    The returned logits are float32 ``[B, num_classes]`` whatever the autocast dtype.
    """

    mode = "off"

    def __init__(self, teacher: torch.nn.Module, *, autocast: AutocastFactory = contextlib.nullcontext):
        self.teacher = teacher.eval()
        for p in self.teacher.parameters():
            p.requires_grad_(False)
        self._autocast = autocast

    def logits(self, batch: Batch) -> torch.Tensor:
        with torch.no_grad(), self._autocast():
            return self.teacher(batch.inputs).float()


def make_teacher_signal(teacher: torch.nn.Module, demand: TeacherDemand, *,
                        runtime: RuntimeSpec, precision: Precision, device: torch.device,
                        autocast: AutocastFactory = contextlib.nullcontext) -> TeacherSignal:
    """The teacher signal for one lockstep group (``demand``): the study's ``teacher_cache``
    mode decides between the live teacher and the cache.

    The teacher forward is always shared by the group (one per batch), which is what the cache's
    "auto" cost rule compares against. A continuous augmentation (no finite views) can only be
    served live.
    """
    live = LiveTeacher(teacher, autocast=autocast)
    if demand.train.num_views is None or demand.epochs <= 0:
        return live
    return build_teacher_signal(
        teacher, replace(demand, shared_forward=True),
        CachePolicy(mode=runtime.teacher_cache, precision=precision),
        live=live, device=device, autocast=autocast)
