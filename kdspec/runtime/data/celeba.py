"""CelebA through torchvision's ``CelebA`` (attributes), held in memory at the spec's size.

Each aligned 178x218 photo is centre-cropped to a square and resized (PIL bilinear with
antialiasing) to ``image_size`` once; the split's images are then one uint8 array, cached as
``<cache>/celeba/<key>.npy`` so later runs skip the JPEG decoding. Memory: 3 x S^2 bytes per
image, ~2.5 GB for all 202,599 images at 64 px (train split 162,770: ~2.0 GB; test 19,962: 245 MB).
The first read decodes every JPEG of both splits (~183k) on up to 8 threads.

The label is the spec's ``target`` attribute (0/1); every one of the 40 attributes goes into the
split's attributes. ``balance = "undersample"`` keeps, in the training split only, a random
subset of the larger target class as big as the smaller one, drawn with ``BALANCE_SEED`` (the
same subset for every run and seed); the test split keeps its natural balance.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from kdspec.catalogue.dataset_arrays import ArraySplits
from kdspec.catalogue.facts import CELEBA_ATTRIBUTES
from kdspec.errors import DataError
from kdspec.plan import DatasetSpec, stable_hash
from kdspec.runtime.data.classification_readers import torchvision_read_error
from kdspec.runtime.data.locations import cache_root, data_root

if TYPE_CHECKING:
    from torchvision import datasets as tv_datasets

#: Seed of the undersampling of the larger target class (train split only).
BALANCE_SEED = 2_015
DECODE_THREADS = min(8, os.cpu_count() or 1)


def square_resize(path: Path, image_size: int) -> np.ndarray:
    """One photo as uint8 ``[3, S, S]``: the centred square of its shorter side, resized."""
    with Image.open(path) as photo:
        rgb = photo.convert("RGB")
    width, height = rgb.size
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    square = rgb.crop((left, top, left + side, top + side))
    resized = square.resize((image_size, image_size), Image.Resampling.BILINEAR)
    return np.asarray(resized, dtype=np.uint8).transpose(2, 0, 1)


def read_split_images(
    dataset: tv_datasets.CelebA, image_size: int, cache_dir: Path | None
) -> np.ndarray:
    """All images of a torchvision CelebA split as uint8 ``[N, 3, S, S]``, through the cache."""
    folder = Path(dataset.root) / dataset.base_folder / "img_align_celeba"
    names = list(dataset.filename)
    key = stable_hash({"root": str(folder.resolve()), "size": image_size, "files": names})
    cached = cache_root(cache_dir) / "celeba" / f"{key}.npy"
    if cached.is_file():
        return np.load(cached)
    images = np.empty((len(names), 3, image_size, image_size), dtype=np.uint8)
    # PIL releases the GIL while decoding and resizing, so threads use every core.
    with ThreadPoolExecutor(max_workers=DECODE_THREADS) as pool:
        decoded = pool.map(lambda name: square_resize(folder / name, image_size), names)
        for i, image in enumerate(decoded):
            images[i] = image
    cached.parent.mkdir(parents=True, exist_ok=True)
    partial = cached.with_name(f"{cached.stem}.{os.getpid()}.partial.npy")
    np.save(partial, images)
    partial.replace(cached)
    return images


def undersample(labels: np.ndarray, seed: int = BALANCE_SEED) -> np.ndarray:
    """Sorted indices keeping every sample of the smaller class and as many, drawn at random,
    of the larger one (binary labels)."""
    positive = np.nonzero(labels == 1)[0]
    negative = np.nonzero(labels == 0)[0]
    smaller, larger = (positive, negative) if len(positive) <= len(negative) else (negative,
                                                                                   positive)
    kept = np.random.default_rng(seed).choice(larger, size=len(smaller), replace=False)
    return np.sort(np.concatenate([smaller, kept])).astype(np.int64)


def _attribute_table(dataset: tv_datasets.CelebA) -> dict[str, np.ndarray]:
    """The 40 attributes, int64 0/1 ``[N]`` each, checked against the catalogue's names."""
    names = [n for n in dataset.attr_names if n]
    if tuple(names) != CELEBA_ATTRIBUTES:
        raise DataError(f"celeba: list_attr_celeba.txt has attributes {names[:5]}..., expected "
                        "the 40 standard ones")
    table = dataset.attr.numpy().astype(np.int64)
    return {name: table[:, k] for k, name in enumerate(CELEBA_ATTRIBUTES)}


def read_celeba(spec: DatasetSpec, cache_dir: Path | None) -> ArraySplits:
    """CelebA train and test splits with ``spec.target`` as the label."""
    target = spec.target
    if target not in CELEBA_ATTRIBUTES:
        raise DataError(f"celeba: target {target!r} is not a CelebA attribute")
    from torchvision import datasets as tv_datasets  # lazily: ~1.8 s of start-up

    root = data_root(spec, cache_dir)
    splits: dict[str, tuple[np.ndarray, dict[str, np.ndarray]]] = {}
    for split in ("train", "test"):
        try:
            dataset = tv_datasets.CelebA(str(root), split=split, target_type="attr",
                                         download=spec.download)
        except (RuntimeError, OSError, ValueError) as error:
            raise torchvision_read_error(spec, root, error) from error
        attributes = _attribute_table(dataset)
        images = read_split_images(dataset, spec.image_size, cache_dir)
        if split == "train" and spec.balance == "undersample":
            kept = undersample(attributes[target])
            images = images[kept]
            attributes = {name: values[kept] for name, values in attributes.items()}
        splits[split] = (images, attributes)
    (train_images, train_attributes), (test_images, test_attributes) = splits["train"], \
        splits["test"]
    return ArraySplits(
        train_images=train_images, train_labels=train_attributes[target],
        test_images=test_images, test_labels=test_attributes[target],
        source=str(root / "celeba"),
        test_attributes=test_attributes,
    )
