"""Readers for the plain classification datasets: CIFAR-10/100, SVHN, Fashion-MNIST, digits.

Each reads a dataset once, through torchvision's own dataset classes (or scikit-learn for
digits), into uint8 ``[N, C, H, W]`` arrays that the in-memory path keeps on the device.
"""

from __future__ import annotations

import gzip
import os
import shutil
from pathlib import Path

import numpy as np

from kdspec.catalogue.dataset_arrays import ArraySplits
from kdspec.errors import DataError
from kdspec.plan import DatasetSpec
from kdspec.runtime.data.locations import (
    FASHION_MNIST_FILES,
    cache_root,
    data_root,
    locate_fashion_mnist,
)

#: Seed of the fixed 80/20 split of scikit-learn's 1797 digits (1437 train, 360 test).
DIGITS_SPLIT_SEED = 1_797
DIGITS_TEST_SIZE = 360


def torchvision_read_error(spec: DatasetSpec, root: Path, error: Exception) -> DataError:
    """The DataError for a torchvision reader that failed (or, with ``download``, whose
    download failed: no network, a moved mirror) on ``root``."""
    action = "read or download" if spec.download else "read"
    return DataError(f"{spec.name}: torchvision could not {action} {root}: {error}")


def read_cifar(spec: DatasetSpec, cache_dir: Path | None) -> ArraySplits:
    """CIFAR-10 or CIFAR-100 (fine labels) via torchvision's pickled-batch reader."""
    root = data_root(spec, cache_dir)
    from torchvision import datasets as tv_datasets  # lazily: ~1.8 s of start-up

    cls = tv_datasets.CIFAR10 if spec.name == "cifar10" else tv_datasets.CIFAR100
    try:
        train = cls(str(root), train=True, download=spec.download)
        test = cls(str(root), train=False, download=spec.download)
    except (RuntimeError, OSError, ValueError) as error:
        raise torchvision_read_error(spec, root, error) from error
    return ArraySplits(
        train_images=np.ascontiguousarray(train.data.transpose(0, 3, 1, 2)),
        train_labels=np.asarray(train.targets, dtype=np.int64),
        test_images=np.ascontiguousarray(test.data.transpose(0, 3, 1, 2)),
        test_labels=np.asarray(test.targets, dtype=np.int64),
        source=str(root),
    )


def read_svhn(spec: DatasetSpec, cache_dir: Path | None) -> ArraySplits:
    """SVHN cropped digits (train and test .mat files; label 10 is already mapped to 0)."""
    root = data_root(spec, cache_dir)
    from torchvision import datasets as tv_datasets

    try:
        train = tv_datasets.SVHN(str(root), split="train", download=spec.download)
        test = tv_datasets.SVHN(str(root), split="test", download=spec.download)
    except (RuntimeError, OSError, ValueError) as error:
        raise torchvision_read_error(spec, root, error) from error
    return ArraySplits(
        train_images=np.ascontiguousarray(train.data),
        train_labels=np.asarray(train.labels, dtype=np.int64),
        test_images=np.ascontiguousarray(test.data),
        test_labels=np.asarray(test.labels, dtype=np.int64),
        source=str(root),
    )


def unpack_fashion_mnist(gzip_folder: Path, cache_dir: Path | None) -> Path:
    """Gunzip the four IDX files into ``<cache>/fashion_mnist/FashionMNIST/raw`` once; returns
    the torchvision root. Files are written under a temporary name and renamed, so an
    interrupted unpack is never mistaken for a complete one."""
    root = cache_root(cache_dir) / "fashion_mnist"
    raw = root / "FashionMNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for name in FASHION_MNIST_FILES:
        target = raw / name
        if target.is_file():
            continue
        partial = raw / f"{name}.{os.getpid()}.partial"
        with gzip.open(gzip_folder / f"{name}.gz", "rb") as src, partial.open("wb") as dst:
            shutil.copyfileobj(src, dst)
        partial.replace(target)
    return root


