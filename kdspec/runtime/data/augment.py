"""Batch augmentation on uint8 tensors with discrete, addressable views.

A preset with finitely many outcomes per image is a set of *views* numbered ``0..num_views-1``.
For a crop with padding ``p`` and optional horizontal flip, view ``v`` decodes as

    flip = v % 2                  (only for crop_flip / flip)
    cell = v // 2 (or v)          (crop_flip / crop)
    dy, dx = divmod(cell, 2p + 1) (the crop's top-left corner in the zero-padded image)

so ``crop_flip`` has ``2 (2p + 1)^2`` views (162 at p = 4), ``crop`` ``(2p + 1)^2``, ``flip`` 2 and
``none`` 1. ``render_views`` turns (uint8 images, view ids) into normalised float images by index
arithmetic on whole batches: no per-sample Python loop, no PIL. The same (image, view) always
gives the same pixels, which is what a cache of teacher logits per view relies on. The result
equals torchvision's ``RandomCrop(size, padding=p)`` (zero fill) then ``RandomHorizontalFlip``
then ``ToTensor`` + ``Normalize`` at the same crop offset and flip.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from kdspec.catalogue.registry import datasets
from kdspec.plan import AugmentPreset

#: Per-channel mean and std of each dataset's training images in [0, 1] (the usual published
#: values; Trifeature and digits computed from their generators / sklearn's data).
NORMALIZATION: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "svhn": ((0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970)),
    "fashion_mnist": ((0.2860,), (0.3530,)),
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "celeba": ((0.5063, 0.4258, 0.3832), (0.3107, 0.2904, 0.2897)),
    "trifeature": ((0.5, 0.5, 0.5), (0.25, 0.25, 0.25)),
    "synthetic": ((0.5, 0.5, 0.5), (0.25, 0.25, 0.25)),
    "digits": ((0.3053,), (0.3759,)),
    "tiny_imagenet": ((0.480, 0.448, 0.398), (0.277, 0.269, 0.282)),
}
#: For a dataset that names none (a plugin's without ``mean``/``std``): pixels to about [-2, 2].
DEFAULT_NORMALIZATION = ((0.5,), (0.25,))


def normalization(dataset: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of a dataset: kdspec's own, a plugin's, or the default."""
    if dataset in NORMALIZATION:
        return NORMALIZATION[dataset]
    facts = datasets().get(dataset)
    if facts is not None and facts.facts.mean and facts.facts.std:
        return facts.facts.mean, facts.facts.std
    return DEFAULT_NORMALIZATION


def crop_padding(image_size: int) -> int:
    """Zero padding of the random crop: an eighth of the side, at least 1 (4 px at 28 and 32)."""
    return max(1, round(image_size / 8))


@dataclass(frozen=True)
class ViewAugmenter:
    """Renders views of uint8 images ``[B, C, H, W]`` as normalised float32 ``[B, C, H, W]``."""

    preset: AugmentPreset
    image_size: int
    mean: torch.Tensor  # float32 [1, C, 1, 1] on the data's device
    std: torch.Tensor  # float32 [1, C, 1, 1]
    #: int64 ``[num_views, H * W]``: for each view, the flat position in the zero-padded image
    #: that each output pixel reads (built in ``__post_init__``, on the data's device).
    view_pixels: torch.Tensor = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "view_pixels", self._pixel_table())

    @property
    def padding(self) -> int:
        return crop_padding(self.image_size) if self.preset in ("crop", "crop_flip") else 0

    @property
    def num_views(self) -> int:
        """Distinct outcomes per image: 1, 2, (2p+1)^2 or 2 (2p+1)^2."""
        cells = (2 * self.padding + 1) ** 2
        return {"none": 1, "flip": 2, "crop": cells, "crop_flip": 2 * cells}[self.preset]

    def decode(self, view: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """View ids ``[B]`` -> (dy, dx, flip), each int64 ``[B]``; dy, dx in ``[0, 2p]``."""
        flips = self.preset in ("flip", "crop_flip")
        flip = view % 2 if flips else torch.zeros_like(view)
        cell = view // 2 if flips else view
        side = 2 * self.padding + 1
        return cell // side, cell % side, flip

    def encode(self, dy: torch.Tensor, dx: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
        """The inverse of ``decode``."""
        cell = dy * (2 * self.padding + 1) + dx
        return cell * 2 + flip if self.preset in ("flip", "crop_flip") else cell

    def _pixel_table(self) -> torch.Tensor:
        """Output pixel ``(i, j)`` of view ``v`` reads padded pixel ``(dy + i, dx + j')`` with
        ``j' = j``, or ``W - 1 - j`` when the view flips."""
        size, device = self.image_size, self.mean.device
        dy, dx, flip = self.decode(torch.arange(self.num_views, device=device))
        rows = dy[:, None] + torch.arange(size, device=device)  # [V, H]
        cols = torch.arange(size, device=device).expand(self.num_views, size)
        cols = torch.where(flip[:, None].bool(), (size - 1) - cols, cols) + dx[:, None]  # [V, W]
        padded_width = size + 2 * self.padding
        return (rows[:, :, None] * padded_width + cols[:, None, :]).reshape(self.num_views, -1)

    def render(self, images: torch.Tensor, view: torch.Tensor) -> torch.Tensor:
        """uint8 ``[B, C, H, W]`` and view ids ``[B]`` -> normalised float32 ``[B, C, H, W]``.

        Few, large tensor ops (pad, one table lookup, one gather, normalise): cheap in kernel
        launches on a GPU and in thread synchronisation on a CPU.
        """
        if self.preset == "none":
            return self.normalize(images)
        b, c, h, w = images.shape
        p = self.padding
        padded = F.pad(images, (p, p, p, p)) if p else images
        flat = self.view_pixels[view.to(self.view_pixels.device)]  # [B, H * W]
        cropped = torch.gather(padded.reshape(b, c, -1), 2, flat[:, None, :].expand(b, c, h * w))
        return self.normalize(cropped.view(b, c, h, w))

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 -> float32 ``(x / 255 - mean) / std``."""
        return (images.float().div_(255.0) - self.mean) / self.std


def make_augmenter(
    dataset: str, preset: AugmentPreset, image_size: int, channels: int, device: torch.device,
    *, statistics: tuple[tuple[float, ...], tuple[float, ...]] | None = None,
) -> ViewAugmenter:
    """The augmenter for a dataset's normalisation (``statistics``, the reader's own mean and
    std, where it computed them); ``imagenet`` is not a view preset."""
    if preset == "imagenet":
        raise ValueError("the imagenet preset (random resized crop) has no discrete views")
    mean, std = statistics if statistics is not None else normalization(dataset)
    if len(mean) != channels:
        mean, std = (sum(mean) / len(mean),) * channels, (sum(std) / len(std),) * channels
    shape = (1, channels, 1, 1)
    return ViewAugmenter(
        preset=preset,
        image_size=image_size,
        mean=torch.tensor(mean, dtype=torch.float32, device=device).view(shape),
        std=torch.tensor(std, dtype=torch.float32, device=device).view(shape),
    )
