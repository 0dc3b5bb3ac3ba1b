"""Datasets for the runtime: ``load_dataset(spec, device=...)`` and ``check_dataset_available``.

Every image dataset except ImageNet is read once into uint8 tensors on the device and augmented
there in whole batches (``in_memory``); ImageNet streams through a DataLoader (``streaming``);
text is tokenised once and held as token ids on the device (``tokenized``). Where
files are looked for is in ``locations``; docs/datasets.md is the user's guide.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from kdspec.catalogue.image_folder_layout import read_attribute_table, scan_image_folder
from kdspec.catalogue.registry import datasets, import_callable
from kdspec.errors import DataError
from kdspec.plan import DatasetSpec
from kdspec.runtime.data.augment import make_augmenter
from kdspec.runtime.data.celeba import read_celeba
from kdspec.runtime.data.classification_readers import (
    ArraySplits,
    read_cifar,
    read_digits,
    read_fashion_mnist,
    read_svhn,
)
from kdspec.runtime.data.image_folder import read_image_folder
from kdspec.runtime.data.in_memory import (
    InMemoryEvalSource,
    InMemoryTrainSource,
    subset_indices,
)
from kdspec.runtime.data.locations import check_files, locate_fashion_mnist
from kdspec.runtime.data.split_rules import array_digest, split_validation
from kdspec.runtime.data.synthetic import read_synthetic
from kdspec.runtime.data.tiny_imagenet import read_tiny_imagenet
from kdspec.runtime.data.trifeature import read_trifeature
from kdspec.runtime.interfaces import LoadedDataset

__all__ = ["check_dataset_available", "load_dataset", "InMemoryTrainSource",
           "InMemoryEvalSource"]


def check_dataset_available(spec: DatasetSpec, *, cache_dir: Path | None = None) -> None:
    """Raise DataError if ``spec``'s files are absent; cheap (looks at paths and names, reads no
    image).

    Datasets that torchvision may download (``download = true``) and generated ones
    (Trifeature, synthetic, digits) always pass; an image folder's attribute CSV must give
    every test image its sensitive attributes.
    """
    if spec.name == "fashion_mnist":
        locate_fashion_mnist(spec, cache_dir)
        return
    check_files(spec, cache_dir)
    if spec.name == "imagefolder":
        check_attribute_rows(spec)


def check_attribute_rows(spec: DatasetSpec) -> None:
    """imagefolder: every test image has a row for each sensitive attribute in the CSV (the
    compiler checks the same; a plan JSON, or a CSV edited since, is checked here before any
    run starts). Lists file names, reads no pixel."""
    if spec.attributes_file is None or not spec.sensitive or spec.root is None:
        return
    layout = scan_image_folder(Path(spec.root))
    read_attribute_table(Path(spec.attributes_file)).check_rows(spec.sensitive,
                                                                layout.test_files)


def read_arrays(spec: DatasetSpec, cache_dir: Path | None) -> ArraySplits:
    """Both splits of an in-memory dataset as uint8 arrays, before subsetting."""
    if spec.name in ("cifar10", "cifar100"):
        return read_cifar(spec, cache_dir)
    if spec.name == "svhn":
        return read_svhn(spec, cache_dir)
    if spec.name == "fashion_mnist":
        return read_fashion_mnist(spec, cache_dir)
    if spec.name == "digits":
        return read_digits()
    if spec.name == "trifeature":
        return read_trifeature(spec, cache_dir)
    if spec.name == "synthetic":
        return read_synthetic(spec)
    if spec.name == "celeba":
        return read_celeba(spec, cache_dir)
    if spec.name == "tiny_imagenet":
        return read_tiny_imagenet(spec, cache_dir)
    if spec.name == "imagefolder":
        return read_image_folder(spec, cache_dir)
    entry = datasets().get(spec.name)
    if entry is None or not entry.read:
        raise DataError(f"{spec.name}: no reader (not a kdspec dataset, and no installed plugin "
                        "registers it; `kdspec list datasets`)")
    try:
        reader = import_callable(entry.read)
    except Exception as err:
        raise DataError(f"{spec.name}: the reader {entry.read} of {entry.source} cannot be "
                        f"imported ({type(err).__name__}: {err})") from err
    arrays = reader(spec, cache_dir)
    problem = _arrays_problem(arrays)
    if problem is not None:
        raise DataError(f"{spec.name}: the reader {entry.read} of {entry.source} returned "
                        f"{problem}")
    return arrays


def _arrays_problem(arrays: object) -> str | None:
    """What is wrong with a plugin reader's result, in its terms; None when nothing is (the
    shapes, classes and attributes are then checked against the plan like every dataset's)."""
    if not isinstance(arrays, ArraySplits):
        return f"a {type(arrays).__name__}, not an ArraySplits"
    for split in ("train", "test"):
        images = np.asarray(getattr(arrays, f"{split}_images"))
        labels = np.asarray(getattr(arrays, f"{split}_labels"))
        if images.dtype != np.uint8 or images.ndim != 4:
            return (f"{split}_images of dtype {images.dtype} and shape {images.shape}, not "
                    "uint8 [N, C, H, W]")
        if labels.ndim != 1 or len(labels) != len(images) or labels.dtype.kind not in "iu":
            return (f"{split}_labels of dtype {labels.dtype} and shape {labels.shape}, not "
                    f"{len(images)} integers")
        if len(labels) and int(labels.min()) < 0:
            return f"a negative {split} label ({int(labels.min())})"
    for name, values in arrays.test_attributes.items():
        if np.asarray(values).shape != (len(arrays.test_labels),):
            return (f"test attribute '{name}' of shape {np.asarray(values).shape}, not one "
                    f"value per test image ({len(arrays.test_labels)})")
    return None


