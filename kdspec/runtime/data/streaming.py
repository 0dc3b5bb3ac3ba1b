"""The streaming path: per-sample torchvision transforms in a DataLoader (ImageNet).

Used where a dataset does not fit in memory. Batches are the same ``Batch`` objects as the
in-memory path, with ``view`` None (random resized crop has no finite set of views). Seeding:
the shuffle comes from a DataLoader generator seeded from ``(seed, epoch)``, and each sample's
augmentation from its own seed ``(seed, epoch, index)`` set inside ``__getitem__``, so batches
do not depend on global RNG state nor on the number of worker processes.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2

from kdspec.plan import AugmentPreset
from kdspec.runtime.data.augment import crop_padding
from kdspec.runtime.data.in_memory import derived_seed, epoch_seed
from kdspec.runtime.interfaces import Batch, shard_batches

#: ImageNet evaluation: resize the shorter side to 256/224 of the crop, then centre-crop.
EVAL_RESIZE_RATIO = 256 / 224
NOT_RENDERABLE = (
    "this training source streams images with continuous augmentation (random resized crop): "
    "it has no discrete views to render, so the teacher-logit cache cannot be used with it"
)


def train_transform(
    preset: AugmentPreset, image_size: int, mean: Sequence[float], std: Sequence[float]
) -> v2.Compose:
    """Per-sample torchvision transform of a preset, ending in float32 normalised ``[C, H, W]``."""
    steps: list[Callable[..., Any]] = [v2.ToImage()]
    if preset == "imagenet":
        steps.append(v2.RandomResizedCrop(image_size, antialias=True))
    if preset in ("crop", "crop_flip"):
        steps.append(v2.RandomCrop(image_size, padding=crop_padding(image_size)))
    if preset in ("imagenet", "flip", "crop_flip"):
        steps.append(v2.RandomHorizontalFlip())
    steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(mean), list(std))]
    return v2.Compose(steps)


def eval_transform(
    image_size: int, mean: Sequence[float], std: Sequence[float], *, resize: bool
) -> v2.Compose:
    """Test-time transform: optional resize + centre crop (ImageNet), then normalisation."""
    steps: list[Callable[..., Any]] = [v2.ToImage()]
    if resize:
        steps += [v2.Resize(round(image_size * EVAL_RESIZE_RATIO), antialias=True),
                  v2.CenterCrop(image_size)]
    steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(mean), list(std))]
    return v2.Compose(steps)


class SeededTransformDataset(Dataset[tuple[torch.Tensor, int, int]]):
    """Wraps a dataset of ``(image, label)``: returns ``(transform(image), label, index)`` with
    torch's RNG seeded from ``(seed, epoch, index)`` for that one sample."""

    def __init__(self, base: Dataset[Any], indices: np.ndarray, transform: Callable[..., Any],
                 key: tuple[int, int] | None) -> None:
        self.base = base
        self.indices = indices
        self.transform = transform
        self.key = key

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, position: int) -> tuple[torch.Tensor, int, int]:
        image, label = self.base[int(self.indices[position])]
        if self.key is None:
            return self.transform(image), int(label), position
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derived_seed(self.key[0], self.key[1], position))
            return self.transform(image), int(label), position


def seed_worker(worker_id: int) -> None:
    """DataLoader worker init: one thread per worker; numpy and ``random`` seeded from the
    worker's torch seed (itself drawn from the loader's seeded generator)."""
    torch.set_num_threads(1)
    worker_seed = torch.initial_seed() % 2**32
    np.random.seed(worker_seed)
    random.seed(worker_seed)


def _stream(dataset: SeededTransformDataset, *, batch_size: int, num_workers: int,
            device: torch.device, batches: list[list[int]] | None = None) -> Iterator[Batch]:
    """Batches of ``dataset`` through a DataLoader, moved to ``device``: the given ``batches``
    (lists of positions), else all samples in index order. The last partial batch is kept."""
    cuda = device.type == "cuda"
    loader: DataLoader[tuple[torch.Tensor, int, int]]
    if batches is None:
        loader = DataLoader(dataset, batch_size=batch_size, num_workers=num_workers,
                            worker_init_fn=seed_worker, pin_memory=cuda)
    else:
        loader = DataLoader(dataset, batch_sampler=batches, num_workers=num_workers,
                            worker_init_fn=seed_worker, pin_memory=cuda)
    for images, labels, index in loader:
        yield Batch(inputs=images.to(device, non_blocking=cuda),
                    labels=labels.to(device, dtype=torch.int64, non_blocking=cuda),
                    index=index.to(device, dtype=torch.int64, non_blocking=cuda))


class StreamingTrainSource:
    """``TrainSource`` over any ``(image, label)`` dataset with a per-sample transform."""

    num_views: int | None = None

    def __init__(self, base: Dataset[Any], indices: np.ndarray, transform: Callable[..., Any],
                 device: torch.device, *, num_workers: int = 0) -> None:
        self.base = base
        self.indices = indices
        self.transform = transform
        self.device = device
        self.num_workers = num_workers
        self.num_samples = len(indices)

    def epoch(self, *, seed: int, epoch: int, batch_size: int,
              share: tuple[int, int] = (0, 1)) -> Iterator[Batch]:
        """One shuffled epoch; the last partial batch is kept. The shuffle is drawn whole in
        every process; a shard loads and transforms only its own batches (for ImageNet, each
        of P processes decodes 1/P of the epoch)."""
        generator = torch.Generator().manual_seed(epoch_seed(seed, epoch))
        order = torch.randperm(len(self.indices), generator=generator).tolist()
        batches = [order[i * batch_size:(i + 1) * batch_size]
                   for i in shard_batches(len(self.indices), batch_size, share)]
        return _stream(
            SeededTransformDataset(self.base, self.indices, self.transform, (seed, epoch)),
            batch_size=batch_size, num_workers=self.num_workers, device=self.device,
            batches=batches,
        )

    def render(self, index: torch.Tensor, view: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError(NOT_RENDERABLE)


class StreamingEvalSource:
    """``EvalSource`` over any ``(image, label)`` dataset, in index order."""

    def __init__(self, base: Dataset[Any], indices: np.ndarray, labels: np.ndarray,
                 transform: Callable[..., Any], device: torch.device, *,
                 num_workers: int = 0) -> None:
        self.base = base
        self.indices = indices
        self.transform = transform
        self.device = device
        self.num_workers = num_workers
        self.num_samples = len(indices)
        self.labels = np.asarray(labels, dtype=np.int64)
        self.attributes: dict[str, np.ndarray] = {}

    def batches(self, *, batch_size: int) -> Iterator[Batch]:
        """The samples in index order, ``view`` None."""
        return _stream(SeededTransformDataset(self.base, self.indices, self.transform, None),
                       batch_size=batch_size, num_workers=self.num_workers, device=self.device)
