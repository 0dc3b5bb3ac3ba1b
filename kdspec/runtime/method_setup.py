"""A lockstep group's methods made ready before its first step: each member's
:class:`~kdspec.runtime.method_state.MethodState` built and attached (its optimizer then covers
the method's learned modules), before a resumed group loads its checkpoints into them.

- fitnet and crd: one probe forward of the teacher (the union of what the group's members read
  of it) and one of each student read the shapes their regressor or heads are built for;
  crd's memory bank gets a row per training sample and the training labels by class;
- label smoothing: a fixed epsilon as it is; ``epsilon = "matched"`` is computed when the group
  starts (a resumed group's checkpoints hold it) from one pass of the teacher over the training
  images (eval mode, unaugmented, under the teacher's autocast): at each temperature ``T`` of
  the group's matched runs, ``m = (1 / N) * sum_i (1 - softmax(z_t(x_i) / T)_{y_i})`` summed in
  float64 in index order, then ``eps = min(1, m * C / (C - 1))``
  (:mod:`~kdspec.runtime.kd_methods.label_smoothing`). The pass is the same whoever shares the
  group, so the epsilon is too.

What each member's setup decided goes to its tags (and a matched epsilon to its params too).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

import torch

from kdspec.distillation_methods import (
    CRD,
    FitNet,
    LabelSmoothing,
    reads_teacher_at_setup,
)
from kdspec.plan import Run
from kdspec.runtime.interfaces import AutocastFactory, EvalSource, LoadedDataset
from kdspec.runtime.kd_methods.label_smoothing import matched_epsilon, off_target_mass
from kdspec.runtime.method_state import (
    NO_FEATURES,
    MethodState,
    crd_state,
    fitnet_state,
    probe_features,
    student_needs,
    teacher_needs,
)
from kdspec.runtime.models.feature_points import FeatureForward
from kdspec.runtime.training import Trainee
from kdspec.tracking import schema

#: Images per teacher forward of the matched-epsilon pass (fixed: the sum's order must not
#: depend on the group).
EPSILON_BATCH: Final = 512
MSG_NOT_DATA_PARALLEL = (
    "{method} trains its own modules ({what}) beside the student, which data-parallel "
    "processes would each update apart: train this study without --data-parallel"
)
MSG_NO_PLAIN_SPLIT = (
    "{method} reads the whole training split at setup, which this dataset's loader does not "
    "give unaugmented (LoadedDataset.train_plain)"
)


@dataclass(frozen=True)
class MethodSetup:
    """What a group's methods are made from: its data, its teacher (None: no member reads it
    at setup), the teacher's autocast, whether the group starts at its first epoch, and
    whether it trains data-parallel."""

    data: LoadedDataset
    teacher: torch.nn.Module | None
    teacher_autocast: AutocastFactory = contextlib.nullcontext
    fresh: bool = True
    data_parallel: bool = False


@dataclass(frozen=True)
class MethodNote:
    """What a member's setup decided, for its MLflow run."""

    tags: dict[str, str] = field(default_factory=dict)
    params: dict[str, object] = field(default_factory=dict)


def reads_teacher_before_training(runs: Sequence[Run], *, fresh: bool) -> bool:
    """Whether preparing these runs' methods needs the teacher model: a feature method's
    probe, or a matched epsilon to compute (a group that starts at its first epoch)."""
    return any(r.method is not None and (isinstance(r.method, FitNet | CRD)
                                         or (fresh and reads_teacher_at_setup(r.method)))
               for r in runs)