#: The four arrays of an unpacked Fashion-MNIST, as torchvision read them (see below).
FASHION_ARRAYS = "arrays-v1.npz"


def _fashion_stamp(gzip_folder: Path) -> str:
    """Size and modification time of the Debian files the cached arrays were read from."""
    return ";".join(f"{name}:{(gzip_folder / f'{name}.gz').stat().st_size}:"
                    f"{(gzip_folder / f'{name}.gz').stat().st_mtime_ns}"
                    for name in FASHION_MNIST_FILES)


def _cached_fashion(root: Path, stamp: str, source: str) -> ArraySplits | None:
    path = root / FASHION_ARRAYS
    try:
        with np.load(path) as arrays:
            if str(arrays["stamp"]) != stamp:
                return None
            return ArraySplits(train_images=arrays["train_images"],
                               train_labels=arrays["train_labels"],
                               test_images=arrays["test_images"],
                               test_labels=arrays["test_labels"], source=source)
    except (OSError, KeyError, ValueError):
        return None


def _cache_fashion(root: Path, stamp: str, splits: ArraySplits) -> None:
    partial = root / f"{FASHION_ARRAYS}.{os.getpid()}.partial"
    try:
        with partial.open("wb") as handle:
            np.savez(handle, stamp=np.array(stamp), train_images=splits.train_images,
                     train_labels=splits.train_labels, test_images=splits.test_images,
                     test_labels=splits.test_labels)
        partial.replace(root / FASHION_ARRAYS)
    except OSError:  # a read-only cache only costs the next run its torchvision import
        partial.unlink(missing_ok=True)


def read_fashion_mnist(spec: DatasetSpec, cache_dir: Path | None) -> ArraySplits:
    """Fashion-MNIST via torchvision's IDX reader (from the Debian gz files when no root).

    From the Debian files, what torchvision read the first time is kept beside the unpacked
    files (``arrays-v1.npz``, stamped with the gz files' sizes and times) and read back by later
    runs: the same arrays, without torchvision's ~2 s import on the way to the first step."""
    files = locate_fashion_mnist(spec, cache_dir)
    stamp = ""
    if files.gzip_folder is not None:
        root = unpack_fashion_mnist(files.gzip_folder, cache_dir)
        source = f"{files.gzip_folder} (unpacked to {root})"
        stamp = _fashion_stamp(files.gzip_folder)
        cached = _cached_fashion(root, stamp, source)
        if cached is not None:
            return cached
    else:
        assert files.torchvision_root is not None
        root, source = files.torchvision_root, str(files.torchvision_root)
    from torchvision import datasets as tv_datasets

    try:
        train = tv_datasets.FashionMNIST(str(root), train=True, download=spec.download)
        test = tv_datasets.FashionMNIST(str(root), train=False, download=spec.download)
    except (RuntimeError, OSError, ValueError) as error:
        raise torchvision_read_error(spec, root, error) from error
    splits = ArraySplits(
        train_images=train.data.numpy()[:, None],
        train_labels=train.targets.numpy().astype(np.int64),
        test_images=test.data.numpy()[:, None],
        test_labels=test.targets.numpy().astype(np.int64),
        source=source,
    )
    if stamp:
        _cache_fashion(root, stamp, splits)
    return splits


def read_digits() -> ArraySplits:
    """scikit-learn's 8x8 digits, 0..16 scaled to uint8 0..255, split 1437/360 by a fixed
    ``DIGITS_SPLIT_SEED`` permutation (each split in the original order)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)[:, None]
    labels = digits.target.astype(np.int64)
    permutation = np.random.default_rng(DIGITS_SPLIT_SEED).permutation(len(labels))
    test_ix = np.sort(permutation[:DIGITS_TEST_SIZE])
    train_ix = np.sort(permutation[DIGITS_TEST_SIZE:])
    return ArraySplits(
        train_images=images[train_ix], train_labels=labels[train_ix],
        test_images=images[test_ix], test_labels=labels[test_ix],
        source="sklearn.datasets.load_digits",
    )
