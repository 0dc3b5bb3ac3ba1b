"""``imagefolder``: a researcher's own images (a folder per class) and attributes (a CSV).

The layout and the CSV format are in :mod:`kdspec.catalogue.image_folder_layout`. Each image is decoded
with Pillow, converted to RGB (or grey with ``channels = 1``), its shorter side resized to
``image_size`` (bilinear) and the centre square cropped, so any mix of sizes and aspect ratios
becomes ``[N, C, image_size, image_size]`` uint8 without distortion. The arrays and the
per-channel mean and std of the training images (the normalisation every model of the study
uses) are computed once and cached as ``<cache>/imagefolder/imagefolder-<key>.npz``, keyed by the
folder's content digest, the size and the channels; later runs read the cache.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from kdspec.catalogue.dataset_arrays import ArraySplits
from kdspec.catalogue.image_folder_layout import (
    ImageFolderLayout,
    read_attribute_table,
    scan_image_folder,
)
from kdspec.errors import DataError
from kdspec.plan import DatasetSpec, stable_hash
from kdspec.runtime.data.locations import cache_root

#: Pixels per chunk when summing the training images for their mean and std (bounds memory).
STATS_CHUNK = 4096
#: Group values listed in the one-line description of an attribute (the rest are counted).
LISTED_VALUES = 6


def decode_image(path: Path, size: int, channels: int) -> np.ndarray:
    """One image as uint8 ``[channels, size, size]``: shorter side to ``size``, centre crop."""
    try:
        with Image.open(path) as img:
            image = img.convert("RGB" if channels == 3 else "L")
    except (UnidentifiedImageError, OSError) as error:
        raise DataError(f"imagefolder: cannot decode {path}: {error}") from error
    width, height = image.size
    scale = size / min(width, height)
    resized = (max(size, round(width * scale)), max(size, round(height * scale)))
    if resized != image.size:
        image = image.resize(resized, Image.Resampling.BILINEAR)
    left, top = (resized[0] - size) // 2, (resized[1] - size) // 2
    image = image.crop((left, top, left + size, top + size))
    pixels = np.asarray(image, dtype=np.uint8)
    return pixels[None] if channels == 1 else pixels.transpose(2, 0, 1)


def _decode_all(root: Path, files: tuple[str, ...], size: int, channels: int) -> np.ndarray:
    out = np.empty((len(files), channels, size, size), dtype=np.uint8)
    for i, file in enumerate(files):
        out[i] = decode_image(root / file, size, channels)
    return out


def channel_statistics(images: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std in [0, 1] of uint8 ``[N, C, H, W]`` images (population std,
    summed in float64 over chunks)."""
    channels = images.shape[1]
    total = np.zeros(channels)
    squares = np.zeros(channels)
    for start in range(0, len(images), STATS_CHUNK):
        chunk = images[start:start + STATS_CHUNK].astype(np.float64) / 255.0
        total += chunk.sum(axis=(0, 2, 3))
        squares += (chunk * chunk).sum(axis=(0, 2, 3))
    count = images.shape[0] * images.shape[2] * images.shape[3]
    mean = total / count
    std = np.sqrt(np.maximum(squares / count - mean * mean, 0.0))
    std = np.where(std > 0, std, 1.0)  # a constant channel: leave its scale alone
    return tuple(float(m) for m in mean), tuple(float(s) for s in std)


def _decoded(spec: DatasetSpec, layout: ImageFolderLayout, cache_dir: Path | None
             ) -> dict[str, np.ndarray]:
    key = stable_hash({"digest": layout.content_digest, "size": spec.image_size,
                       "channels": spec.channels}, 12)
    cached = cache_root(cache_dir) / "imagefolder" / f"imagefolder-{key}.npz"
    if cached.is_file():
        with np.load(cached) as stored:
            return {name: stored[name] for name in stored.files}
    train = _decode_all(layout.root, layout.train_files, spec.image_size, spec.channels)
    mean, std = channel_statistics(train)
    arrays = {
        "train_images": train,
        "train_labels": np.asarray(layout.train_labels, dtype=np.int64),
        "test_images": _decode_all(layout.root, layout.test_files, spec.image_size,
                                   spec.channels),
        "test_labels": np.asarray(layout.test_labels, dtype=np.int64),
        "mean": np.asarray(mean), "std": np.asarray(std),
    }
    cached.parent.mkdir(parents=True, exist_ok=True)
    partial = cached.with_name(f"{cached.name}.{os.getpid()}.partial.npz")
    np.savez(partial, **arrays)  # type: ignore[arg-type]
    partial.replace(cached)
    return arrays


def _attributes(spec: DatasetSpec, layout: ImageFolderLayout
                ) -> tuple[dict[str, np.ndarray], list[str]]:
    """Group codes of the test images for every attribute the CSV gives them all (a sensitive
    attribute must), and one description per attribute."""
    if spec.attributes_file is None:
        return {}, []
    table = read_attribute_table(Path(spec.attributes_file))
    codes: dict[str, np.ndarray] = {}
    described: list[str] = []
    for attribute in table.attributes:
        try:
            values, groups = table.codes(attribute, layout.test_files)
        except DataError:
            if attribute in spec.sensitive:
                raise
            continue  # not analysed, and not given for every test image: not kept
        codes[attribute] = np.asarray(values, dtype=np.int64)
        listed = ", ".join(f"{i}={g}" for i, g in enumerate(groups[:LISTED_VALUES]))
        more = f", +{len(groups) - LISTED_VALUES} more" if len(groups) > LISTED_VALUES else ""
        described.append(f"{attribute}: {listed}{more}")
    return codes, described


def read_image_folder(spec: DatasetSpec, cache_dir: Path | None) -> ArraySplits:
    """Both splits of ``spec.root`` (checked against the plan's content digest), with the
    CSV's attributes for the test images and the training images' own normalisation."""
    if spec.root is None:
        raise DataError("imagefolder: the plan has no root (compile the spec again)")
    layout = scan_image_folder(Path(spec.root))
    if spec.content_digest is not None and layout.content_digest != spec.content_digest:
        raise DataError(f"imagefolder: the images under {spec.root} changed since the plan was "
                        f"compiled (digest {spec.content_digest}, now {layout.content_digest}); "
                        "compile the spec again so its runs get ids for the new data")
    if layout.class_names != spec.class_names:
        raise DataError(f"imagefolder: {spec.root}/train has classes "
                        f"{', '.join(layout.class_names)}; the plan has "
                        f"{', '.join(spec.class_names)}")
    attributes, described = _attributes(spec, layout)
    arrays = _decoded(spec, layout, cache_dir)
    source = str(layout.root)
    if described:
        source += f" (attributes from {spec.attributes_file}: {'; '.join(described)})"
    return ArraySplits(
        train_images=arrays["train_images"], train_labels=arrays["train_labels"],
        test_images=arrays["test_images"], test_labels=arrays["test_labels"], source=source,
        test_attributes=attributes,
        normalization=(tuple(float(m) for m in arrays["mean"]),
                       tuple(float(s) for s in arrays["std"])))


__all__ = ["channel_statistics", "decode_image", "read_image_folder"]