def prepare_methods(trainees: Sequence[Trainee], setup: MethodSetup) -> dict[str, MethodNote]:
    """Build and attach every member's method state (see the module docstring); returns what
    to note on each member's run, by run id. Raises ValueError for a method the group cannot
    train (a data-parallel fitnet or crd, nce_k beyond the training set)."""
    runs = [t.run for t in trainees]
    epsilons = _matched_epsilons(runs, setup) if setup.fresh else {}
    teacher_probe = _teacher_probe(runs, setup)
    notes: dict[str, MethodNote] = {}
    for trainee in trainees:
        method = trainee.run.method
        if isinstance(method, FitNet | CRD):
            if setup.data_parallel:
                raise ValueError(MSG_NOT_DATA_PARALLEL.format(
                    method=method.name, what="regressor" if isinstance(method, FitNet)
                    else "embedding heads and memory bank"))
            assert teacher_probe is not None
            trainee.attach(_feature_state(trainee, method, teacher_probe, setup.data))
        elif isinstance(method, LabelSmoothing):
            fixed = method.epsilon != "matched"
            epsilon = float(method.epsilon) if method.epsilon != "matched" else epsilons.get(
                trainee.run.temperature or 0.0)
            trainee.attach(MethodState(epsilon=epsilon))
            if epsilon is not None:  # None: resumed, its checkpoint holds it
                notes[trainee.run.id] = MethodNote(
                    {schema.TAG_LABEL_SMOOTHING_EPSILON: str(epsilon)},
                    {} if fixed else {schema.PARAM_LABEL_SMOOTHING_EPSILON: epsilon})
    return notes


def _feature_state(trainee: Trainee, method: FitNet | CRD, teacher: FeatureForward,
                   data: LoadedDataset) -> MethodState:
    student = probe_features(trainee.model, student_needs(method), in_channels=data.channels,
                             image_size=data.image_size)
    if isinstance(method, FitNet):
        return fitnet_state(trainee.run, method, student, teacher, student.logits.device)
    plain = _plain_split(data, method.name)
    return crd_state(trainee.run, method, student, teacher, plain.labels)


def _teacher_probe(runs: Sequence[Run], setup: MethodSetup) -> FeatureForward | None:
    """One probe forward of the teacher reading what the group's fitnet and crd members read
    of it (None: the group has none)."""
    needs = NO_FEATURES
    for run in runs:
        if isinstance(run.method, FitNet | CRD):
            needs = needs.union(teacher_needs(run.method))
    if not needs.any:
        return None
    if setup.teacher is None:
        raise ValueError("feature methods read the teacher's features: the group has no teacher")
    return probe_features(setup.teacher, needs, in_channels=setup.data.channels,
                          image_size=setup.data.image_size)


def _plain_split(data: LoadedDataset, method: str) -> EvalSource:
    if data.train_plain is None:
        raise ValueError(MSG_NO_PLAIN_SPLIT.format(method=method))
    return data.train_plain


def _matched_epsilons(runs: Sequence[Run], setup: MethodSetup) -> dict[float, float]:
    """The matched epsilon at each temperature of the group's matched label-smoothing runs,
    from one pass of the teacher over the training images (see the module docstring)."""
    temperatures = sorted({r.temperature for r in runs if r.temperature is not None
                           and r.method is not None and reads_teacher_at_setup(r.method)})
    if not temperatures:
        return {}
    if setup.teacher is None:
        raise ValueError("a matched label-smoothing epsilon needs the teacher")
    plain = _plain_split(setup.data, "label_smoothing with epsilon = matched")
    masses = teacher_soft_masses(setup.teacher, plain, temperatures,
                                 autocast=setup.teacher_autocast)
    return {t: matched_epsilon(masses[t], setup.data.num_classes) for t in temperatures}


@torch.no_grad()
def teacher_soft_masses(teacher: torch.nn.Module, plain: EvalSource,
                        temperatures: Sequence[float], *,
                        autocast: AutocastFactory = contextlib.nullcontext) -> dict[float, float]:
    """``m`` at each temperature: the mean over ``plain``'s samples of the probability the
    teacher's tempered softmax puts off the true class (eval mode, restored afterwards)."""
    was_training = teacher.training
    teacher.eval()
    sums: list[torch.Tensor] = []
    try:
        for batch in plain.batches(batch_size=EPSILON_BATCH):
            with autocast():
                logits = teacher(batch.inputs).float()
            sums.append(torch.stack([off_target_mass(logits, batch.labels, temperature=t)
                                     .double().sum() for t in temperatures]))
    finally:
        teacher.train(was_training)
    summed = torch.stack(sums).sum(dim=0).cpu().tolist()  # one host synchronisation
    return {t: total / plain.num_samples for t, total in zip(temperatures, summed, strict=True)}
