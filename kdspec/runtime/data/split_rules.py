"""The rules every dataset's splits follow, images and text alike: the seeded validation
hold-out and the content digest a run records as its dataset input."""

from __future__ import annotations

import hashlib

import numpy as np

#: Seed of the validation hold-out: the same images on every machine, for every run.
VALIDATION_SEED = 20_261_205


def split_validation(train_ix: np.ndarray, share: float | None
                     ) -> tuple[np.ndarray, np.ndarray | None]:
    """``(train, validation)`` indices: a seeded share of the training indices held out
    (``round(share x n)``, at least one), the rest kept in their order; (all, None) without a
    share."""
    if share is None:
        return train_ix, None
    count = max(1, round(share * len(train_ix)))
    held = np.random.default_rng(VALIDATION_SEED).permutation(len(train_ix))[:count]
    mask = np.zeros(len(train_ix), dtype=bool)
    mask[held] = True
    return train_ix[~mask], train_ix[np.sort(held)]


def array_digest(*arrays: np.ndarray) -> str:
    """sha256 (first 16 hex digits) of the arrays' shapes, dtypes and bytes: the same data
    gives the same digest on any machine."""
    digest = hashlib.sha256()
    for array in arrays:
        contiguous = np.ascontiguousarray(array)
        digest.update(f"{contiguous.shape}{contiguous.dtype}".encode())
        digest.update(contiguous.data)
    return digest.hexdigest()[:16]
