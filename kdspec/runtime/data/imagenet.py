"""ImageNet (ILSVRC-2012) in the standard folder layout, streamed through a DataLoader.

``root/train/<wnid>/*.JPEG`` and ``root/val/<wnid>/*.JPEG`` (the validation images sorted into
class folders, as torchvision's and most training scripts expect) are read with
``torchvision.datasets.ImageFolder``. Training: random resized crop to ``image_size`` + flip;
test: resize to 256/224 of ``image_size`` + centre crop. Subsets use the same fixed permutation
as the in-memory datasets.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import torch
from torchvision import datasets as tv_datasets

from kdspec.errors import DataError
from kdspec.plan import DatasetSpec
from kdspec.runtime.data.augment import NORMALIZATION
from kdspec.runtime.data.in_memory import subset_indices
from kdspec.runtime.data.locations import data_root
from kdspec.runtime.data.streaming import (
    StreamingEvalSource,
    StreamingTrainSource,
    eval_transform,
    train_transform,
)
from kdspec.runtime.interfaces import LoadedDataset

#: Decoding JPEGs is the bottleneck: one worker per core, up to 8.
DEFAULT_WORKERS = min(8, os.cpu_count() or 1)


def image_folder(spec: DatasetSpec, folder: Path) -> tv_datasets.ImageFolder:
    """One split as an ImageFolder (PIL images, no transform), checked against the plan."""
    try:
        dataset = tv_datasets.ImageFolder(str(folder))
    except (FileNotFoundError, OSError) as error:
        raise DataError(f"imagenet: cannot read the class folders of {folder}: {error}") from error
    if len(dataset.classes) != spec.num_classes:
        raise DataError(f"imagenet: {folder} has {len(dataset.classes)} class folders but the "
                        f"plan expects {spec.num_classes} classes")
    return dataset


def load_imagenet(
    spec: DatasetSpec, *, device: torch.device, cache_dir: Path | None = None,
    num_workers: int = DEFAULT_WORKERS,
) -> LoadedDataset:
    """Both splits of an ImageFolder dataset as streaming sources."""
    root = data_root(spec, cache_dir)
    train = image_folder(spec, root / "train")
    test = image_folder(spec, root / "val")
    if train.classes != test.classes:
        raise DataError(f"imagenet: {root}/train and {root}/val have different class folders")
    mean, std = NORMALIZATION["imagenet"]
    train_ix = subset_indices(len(train), spec.train_subset)
    test_ix = subset_indices(len(test), spec.test_subset)
    test_labels = np.asarray(test.targets, dtype=np.int64)[test_ix]
    train_source = StreamingTrainSource(
        train, train_ix, train_transform(spec.augment, spec.image_size, mean, std), device,
        num_workers=num_workers)
    test_source = StreamingEvalSource(
        test, test_ix, test_labels, eval_transform(spec.image_size, mean, std, resize=True),
        device, num_workers=num_workers)
    description = (f"imagenet: {len(train_ix)} train / {len(test_ix)} val images at "
                   f"{spec.image_size} px, augment {spec.augment}, streamed from {root} "
                   f"({num_workers} workers)")
    # Decoding every image to hash it would cost an epoch: the digest is of the file lists
    # (relative paths and labels) of the samples used, which name the data exactly.
    listing = hashlib.sha256()
    for dataset, indices in ((train, train_ix), (test, test_ix)):
        for i in indices:
            path, label = dataset.samples[int(i)]
            listing.update(f"{Path(path).relative_to(root)}\t{label}\n".encode())
    return LoadedDataset(train=train_source, test=test_source, num_classes=spec.num_classes,
                         class_names=spec.class_names, channels=spec.channels,
                         image_size=spec.image_size, description=description,
                         digest=listing.hexdigest()[:16], source=str(root),
                         train_plain=StreamingEvalSource(
                             train, train_ix, np.asarray(train.targets, dtype=np.int64)[train_ix],
                             eval_transform(spec.image_size, mean, std, resize=True), device,
                             num_workers=num_workers))
