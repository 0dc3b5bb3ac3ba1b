"""Where a distilled group's teacher outputs come from: :class:`LiveTeacher` (one teacher forward
per batch, shared by every student of a lockstep group, whatever their methods) or the exact
logit cache of :mod:`kdspec.runtime.teacher_cache`, chosen by :func:`choose_teacher_signal`.

What the group reads decides first (:func:`group_reads`): members that read the teacher's
features (fitnet, at) or its classifier's input (crd) get them from the live forward, which then
reads the union of their feature points in the same pass as the logits; no table holds them, so
such a group trains live whatever ``runtime.teacher_cache`` says. A group of logit methods
follows the study's ``teacher_cache`` ("off", "on", or "auto": cache when it costs fewer
forwards). A group whose members never read the teacher while training (label smoothing) has no
teacher signal at all. Every run records the choice and why in its tags.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import torch

from kdspec.distillation_methods import reads_teacher_while_training
from kdspec.plan import Precision, Run, RuntimeSpec
from kdspec.runtime.interfaces import (
    AutocastFactory,
    Batch,
    LoadedDataset,
    TeacherOutputs,
    TeacherSignal,
)
from kdspec.runtime.method_state import NO_FEATURES, FeatureNeeds, teacher_needs
from kdspec.runtime.models.feature_points import forward_with_features
from kdspec.runtime.precision import model_macs, resolve_speed
from kdspec.runtime.teacher_cache import (
    CachedTeacher,
    CachePolicy,
    TeacherDemand,
    decide_teacher_cache,
)
from kdspec.tracking import schema

#: The ``kdspec.teacher_cache`` tag of a group that reads no teacher while training.
NO_TEACHER = "none"


class LiveTeacher:
    """Teacher outputs from a forward pass on each batch: eval mode (BatchNorm uses its running
    statistics, no dropout), no gradient, under the same autocast as the students' steps.

    ``needs``: the feature points (and classifier input) the group's members read, hooked in
    the same forward. The logits are float32 ``[B, num_classes]`` whatever the autocast dtype;
    features stay in the forward's dtype.
    """

    mode = "off"

    def __init__(self, teacher: torch.nn.Module, *,
                 autocast: AutocastFactory = contextlib.nullcontext,
                 needs: FeatureNeeds = NO_FEATURES):
        self.teacher = teacher.eval()
        for p in self.teacher.parameters():
            p.requires_grad_(False)
        self._autocast = autocast
        self.needs = needs

    def logits(self, batch: Batch) -> torch.Tensor:
        return self.outputs(batch).logits

    def outputs(self, batch: Batch) -> TeacherOutputs:
        with torch.no_grad(), self._autocast():
            if not self.needs.any:
                return TeacherOutputs(self.teacher(batch.inputs).float())
            found = forward_with_features(self.teacher, batch.inputs, self.needs.points,
                                          classifier=self.needs.classifier or None)
        return TeacherOutputs(found.logits.float(), found.features, found.embedding)


@dataclass(frozen=True)
class GroupReads:
    """What a lockstep group reads of its teacher while training: anything at all
    (``outputs``), which features besides the logits (``needs``), and why in words."""

    outputs: bool
    needs: FeatureNeeds
    why: str


def group_reads(runs: Sequence[Run]) -> GroupReads:
    """The union of what the group's members read of the teacher (see the module docstring)."""
    reading = [r for r in runs if r.method is not None and reads_teacher_while_training(r.method)]
    needs, readers = NO_FEATURES, []
    for run in reading:
        wanted = teacher_needs(run.method)
        if wanted.any and run.method is not None:
            needs = needs.union(wanted)
            readers.append(run.method.name)
    names = list(dict.fromkeys(readers))
    what = " and ".join(
        part for part, wanted in (("features", needs.points), ("classifier input",
                                                                  needs.classifier)) if wanted)
    why = (f"{' and '.join(names)} need{'s' if len(names) == 1 else ''} the teacher's {what}"
           if names else "")
    if not reading:
        why = "no member reads the teacher while training (label smoothing)"
    return GroupReads(bool(reading), needs, why)


@dataclass(frozen=True)
class TeacherChoice:
    """A group's teacher signal (None: it reads none) and why it is that one."""

    signal: TeacherSignal | None
    reason: str

    def tags(self) -> dict[str, str]:
        """``kdspec.teacher_cache`` (on / off / none) and ``kdspec.teacher_cache_reason``."""
        return {schema.TAG_TEACHER_CACHE: self.signal.mode if self.signal else NO_TEACHER,
                schema.TAG_TEACHER_CACHE_REASON: self.reason}


@dataclass(frozen=True)
class TeacherForwards:
    """How the teacher's forwards run: its precision and autocast, on which device."""

    precision: Precision
    device: torch.device
    autocast: AutocastFactory = contextlib.nullcontext


def choose_teacher_signal(teacher: torch.nn.Module, demand: TeacherDemand, *,
                          runtime: RuntimeSpec, forwards: TeacherForwards) -> TeacherChoice:
    """The teacher signal for one lockstep group (``demand``, see the module docstring).

    The teacher forward is always shared by the group (one per batch), which is what the cache's
    "auto" cost rule compares against. A continuous augmentation (no finite views) can only be
    served live.
    """
    live = LiveTeacher(teacher, autocast=forwards.autocast,
                       needs=FeatureNeeds(demand.points, demand.classifier))
    if demand.points or demand.classifier:
        return TeacherChoice(live, demand.feature_reason or "features are read live")
    if demand.train.num_views is None:
        return TeacherChoice(live, "continuous augmentation: views cannot be enumerated")
    if demand.epochs <= 0:
        return TeacherChoice(live, "no epoch left to train")
    policy = CachePolicy(mode=runtime.teacher_cache, precision=forwards.precision)
    decision = decide_teacher_cache(replace(demand, shared_forward=True), policy,
                                    device=forwards.device)
    if not decision.use_cache:
        return TeacherChoice(live, decision.reason)
    return TeacherChoice(CachedTeacher.compute(teacher, demand.train, autocast=forwards.autocast,
                                               batch_size=policy.fill_batch_size),
                         decision.reason)


def teacher_forwards(teacher: torch.nn.Module, *, runtime: RuntimeSpec, data: LoadedDataset,
                     device: torch.device,
                     autocast_of: Callable[[Precision], AutocastFactory]) -> TeacherForwards:
    """How a group's teacher runs its forwards: in its own ``auto`` precision (the teacher's
    size decides, not the students')."""
    precision = resolve_speed(
        runtime, device=device, training_images=0,
        macs=model_macs(teacher, in_channels=data.channels, image_size=data.image_size,
                        sequence_length=data.sequence_length)).precision
    return TeacherForwards(precision, device, autocast_of(precision))


@dataclass(frozen=True)
class GroupTeacher:
    """A group's teacher model and how its forwards run."""

    model: torch.nn.Module
    forwards: TeacherForwards


def group_teacher_choice(runs: Sequence[Run], teacher: GroupTeacher | None, demand: TeacherDemand,
                         *, runtime: RuntimeSpec) -> TeacherChoice:
    """The signal of a group of distilled ``runs`` (``demand`` without what they read, which
    :func:`group_reads` adds): none when no member reads the teacher while training."""
    reads = group_reads(runs)
    if not reads.outputs or teacher is None:
        return TeacherChoice(None, reads.why)
    return choose_teacher_signal(
        teacher.model, replace(demand, points=reads.needs.points,
                               classifier=reads.needs.classifier, feature_reason=reads.why),
        runtime=runtime, forwards=teacher.forwards)
