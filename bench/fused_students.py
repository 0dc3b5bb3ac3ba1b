"""K students of one architecture trained as one fused model (``torch.func`` stacking + vmap).

Kept in bench/, not in the runtime: ``kdspec run`` does not use it (it loses on a CPU, below,
and has not been measured on a GPU). ``bench/bench_fusion.py`` measures it and
``tests/bench/test_fused_students.py`` checks it against K separate models.

The distilled students of one seed (one per temperature) see identical batches in lockstep, so
their K forward and backward passes can run as one: the K models' parameters and buffers are
stacked along a new leading dimension (``torch.func.stack_module_state``), one stateless copy of
the architecture is called with ``functional_call`` under ``vmap`` over that dimension, and one
optimiser updates the stacked parameters. Every student keeps its own weights, BatchNorm running
statistics and temperature; the result equals K separately trained models up to float rounding
(the vmapped convolutions fold K into the channel dimension and add in another order).

Where it pays: on a GPU, where small models are launch-bound, one fused step replaces K launches
of every kernel. On a CPU it loses (five ResNet-20 steps fused with ``vmap`` ran at ~285 img/s
against ~790-990 in sequence on a 2-core CPU; ``bench/bench_fusion.py`` measures it here), so
the runtime keeps K separate steps over the shared batch.

Why the sum of the K losses: the students share no parameter, so ``d(sum_k L_k)/d theta_k =
dL_k/d theta_k`` and one backward gives every student exactly its own gradient; element-wise
optimisers (SGD with momentum and weight decay, Adam, AdamW) then update each slice as the
student's own optimiser would.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from kdspec.plan import KDLoss
from kdspec.runtime.losses import distillation_loss

ERR_NO_STUDENTS = "fusing needs at least one student"
ERR_MIXED_ARCHS = "fused students must share one architecture (same class and parameter shapes)"


class FusedStudents:
    """K models of one architecture as stacked tensors; calling it gives ``[K, B, classes]``."""

    def __init__(self, models: Sequence[nn.Module]):
        if not models:
            raise ValueError(ERR_NO_STUDENTS)
        shapes = [{k: v.shape for k, v in m.state_dict().items()} for m in models]
        if any(type(m) is not type(models[0]) for m in models) or any(
                s != shapes[0] for s in shapes):
            raise ValueError(ERR_MIXED_ARCHS)
        self.num_students = len(models)
        # A stateless skeleton: functional_call substitutes every parameter and buffer.
        self._skeleton = copy.deepcopy(models[0]).to("meta")
        params, buffers = stack_module_state(list(models))
        self.params: dict[str, torch.Tensor] = params
        self.buffers: dict[str, torch.Tensor] = buffers
        self._skeleton.train(models[0].training)

    @property
    def training(self) -> bool:
        return self._skeleton.training

    def train(self, mode: bool = True) -> FusedStudents:
        """Train mode (BatchNorm uses and updates batch statistics) or eval mode."""
        self._skeleton.train(mode)
        return self

    def eval(self) -> FusedStudents:
        return self.train(False)

    def parameters(self) -> list[torch.Tensor]:
        """The stacked parameters ``[K, ...]``, leaf tensors for one optimiser."""
        return list(self.params.values())

    def _one_student(self, params: dict[str, torch.Tensor], buffers: dict[str, torch.Tensor],
                     images: torch.Tensor) -> torch.Tensor:
        return functional_call(self._skeleton, (params, buffers), (images,))

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """Logits ``[K, B, classes]`` of the K students on the same images ``[B, C, H, W]``.

        In train mode the BatchNorm running statistics of each student are updated in place in
        ``self.buffers``, as K separate forwards would update theirs.
        """
        fused = vmap(self._one_student, in_dims=(0, 0, None), randomness="different")
        return fused(self.params, self.buffers, images)

    def write_to(self, models: Sequence[nn.Module]) -> None:
        """Copy student k's weights and buffers into ``models[k]`` (for evaluation, checkpoints)."""
        if len(models) != self.num_students:
            raise ValueError(f"{len(models)} models for {self.num_students} fused students")
        with torch.no_grad():
            for k, model in enumerate(models):
                state = {name: t[k] for name, t in {**self.params, **self.buffers}.items()}
                model.load_state_dict(state)


def fused_distillation_losses(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    *,
    temperatures: Sequence[float],
    loss: KDLoss,
) -> torch.Tensor:
    """Each student's Hinton KD loss at its own temperature.

    student_logits: ``[K, B, C]`` from :class:`FusedStudents`.
    teacher_logits: ``[B, C]``, shared by the K students.
    labels: int64 ``[B]``.
    temperatures: K values, ``temperatures[k]`` for student k.
    Returns float32 ``[K]``: ``L_k = hard * CE(z_k, y) + soft * T_k^2 * KL(p_t^{T_k} || p_k^{T_k})``
    (``runtime.losses.distillation_loss`` per student, so the fused and the separate paths share
    one definition).
    """
    if student_logits.shape[0] != len(temperatures):
        raise ValueError(f"{student_logits.shape[0]} students for {len(temperatures)} temperatures")
    return torch.stack([
        distillation_loss(student_logits[k], teacher_logits, labels, temperature=t, loss=loss)
        for k, t in enumerate(temperatures)
    ])


def fused_distillation_step(
    students: FusedStudents,
    optimizer: torch.optim.Optimizer,
    images: torch.Tensor,
    labels: torch.Tensor,
    teacher_logits: torch.Tensor,
    *,
    temperatures: Sequence[float],
    loss: KDLoss,
) -> torch.Tensor:
    """One optimiser step of all K students on one shared batch; returns the detached ``[K]``
    losses (no host synchronisation: the caller accumulates them on the device)."""
    optimizer.zero_grad(set_to_none=True)
    losses = fused_distillation_losses(students(images), teacher_logits, labels,
                                       temperatures=temperatures, loss=loss)
    losses.sum().backward()
    optimizer.step()
    return losses.detach()
