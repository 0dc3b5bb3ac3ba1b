"""What a distilled run's method reads of the two models, and what it keeps besides its student.

What a method reads (:class:`FeatureNeeds`, one per model): the feature points whose outputs
its loss compares (fitnet's hint and guided layers, attention transfer's stage pairs) and the
classifier whose *input* it embeds (CRD). The student's come from its own forward of each step,
the teacher's from the group's one teacher forward per batch
(:class:`~kdspec.runtime.teacher_signal.LiveTeacher`), which reads the union of what the
group's members need.

What a method keeps (:class:`MethodState`), built once per run before its first step:

- fitnet: the :class:`~kdspec.runtime.kd_methods.fitnet.HintRegressor` ``r`` from the guided
  feature's ``(C_s, H_s, W_s)`` to the hint's ``(C_t, H_t, W_t)`` (shapes read from one probe
  forward of each model);
- crd: the two :class:`~kdspec.runtime.kd_methods.crd.EmbeddingHead` s (``d_s -> D``,
  ``d_t -> D``), the :class:`~kdspec.runtime.kd_methods.crd.ContrastMemory` of the ``N``
  training samples, and the training labels by class (where negatives are drawn from);
- label_smoothing: the epsilon it trains with (fixed, or matched to the teacher at setup).

The learned modules (regressor, heads) train with the student, in its optimizer; they and the
memory bank's buffers are part of ``last.pt`` (:meth:`MethodState.checkpoint`), never of
``final.pt``. Their initial values are drawn from generators seeded by the run's seed alone,
so a run's result does not depend on its lockstep group.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import torch
from torch import nn

from kdspec.distillation_methods import CRD, AttentionTransfer, FitNet, TrainingMethod
from kdspec.plan import Run
from kdspec.runtime.data.in_memory import derived_seed
from kdspec.runtime.kd_methods.crd import ContrastMemory, EmbeddingHead
from kdspec.runtime.kd_methods.crd_negatives import ClassIndex, class_index
from kdspec.runtime.kd_methods.fitnet import HintRegressor
from kdspec.runtime.models.feature_points import FeatureForward, forward_with_features

#: Streams of a run's own random numbers, mixed with its seed (``derived_seed``): each draw of
#: a method is independent of the model's initialisation and of the other draws.
REGRESSOR_STREAM: Final = 0x46495400  # "FIT"
HEADS_STREAM: Final = 0x43524448  # "CRDH"
MEMORY_STREAM: Final = 0x4352444D  # "CRDM"
NEGATIVES_STREAM: Final = 0x4352444E  # "CRDN"
#: Samples of the probe forward that reads the feature shapes (zeros: only shapes matter).
PROBE_BATCH: Final = 2


@dataclass(frozen=True)
class FeatureNeeds:
    """What a method reads of one model besides its logits: the outputs of ``points`` (module
    names, in the order the method pairs them) and the input of ``classifier`` ("": none)."""

    points: tuple[str, ...] = ()
    classifier: str = ""

    @property
    def any(self) -> bool:
        return bool(self.points or self.classifier)

    def union(self, other: FeatureNeeds) -> FeatureNeeds:
        """Both needs: the points of ``self`` then those of ``other`` not already there."""
        if self.classifier and other.classifier and self.classifier != other.classifier:
            raise ValueError(f"one model read at two classifiers: {self.classifier}, "
                             f"{other.classifier}")
        extra = tuple(p for p in dict.fromkeys(other.points) if p not in self.points)
        return FeatureNeeds(self.points + extra, self.classifier or other.classifier)


NO_FEATURES: Final = FeatureNeeds()


def student_needs(method: TrainingMethod | None) -> FeatureNeeds:
    """What ``method`` reads of the student's forward (None: a run that is not distilled)."""
    if isinstance(method, FitNet):
        return FeatureNeeds((method.guided,))
    if isinstance(method, AttentionTransfer):
        return FeatureNeeds(tuple(student for _, student in method.pairs))
    if isinstance(method, CRD):
        return FeatureNeeds(classifier=method.student_classifier)
    return NO_FEATURES


def teacher_needs(method: TrainingMethod | None) -> FeatureNeeds:
    """What ``method`` reads of the teacher's forward besides its logits."""
    if isinstance(method, FitNet):
        return FeatureNeeds((method.hint,))
    if isinstance(method, AttentionTransfer):
        return FeatureNeeds(tuple(teacher for teacher, _ in method.pairs))
    if isinstance(method, CRD):
        return FeatureNeeds(classifier=method.teacher_classifier)
    return NO_FEATURES


