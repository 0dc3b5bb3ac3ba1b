"""The loss of one training step, by what the run is and how it learns (``run.method``).

With ``z_s`` the student's logits ``[B, C]``, ``y`` the labels ``[B]``, ``T`` the run's
temperature and ``CE`` the mean cross-entropy:

- teacher, non-distilled student: ``CE(z_s, y)``;
- ``kd``: Hinton's loss with the study's weights (:func:`kdspec.runtime.losses.distillation_loss`,
  unchanged: a kd run trains exactly as before methods existed);
- ``dkd``: ``ce_weight * CE + min((epoch + 1) / warmup, 1) * (alpha * TCKD + beta * NCKD) * T^2``
  (0-based epochs, :mod:`~kdspec.runtime.kd_methods.dkd`), on z-scored logits with
  ``logit_standardization``;
- ``dist``: ``ce_weight * CE + T^2 * (beta * L_inter + gamma * L_intra)``;
- ``fitnet``: ``ce_weight * CE + weight * MSE(r(f_s[guided]), f_t[hint])``;
- ``at``: ``ce_weight * CE + weight * sum over pairs of the attention maps' squared distance``;
- ``crd``: ``ce_weight * CE + weight * (L_NCE(s) + L_NCE(t))``, the scores of the run's memory
  bank for the batch's samples against ``nce_k`` negatives each, drawn from the other classes
  by a generator seeded by (seed, epoch, batch number);
- ``label_smoothing``: ``CE`` against ``(1 - eps) * onehot(y) + eps / C`` (no teacher).

A ``ce_weight`` of 0 leaves the CE term out (it is not computed). The method's own modules
(fitnet's regressor, crd's heads and memory) compute in float32: their inputs, the features of
a forward that may run in bf16 or fp16, are promoted first.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import torch

from kdspec.distillation_methods import (
    CRD,
    DIST,
    DKD,
    KD,
    AttentionTransfer,
    FitNet,
    LabelSmoothing,
)
from kdspec.plan import Run
from kdspec.runtime.interfaces import Batch, TeacherOutputs
from kdspec.runtime.kd_methods.attention_transfer import attention_transfer_loss
from kdspec.runtime.kd_methods.crd import crd_loss
from kdspec.runtime.kd_methods.crd_negatives import draw_contrast_indices
from kdspec.runtime.kd_methods.dist import dist_loss
from kdspec.runtime.kd_methods.dkd import dkd_loss, dkd_warmup_factor
from kdspec.runtime.kd_methods.fitnet import hint_loss
from kdspec.runtime.kd_methods.label_smoothing import label_smoothing_loss
from kdspec.runtime.losses import at_least_float32, distillation_loss, hard_label_loss
from kdspec.runtime.method_state import (
    MethodState,
    negatives_generator,
    student_needs,
)
from kdspec.runtime.models.feature_points import FeatureForward, forward_with_features


@dataclass(frozen=True)
class StepPlace:
    """Where a step is: its epoch (0-based) and the batch's number in that epoch."""

    epoch: int = 0
    number: int = 0


FIRST_STEP: Final = StepPlace()


def student_forward(model: torch.nn.Module, call: torch.nn.Module, inputs: torch.Tensor,
                    run: Run) -> FeatureForward:
    """The student's one forward of a step: ``call(inputs)`` (the model, or its compiled or
    data-parallel wrapper), with the features the run's method reads hooked on ``model``."""
    needs = student_needs(run.method)
    if not needs.any:
        return FeatureForward(logits=call(inputs), features={}, embedding=None)
    return forward_with_features(model, inputs, needs.points,
                                 classifier=needs.classifier or None, call=call)


@dataclass(frozen=True)
class StepInputs:
    """Everything one member's loss reads in one step."""

    run: Run
    student: FeatureForward
    teacher: TeacherOutputs
    batch: Batch
    state: MethodState | None
    place: StepPlace

    @property
    def temperature(self) -> float:
        assert self.run.temperature is not None, "a distilled run has a temperature"
        return self.run.temperature

    def kept(self) -> MethodState:
        if self.state is None:
            raise ValueError(f"distilled run {self.run.id} ({self.run.method}) has no method "
                             "state: prepare its method before training")
        return self.state


