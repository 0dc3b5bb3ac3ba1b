"""Tiny-ImageNet (Stanford CS231n): 200 classes of 64x64 images, 500 training and 50 validation
images each, read from the folder the official zip unpacks to::

    <root>/tiny-imagenet-200/train/<wnid>/images/<wnid>_<k>.JPEG
    <root>/tiny-imagenet-200/val/images/val_<k>.JPEG
    <root>/tiny-imagenet-200/val/val_annotations.txt   (file \\t wnid \\t x0 \\t y0 \\t x1 \\t y1)

Class c is the c-th wnid in sorted order (as torchvision's ImageFolder numbers classes), so the
plan's class names are the indices "0".."199". The labelled validation split is the test split
(the official test images have no labels). The 110,000 JPEGs are decoded once and cached as a
uint8 ``.npz`` (1.3 GB) in the kdspec cache; later loads read the cache.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

from kdspec.catalogue.dataset_arrays import ArraySplits
from kdspec.errors import DataError
from kdspec.plan import DatasetSpec, stable_hash
from kdspec.runtime.data.locations import TINY_IMAGENET_FOLDER, cache_root, data_root

SIDE = 64


def _image(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        rgb = img.convert("RGB")
        if rgb.size != (SIDE, SIDE):
            raise DataError(f"tiny_imagenet: {path} is {rgb.size[0]}x{rgb.size[1]}, not "
                            f"{SIDE}x{SIDE}")
        return np.asarray(rgb, dtype=np.uint8).transpose(2, 0, 1)


def _stack(paths: list[Path]) -> np.ndarray:
    out = np.empty((len(paths), 3, SIDE, SIDE), dtype=np.uint8)
    for i, path in enumerate(paths):
        out[i] = _image(path)
    return out


def read_folder(folder: Path, num_classes: int) -> dict[str, np.ndarray]:
    """Both splits of an unpacked ``tiny-imagenet-200`` folder as uint8 arrays and labels."""
    train_root = folder / "train"
    wnids = sorted(p.name for p in train_root.iterdir() if p.is_dir())
    if len(wnids) != num_classes:
        raise DataError(f"tiny_imagenet: {train_root} has {len(wnids)} class folders, the plan "
                        f"expects {num_classes}")
    index = {wnid: i for i, wnid in enumerate(wnids)}
    train_paths, train_labels = [], []
    for wnid in wnids:
        for path in sorted((train_root / wnid / "images").glob("*.JPEG")):
            train_paths.append(path)
            train_labels.append(index[wnid])
    test_paths, test_labels = [], []
    annotations = folder / "val" / "val_annotations.txt"
    for line_number, line in enumerate(annotations.read_text().splitlines(), start=1):
        fields = line.split("\t")
        if len(fields) < 2 or fields[1] not in index:
            raise DataError(f"tiny_imagenet: {annotations}:{line_number}: expected 'file<TAB>"
                            f"wnid...' with one of the {num_classes} training wnids")
        test_paths.append(folder / "val" / "images" / fields[0])
        test_labels.append(index[fields[1]])
    return {"train_images": _stack(train_paths),
            "train_labels": np.asarray(train_labels, dtype=np.int64),
            "test_images": _stack(test_paths),
            "test_labels": np.asarray(test_labels, dtype=np.int64)}


def read_tiny_imagenet(spec: DatasetSpec, cache_dir: Path | None) -> ArraySplits:
    """Tiny-ImageNet from the cache, or decoded from its folder and cached first."""
    folder = data_root(spec, cache_dir) / TINY_IMAGENET_FOLDER
    key = stable_hash({"folder": str(folder.resolve()), "classes": spec.num_classes}, 12)
    cached = cache_root(cache_dir) / "tiny_imagenet" / f"tiny-imagenet-{key}.npz"
    if cached.is_file():
        with np.load(cached) as stored:
            arrays = {name: stored[name] for name in stored.files}
    else:
        arrays = read_folder(folder, spec.num_classes)
        cached.parent.mkdir(parents=True, exist_ok=True)
        partial = cached.with_name(f"{cached.name}.{os.getpid()}.partial.npz")
        np.savez(partial, **arrays)  # type: ignore[arg-type]
        partial.replace(cached)
    return ArraySplits(train_images=arrays["train_images"], train_labels=arrays["train_labels"],
                       test_images=arrays["test_images"], test_labels=arrays["test_labels"],
                       source=str(folder))