def load_dataset(
    spec: DatasetSpec, *, device: torch.device, cache_dir: Path | None = None
) -> LoadedDataset:
    """Read (or generate) ``spec``'s dataset and return both splits ready for training.

    Files are checked before anything is read; a missing path raises DataError naming it and
    how to get the data. Subsets are the first n of a fixed permutation (``SUBSET_SEED``).
    """
    check_dataset_available(spec, cache_dir=cache_dir)
    if spec.augment == "imagenet" and spec.name != "imagenet":
        raise DataError(f"{spec.name}: augment 'imagenet' (random resized crop) needs the "
                        "streaming path, which only the imagenet dataset uses; choose none, "
                        "flip, crop or crop_flip")
    if spec.is_text:
        from kdspec.runtime.data.tokenized import load_text_dataset  # transformers: lazily

        return load_text_dataset(spec, device=device, cache_dir=cache_dir)
    if spec.name == "imagenet":
        from kdspec.runtime.data.imagenet import load_imagenet  # torchvision: lazily

        return load_imagenet(spec, device=device, cache_dir=cache_dir)
    arrays = read_arrays(spec, cache_dir)
    return assemble_in_memory(spec, arrays, device)


def _take(array: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """``array[indices]``, without a copy when ``indices`` is everything (CelebA is GBs)."""
    return array if len(indices) == len(array) else array[indices]


def assemble_in_memory(spec: DatasetSpec, arrays: ArraySplits, device: torch.device) -> LoadedDataset:
    """Check shapes, labels and attributes against the plan, subset, and move both splits
    onto ``device``."""
    channels, height, width = arrays.train_images.shape[1:]
    if (channels, height, width) != (spec.channels, spec.image_size, spec.image_size):
        raise DataError(
            f"{spec.name}: images are {channels}x{height}x{width} but the plan expects "
            f"{spec.channels}x{spec.image_size}x{spec.image_size}"
        )
    missing = [name for name in spec.sensitive if name not in arrays.test_attributes]
    if missing:
        known = ", ".join(arrays.test_attributes) or "none"
        raise DataError(f"{spec.name}: no sensitive attribute {', '.join(missing)} "
                        f"(attributes: {known})")
    largest = max(int(arrays.train_labels.max(initial=0)), int(arrays.test_labels.max(initial=0)))
    if largest >= spec.num_classes:
        raise DataError(f"{spec.name}: label {largest} found but the plan has "
                        f"{spec.num_classes} classes")
    train_ix = subset_indices(len(arrays.train_labels), spec.train_subset)
    test_ix = subset_indices(len(arrays.test_labels), spec.test_subset)
    train_ix, val_ix = split_validation(train_ix, spec.validation)
    augmenter = make_augmenter(spec.name, spec.augment, spec.image_size, spec.channels, device,
                               statistics=arrays.normalization)
    plain = make_augmenter(spec.name, "none", spec.image_size, spec.channels, device,
                           statistics=arrays.normalization)
    train = InMemoryTrainSource(_take(arrays.train_images, train_ix),
                                _take(arrays.train_labels, train_ix), augmenter, device)
    test = InMemoryEvalSource(
        _take(arrays.test_images, test_ix), _take(arrays.test_labels, test_ix), plain, device,
        attributes={k: _take(np.asarray(v), test_ix) for k, v in arrays.test_attributes.items()},
    )
    validation = None if val_ix is None else InMemoryEvalSource(
        _take(arrays.train_images, val_ix), _take(arrays.train_labels, val_ix), plain, device)
    held = f" / {validation.num_samples} validation" if validation is not None else ""
    description = (
        f"{spec.name}: {train.num_samples} train{held} / {test.num_samples} test images "
        f"{spec.channels}x{spec.image_size}x{spec.image_size}, augment {spec.augment} "
        f"({train.num_views} views), from {arrays.source}"
    )
    return LoadedDataset(
        train=train, test=test, num_classes=spec.num_classes, class_names=spec.class_names,
        channels=spec.channels, image_size=spec.image_size, description=description,
        digest=array_digest(_take(arrays.train_images, train_ix),
                            _take(arrays.train_labels, train_ix),
                            _take(arrays.test_images, test_ix),
                            _take(arrays.test_labels, test_ix)),
        source=arrays.source, validation=validation,
        # The same uint8 tensor as ``train``, read without augmentation (no copy).
        train_plain=InMemoryEvalSource(train.images, train.labels, plain, device),
    )
