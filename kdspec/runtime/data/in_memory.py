"""The in-memory fast path: a split held as one uint8 tensor on the device, augmented per batch.

Every dataset except ImageNet ends up here. ``InMemoryTrainSource.epoch`` shuffles and draws
each image's view with a ``torch.Generator`` seeded from ``(seed, epoch)`` alone, so batches
never depend on global RNG state and two runs of the same seed see identical batches.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from kdspec.runtime.data.augment import ViewAugmenter
from kdspec.runtime.interfaces import Batch, shard_batches

#: Seed of the permutation whose first n indices make a ``train_subset`` / ``test_subset``: a
#: fixed constant, so a subset is the same for every run, seed and machine.
SUBSET_SEED = 20_241_008


def derived_seed(*parts: int) -> int:
    """A 63-bit generator seed that depends only on ``parts`` (numpy SeedSequence mixing)."""
    state = np.random.SeedSequence([p & 0xFFFFFFFF for p in parts]).generate_state(2)
    return int((int(state[0]) << 31) ^ int(state[1])) & ((1 << 63) - 1)


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of one epoch's shuffle and augmentation draws."""
    return derived_seed(seed, epoch)


def subset_indices(num_samples: int, subset: int | None) -> np.ndarray:
    """Indices of a subset: the first ``subset`` of a ``SUBSET_SEED`` permutation, sorted so the
    kept samples stay in the split's own order; all indices when ``subset`` is None or too big."""
    if subset is None or subset >= num_samples:
        return np.arange(num_samples, dtype=np.int64)
    permutation = np.random.default_rng(SUBSET_SEED).permutation(num_samples)
    return np.sort(permutation[:subset]).astype(np.int64)


def _as_device_tensors(
    images: np.ndarray | torch.Tensor, labels: np.ndarray | torch.Tensor, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    image_tensor = torch.as_tensor(images)
    if image_tensor.dtype != torch.uint8 or image_tensor.dim() != 4:
        raise ValueError(f"images must be uint8 [N, C, H, W], got {image_tensor.dtype} "
                         f"{tuple(image_tensor.shape)}")
    label_tensor = torch.as_tensor(labels, dtype=torch.int64)
    if label_tensor.shape != (image_tensor.shape[0],):
        raise ValueError("one label per image expected")
    return image_tensor.contiguous().to(device), label_tensor.to(device)


class InMemoryTrainSource:
    """A training split as uint8 ``[N, C, H, W]`` + int64 ``[N]`` on the device (``TrainSource``)."""

    def __init__(
        self,
        images: np.ndarray | torch.Tensor,
        labels: np.ndarray | torch.Tensor,
        augmenter: ViewAugmenter,
        device: torch.device,
    ) -> None:
        self.images, self.labels = _as_device_tensors(images, labels, device)
        self.augmenter = augmenter
        self.device = device
        self.num_samples = int(self.images.shape[0])
        self.num_views: int | None = augmenter.num_views

    def epoch(self, *, seed: int, epoch: int, batch_size: int,
              share: tuple[int, int] = (0, 1)) -> Iterator[Batch]:
        """Batches of a seeded shuffle; each image gets a uniformly drawn view. The last,
        partial batch is kept. The shuffle and views are drawn whole in every process, so a
        shard's batches are exactly the unsharded epoch's batches of its numbers."""
        generator = torch.Generator().manual_seed(epoch_seed(seed, epoch))
        order = torch.randperm(self.num_samples, generator=generator)
        views = torch.randint(0, self.augmenter.num_views, (self.num_samples,),
                              generator=generator)
        order, views = order.to(self.device), views.to(self.device)
        for number in shard_batches(self.num_samples, batch_size, share):
            start = number * batch_size
            index = order[start:start + batch_size]
            view = views[start:start + batch_size]
            yield Batch(inputs=self.render(index, view), labels=self.labels[index],
                        index=index, view=view)

    def render(self, index: torch.Tensor, view: torch.Tensor) -> torch.Tensor:
        """Normalised float32 ``[B, C, H, W]`` of samples ``index`` seen through ``view``."""
        index = index.to(self.device)
        return self.augmenter.render(self.images[index], view.to(self.device))


class InMemoryEvalSource:
    """A test split in a fixed order, unaugmented (``EvalSource``)."""

    def __init__(
        self,
        images: np.ndarray | torch.Tensor,
        labels: np.ndarray | torch.Tensor,
        augmenter: ViewAugmenter,
        device: torch.device,
        attributes: dict[str, np.ndarray] | None = None,
    ) -> None:
        self.images, label_tensor = _as_device_tensors(images, labels, device)
        self._labels_on_device = label_tensor
        self.augmenter = augmenter
        self.device = device
        self.num_samples = int(self.images.shape[0])
        self.labels: np.ndarray = label_tensor.cpu().numpy().astype(np.int64)
        self.attributes: dict[str, np.ndarray] = {
            name: np.asarray(values, dtype=np.int64) for name, values in (attributes or {}).items()
        }
        for name, values in self.attributes.items():
            if values.shape != (self.num_samples,):
                raise ValueError(f"attribute {name}: {values.shape} for {self.num_samples} images")

    def batches(self, *, batch_size: int) -> Iterator[Batch]:
        """The test samples in index order, normalised, ``view`` None."""
        for start in range(0, self.num_samples, batch_size):
            stop = min(start + batch_size, self.num_samples)
            yield Batch(inputs=self.augmenter.normalize(self.images[start:stop]),
                        labels=self._labels_on_device[start:stop],
                        index=torch.arange(start, stop, device=self.device))
