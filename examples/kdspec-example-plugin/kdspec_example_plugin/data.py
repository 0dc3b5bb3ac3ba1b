"""The example plugin's dataset reader. kdspec calls it as ``read(spec, cache_dir)`` with the
plan's dataset spec and expects an ``ArraySplits``: uint8 images ``[N, C, H, W]``, integer
labels ``[N]`` in ``0..len(class_names)-1``, and for fairness one integer per test image for
every attribute the spec may name as sensitive."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kdspec.plugin import ArraySplits
from kdspec_example_plugin import ORIENTATIONS, SIDE

#: The generator's fixed seed: the data is the same on every machine and in every run.
DATA_SEED = 20_261_201
#: Share of training images whose tint follows the class (orientations 0, 1 mostly red): the
#: bias a distilled student may inherit; the test split's tint is independent of the class.
TRAIN_TINT_CORRELATION = 0.8


def _stripes(rng: np.random.Generator, labels: np.ndarray, tints: np.ndarray) -> np.ndarray:
    ys, xs = np.mgrid[0:SIDE, 0:SIDE]
    coordinate = np.stack([ys, xs, ys + xs, ys - xs])  # one per orientation
    period = rng.integers(3, 6, size=len(labels))
    phase = rng.integers(0, 6, size=len(labels))
    wave = (coordinate[labels] + phase[:, None, None]) % period[:, None, None]
    stripes = (wave < period[:, None, None] / 2).astype(np.float32)
    noisy = np.clip(stripes * 0.8 + rng.normal(0.1, 0.25, stripes.shape), 0, 1)
    colour = np.where(tints[:, None] == 0, [1.0, 0.3, 0.4], [0.4, 0.3, 1.0])  # red or blue
    images = noisy[:, None] * colour[:, :, None, None]
    return np.round(images * 255).astype(np.uint8)


def read_stripes(spec, cache_dir: Path | None) -> ArraySplits:
    """Both splits, sized by the spec's ``generated_train`` / ``generated_test``."""
    rng = np.random.default_rng(DATA_SEED)
    n_train = spec.generated_train_size or 2_000
    n_test = spec.generated_test_size or 800
    classes = len(ORIENTATIONS)
    train_labels = rng.integers(0, classes, size=n_train)
    follows = rng.random(n_train) < TRAIN_TINT_CORRELATION
    train_tints = np.where(follows, (train_labels >= 2).astype(np.int64),
                           rng.integers(0, 2, size=n_train))
    test_labels = rng.integers(0, classes, size=n_test)
    test_tints = rng.integers(0, 2, size=n_test)
    return ArraySplits(
        train_images=_stripes(rng, train_labels, train_tints),
        train_labels=train_labels.astype(np.int64),
        test_images=_stripes(rng, test_labels, test_tints),
        test_labels=test_labels.astype(np.int64),
        source=f"kdspec-example-plugin generator (seed {DATA_SEED})",
        test_attributes={"tint": test_tints.astype(np.int64)},
    )
