"""What every dataset reader returns: both splits as arrays, before subsetting.

Depends on numpy only, so a plugin's reader can build one without importing torch or
torchvision (:mod:`kdspec.plugin` re-exports it).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class ArraySplits:
    """Both splits of an in-memory dataset, before subsetting.

    Images uint8 ``[N, C, H, W]``; labels int64 ``[N]``; attributes int64 ``[N]`` per name.
    """

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    source: str  # where it was read from, for the one-line description
    test_attributes: dict[str, np.ndarray] = field(default_factory=dict)
    #: The reader's own per-channel (mean, std) in [0, 1], for data whose statistics are not
    #: known in advance (an imagefolder's); None: the dataset's published or default ones.
    normalization: tuple[tuple[float, ...], tuple[float, ...]] | None = None


__all__ = ["ArraySplits"]