def step_loss(run: Run, student: FeatureForward, teacher: TeacherOutputs | None, batch: Batch,
              state: MethodState | None, place: StepPlace = FIRST_STEP) -> torch.Tensor:
    """The member's loss for this step (a scalar of at least float32, with gradient); see the
    module docstring. ``teacher`` is required for every distilled run but label smoothing."""
    if run.role != "distilled":
        return hard_label_loss(student.logits, batch.labels)
    method = run.method
    if isinstance(method, LabelSmoothing):
        epsilon = state.epsilon if state is not None else None
        if epsilon is None:
            raise ValueError(f"label-smoothing run {run.id} has no epsilon yet")
        return label_smoothing_loss(student.logits, batch.labels, epsilon=epsilon)
    if teacher is None or run.temperature is None:
        raise ValueError(f"distilled run {run.id} needs teacher logits")
    if isinstance(method, KD):
        if run.loss is None:
            raise ValueError(f"distilled run {run.id} needs teacher logits and its kd loss")
        return distillation_loss(student.logits, teacher.logits, batch.labels,
                                 temperature=run.temperature, loss=run.loss)
    assert method is not None
    inputs = StepInputs(run, student, teacher, batch, state, place)
    term = _TERMS[method.name](method, inputs)
    if method.ce_weight == 0.0:
        return term
    return method.ce_weight * hard_label_loss(student.logits, batch.labels) + term


def _dkd(method: DKD, x: StepInputs) -> torch.Tensor:
    return dkd_warmup_factor(x.place.epoch, method.warmup) * dkd_loss(
        x.student.logits, x.teacher.logits, x.batch.labels, temperature=x.temperature,
        alpha=method.alpha, beta=method.beta,
        logit_standardization=method.logit_standardization)


def _dist(method: DIST, x: StepInputs) -> torch.Tensor:
    return dist_loss(x.student.logits, x.teacher.logits, temperature=x.temperature,
                     beta=method.beta, gamma=method.gamma)


def _fitnet(method: FitNet, x: StepInputs) -> torch.Tensor:
    regressor = x.kept().regressor
    assert regressor is not None, "a fitnet run keeps a regressor"
    guess = regressor(at_least_float32(x.student.features[method.guided]))
    return method.weight * hint_loss(guess, x.teacher.features[method.hint])


def _attention(method: AttentionTransfer, x: StepInputs) -> torch.Tensor:
    return method.weight * attention_transfer_loss(
        [x.student.features[student] for _, student in method.pairs],
        [x.teacher.features[teacher] for teacher, _ in method.pairs], p=method.p)


def _crd(method: CRD, x: StepInputs) -> torch.Tensor:
    """The memory's scores of the heads' unit vectors against the drawn contrast indices;
    the memory moves the batch's rows afterwards (its state)."""
    state = x.kept()
    memory, classes = state.memory, state.classes
    assert memory is not None and classes is not None and state.student_head is not None \
        and state.teacher_head is not None, "a crd run keeps its heads, memory and classes"
    if x.student.embedding is None or x.teacher.embedding is None:
        raise ValueError(f"crd run {x.run.id} needs both classifiers' inputs")
    v_s = state.student_head(at_least_float32(x.student.embedding))
    v_t = state.teacher_head(at_least_float32(x.teacher.embedding.detach()))
    index = x.batch.index.to(memory.student_bank.device)
    contrast = draw_contrast_indices(
        x.batch.index.cpu(), classes, method.nce_k,
        generator=negatives_generator(x.run, x.place.epoch, x.place.number))
    student_scores, teacher_scores = memory(v_s, v_t, index, contrast.to(index.device))
    return method.weight * crd_loss(student_scores, teacher_scores, memory.n_data)


#: The distillation term of each method with a CE weight (kd and label smoothing apart).
_TERMS: Final[dict[str, Callable[[Any, StepInputs], torch.Tensor]]] = {
    "dkd": _dkd, "dist": _dist, "fitnet": _fitnet, "at": _attention, "crd": _crd,
}
