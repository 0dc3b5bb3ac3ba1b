"""The typed seams inside the runtime: what data sources hand the training loop, and how the loop
gets a teacher's logits. Data (``runtime/data``), training (``runtime/training``) and the speed
work (the teacher-logit cache) meet only here.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import torch

#: Enters the run's mixed-precision context (``accelerator.autocast`` or a no-op); every forward
#: of a run (student steps, teacher logits, evaluation, the logit cache) uses the same one.
AutocastFactory = Callable[[], contextlib.AbstractContextManager[object]]


@dataclass(frozen=True)
class Batch:
    """One batch, already on the training device.

    inputs: what the model takes: images float32 ``[B, C, H, W]``, augmented and normalised;
            for text, token ids int64 ``[B, L]`` (padded with the tokenizer's pad id).
    labels: int64 ``[B]``.
    index:  int64 ``[B]``, each sample's position in its split (0..num_samples-1).
    view:   int64 ``[B]``, the augmentation view each image was rendered with, in
            ``[0, num_views)``, when the augmentation has finitely many views; else None.
    """

    inputs: torch.Tensor
    labels: torch.Tensor
    index: torch.Tensor
    view: torch.Tensor | None = None


class TrainSource(Protocol):
    """The training split. Batches depend only on ``(seed, epoch)``: two runs with the same seed
    see identical batches in the same order (what lockstep training of one seed's distilled
    students relies on)."""

    num_samples: int
    #: Distinct augmentation views per image (e.g. 2 x 9 x 9 = 162 for 4-px crop + flip, 1 for
    #: none), or None when the augmentation is continuous (random resized crop).
    num_views: int | None

    def epoch(self, *, seed: int, epoch: int, batch_size: int,
              share: tuple[int, int] = (0, 1)) -> Iterator[Batch]:
        """The batches of one epoch: a seeded shuffle and seeded augmentation. ``share = (k, n)``
        (data-parallel training): only this process's batches, see :func:`shard_batches`;
        the others are never built."""
        ...

    def render(self, index: torch.Tensor, view: torch.Tensor) -> torch.Tensor:
        """Inputs (images ``[B, C, H, W]``, normalised, or token ids ``[B, L]``; on the device)
        of the given samples and views;
        ``render(b.index, b.view)`` equals ``b.inputs`` for any batch ``b`` of ``epoch``."""
        ...


class EvalSource(Protocol):
    """The test split, unaugmented, in a fixed order."""

    num_samples: int
    labels: np.ndarray  # int64 [N]
    #: Every per-sample attribute the dataset has (CelebA's 40, Trifeature's shape/texture/color),
    #: int64 [N] each; empty for plain classification datasets.
    attributes: dict[str, np.ndarray]

    def batches(self, *, batch_size: int) -> Iterator[Batch]:
        """The test samples in index order, ``view`` None."""
        ...


@dataclass(frozen=True)
class LoadedDataset:
    """A dataset ready for training: both splits plus what describes them."""

    train: TrainSource
    test: EvalSource
    num_classes: int
    class_names: tuple[str, ...]
    channels: int
    image_size: int
    description: str  # one line for logs: name, sizes, where it was read from
    #: Content digest of what the runs train and test on (the MLflow dataset input's digest),
    #: and where it was read from.
    digest: str = ""
    source: str = ""
    #: Held out from the training images (``dataset { validation = f }``); None without one.
    validation: EvalSource | None = None
    #: Text: the token ids per input (``max_length``) and the largest id the tokenizer gave
    #: (a model's vocabulary must cover it); None for images.
    sequence_length: int | None = None
    largest_token_id: int | None = None
    #: Text: the id posts are padded with (a model's attention mask must read the same).
    pad_token_id: int | None = None
    #: The training split itself, unaugmented and in index order (``Batch.index`` = position
    #: in ``train``), with its labels: what a method reads of the whole training set at setup
    #: (the label-smoothing control's matched epsilon, CRD's classes). None: not available.
    train_plain: EvalSource | None = None


@dataclass(frozen=True)
class TeacherOutputs:
    """What a teacher gives a lockstep group for one batch, from one forward without gradient.

    logits:    float32 ``[B, num_classes]``.
    features:  the outputs of the feature points the group's members read (fitnet's hint,
               attention transfer's stages), by module name; ``[B, C, H, W]`` each, in the
               dtype of the teacher's forward. Empty when no member reads any.
    embedding: the input of the teacher's classifier ``[B, d]`` (CRD), or None.
    """

    logits: torch.Tensor
    features: Mapping[str, torch.Tensor] = field(default_factory=dict)
    embedding: torch.Tensor | None = None


class TeacherSignal(Protocol):
    """Where a distilled student's teacher outputs come from: a live forward pass on every
    batch (logits and, for feature methods, features), or a lookup in logits precomputed once
    for every (sample, view)."""

    #: Recorded in the run's ``kdspec.teacher_cache`` tag: "off" (live forward) or "on".
    mode: str

    def logits(self, batch: Batch) -> torch.Tensor:
        """Teacher logits ``[B, num_classes]`` float32 for ``batch``, without gradient."""
        ...

    def outputs(self, batch: Batch) -> TeacherOutputs:
        """Everything the group reads of the teacher for ``batch``, from one forward."""
        ...


def shard_batches(num_samples: int, batch_size: int, share: tuple[int, int]) -> range:
    """The batch numbers of process ``k`` of ``n`` in one epoch of ``num_samples``: batches
    ``i`` with ``i % n == k`` among the first ``n * floor(batches / n)``, so every process takes
    the same number of steps and the shards are disjoint. Their union is the epoch minus at most
    ``n - 1`` trailing batches (all of it when the batch count divides by ``n``)."""
    index, count = share
    if count < 1 or not 0 <= index < count:
        raise ValueError(f"share must be (k, n) with 0 <= k < n, got {share}")
    batches = -(-num_samples // batch_size)
    return range(index, (batches // count) * count, count)