@dataclass(eq=False)
class MethodState:
    """What a run's method keeps besides the student (see the module docstring); a field is
    None where the method has no such thing."""

    regressor: HintRegressor | None = None
    student_head: EmbeddingHead | None = None
    teacher_head: EmbeddingHead | None = None
    memory: ContrastMemory | None = None
    classes: ClassIndex | None = None
    epsilon: float | None = None

    def learned(self) -> nn.ModuleDict:
        """The modules with parameters or buffers, by name (an empty dict for none)."""
        named = {"regressor": self.regressor, "student_head": self.student_head,
                 "teacher_head": self.teacher_head, "memory": self.memory}
        return nn.ModuleDict({name: m for name, m in named.items() if m is not None})

    def checkpoint(self) -> dict[str, Any]:
        """What ``last.pt`` keeps of it: the modules' state and the epsilon."""
        return {"modules": self.learned().state_dict(), "epsilon": self.epsilon}

    def restore(self, state: dict[str, Any]) -> None:
        """Load :meth:`checkpoint` of the same run (every tensor by name, or an error)."""
        self.learned().load_state_dict(state["modules"])
        self.epsilon = None if state["epsilon"] is None else float(state["epsilon"])


@contextmanager
def seeded(seed: int, stream: int) -> Iterator[None]:
    """Within the block the global CPU generator is seeded by ``(seed, stream)`` alone; its
    state is restored afterwards (what else the process drew changes nothing)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derived_seed(seed, stream))
        yield


@torch.no_grad()
def probe_features(model: nn.Module, needs: FeatureNeeds, *, in_channels: int,
                   image_size: int) -> FeatureForward:
    """One eval-mode forward of zero images ``[2, C, H, W]`` reading ``needs``: the shapes of
    its features and embedding. No gradient, running statistics and mode left as they were."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        return forward_with_features(
            model, torch.zeros(PROBE_BATCH, in_channels, image_size, image_size, device=device),
            needs.points, classifier=needs.classifier or None)
    finally:
        model.train(was_training)


def _sample_shape(tensor: torch.Tensor) -> tuple[int, int, int]:
    if tensor.dim() != 4:
        raise ValueError(f"fitnet reads [B, C, H, W] feature maps; found {tuple(tensor.shape)}")
    _, channels, height, width = tensor.shape
    return int(channels), int(height), int(width)


def fitnet_state(run: Run, method: FitNet, student: FeatureForward, teacher: FeatureForward,
                 device: torch.device) -> MethodState:
    """The regressor from the student's guided feature to the teacher's hint (shapes from the
    probes ``student`` and ``teacher``), initialised from the run's seed."""
    with seeded(run.seed, REGRESSOR_STREAM):
        regressor = HintRegressor(_sample_shape(student.features[method.guided]),
                                  _sample_shape(teacher.features[method.hint]))
    return MethodState(regressor=regressor.to(device))


def crd_state(run: Run, method: CRD, student: FeatureForward, teacher: FeatureForward,
              train_labels: np.ndarray) -> MethodState:
    """The two embedding heads (input sizes from the probes' embeddings), the memory bank of
    the ``N = len(train_labels)`` training samples and their classes; initialised from the
    run's seed, on the device of the student's probe."""
    assert student.embedding is not None and teacher.embedding is not None
    device = student.logits.device
    with seeded(run.seed, HEADS_STREAM):
        student_head = EmbeddingHead(student.embedding.flatten(1).shape[1], method.feat_dim)
        teacher_head = EmbeddingHead(teacher.embedding.flatten(1).shape[1], method.feat_dim)
    memory = ContrastMemory(
        method.feat_dim, len(train_labels), nce_k=method.nce_k, nce_t=method.nce_t,
        nce_m=method.nce_m,
        generator=torch.Generator().manual_seed(derived_seed(run.seed, MEMORY_STREAM)))
    return MethodState(student_head=student_head.to(device), teacher_head=teacher_head.to(device),
                       memory=memory.to(device),
                       classes=class_index(torch.as_tensor(train_labels, dtype=torch.int64)))


def negatives_generator(run: Run, epoch: int, number: int) -> torch.Generator:
    """The generator of CRD's contrast indices for batch ``number`` of ``epoch``: a function of
    the run's seed and the step alone (lockstep = solo, resume = straight through)."""
    return torch.Generator().manual_seed(derived_seed(run.seed, epoch, number, NEGATIVES_STREAM))
