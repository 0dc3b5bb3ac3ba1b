"""Trifeature generation, cached as one .npz per set of generation options.

Each image (Hermann & Lampinen 2020, What shapes feature representations?): a shape, texture and colour; the
128x128 shape mask rotated by an integer angle in [-45, 45) and placed at a
uniform position on a 224x224 canvas; the texture with its own integer angle in [-45, 45);
``mask = shape coverage * texture`` and ``pixel = mask * colour + (1 - mask) * grey``.

Which (shape, texture, colour) each image gets: ``balanced`` (the default, as the original
dataset) deals the 1,000 combinations out equally often, in a seeded random order, so every
shape appears equally often with every colour and a perfect classifier's DPD and EOD over
colour are exactly 0 when the split size is a multiple of 100 (``TRIFEATURE_BALANCED_MULTIPLE``:
the combinations left over beyond whole rounds of 1,000 then make up whole shapes); ``independent`` draws the
three features independently and uniformly, so on a finite split some shapes come with some
colours more often than others and even a perfect classifier has a DPD above 0 (the floor).

Images are always drawn at 224 px and then area-downsampled to the spec's ``image_size``
(since a pixel is linear in ``mask``, downsampling the mask and then colouring is exactly
downsampling the coloured image). Generation is vectorised over chunks of images with torch.
Everything is drawn from ``numpy.random.default_rng([TRIFEATURE_SEED, split])`` and per-image
noise from ``[TRIFEATURE_SEED, split, index]``, so a given (options) always gives the same bytes.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from kdspec.catalogue.dataset_arrays import ArraySplits
from kdspec.catalogue.facts import (
    DATASETS,
    TRIFEATURE_COLORS,
    TRIFEATURE_COMBINATION_COUNT,
    TRIFEATURE_DEFAULT_COMBINATIONS,
    TRIFEATURE_SHAPES,
    TRIFEATURE_TEXTURES,
)
from kdspec.errors import DataError
from kdspec.plan import DatasetSpec, TrifeatureCombinations, stable_hash
from kdspec.runtime.data.locations import cache_root
from kdspec.runtime.data.trifeature_drawing import (
    CANVAS,
    COLOR_RGB,
    GREY,
    SHAPE_BOX,
    rotated_coordinates,
    shape_mask,
    texture_pattern,
    to_uint8,
)

#: Seed of every Trifeature draw; split 0 is train, 1 is test.
TRIFEATURE_SEED = 2_020
#: Bumped when the drawing changes, so stale caches are never reused.
GENERATOR_VERSION = 1
ANGLE_RANGE = (-45, 45)  # integer angles, high end exclusive
CHUNK = 256


@dataclass(frozen=True)
class TrifeatureOptions:
    """Everything that determines the generated files."""

    image_size: int
    train_size: int
    test_size: int
    combinations: TrifeatureCombinations = TRIFEATURE_DEFAULT_COMBINATIONS
    seed: int = TRIFEATURE_SEED
    version: int = GENERATOR_VERSION

    @property
    def key(self) -> str:
        return stable_hash(asdict(self), length=12)


@dataclass(frozen=True)
class TrifeatureSplit:
    """uint8 images ``[N, 3, S, S]`` and int64 ``shape``, ``texture``, ``color`` labels ``[N]``."""

    images: np.ndarray
    shape: np.ndarray
    texture: np.ndarray
    color: np.ndarray


class ShapeMaskBank:
    """Rotated shape masks, drawn on first use and kept: ``[128, 128]`` float32 per (shape, angle)."""

    def __init__(self) -> None:
        self._masks: dict[tuple[int, int], torch.Tensor] = {}

    def get(self, shape: int, angle: int) -> torch.Tensor:
        key = (shape, angle)
        if key not in self._masks:
            self._masks[key] = torch.from_numpy(shape_mask(TRIFEATURE_SHAPES[shape], angle))
        return self._masks[key]


def _chunk_masks(
    bank: ShapeMaskBank, params: dict[str, np.ndarray], start: int, stop: int,
    seed: int, split: int,
) -> torch.Tensor:
    """Full-canvas masks ``[B, 224, 224]`` of images ``start..stop-1``."""
    count = stop - start
    top = torch.from_numpy(params["top"][start:stop])
    left = torch.from_numpy(params["left"][start:stop])
    u, v = rotated_coordinates(top, left, torch.from_numpy(params["texture_angle"][start:stop]))
    textures = params["texture"][start:stop]
    pattern = torch.empty(count, SHAPE_BOX, SHAPE_BOX)
    for texture in np.unique(textures):
        rows = np.nonzero(textures == texture)[0]
        noise = None
        if TRIFEATURE_TEXTURES[texture] == "noise":
            noise = torch.stack([
                torch.from_numpy(np.random.default_rng([seed, split, start + int(r)])
                                 .random((SHAPE_BOX, SHAPE_BOX), dtype=np.float32))
                for r in rows
            ])
        index = torch.from_numpy(rows)
        pattern[index] = texture_pattern(TRIFEATURE_TEXTURES[texture], u[index], v[index], noise)
    canvas = torch.zeros(count, CANVAS, CANVAS)
    for k in range(count):
        i = start + k
        mask = bank.get(int(params["shape"][i]), int(params["shape_angle"][i]))
        y, x = int(params["top"][i]), int(params["left"][i])
        canvas[k, y:y + SHAPE_BOX, x:x + SHAPE_BOX] = mask * pattern[k]
    return canvas


def draw_features(rng: np.random.Generator, count: int,
                  combinations: TrifeatureCombinations) -> dict[str, np.ndarray]:
    """Shape, texture and colour ids of ``count`` images, int64 ``[count]`` each.

    ``balanced``: combination ``k = 100 * shape + 10 * texture + colour`` is dealt to images
    ``k, k + 1000, k + 2000, ...`` of a seeded permutation, so counts of any two combinations
    differ by at most one (equal when ``count`` is a multiple of 1,000), and with ``count`` a
    multiple of 100 the extra ones are whole shapes: any two features' value pairs stay equal.
    """
    n_shapes, n_textures, n_colors = (len(TRIFEATURE_SHAPES), len(TRIFEATURE_TEXTURES),
                                      len(TRIFEATURE_COLORS))
    if combinations == "independent":
        return {"shape": rng.integers(0, n_shapes, count),
                "texture": rng.integers(0, n_textures, count),
                "color": rng.integers(0, n_colors, count)}
    combo = rng.permutation(np.arange(count, dtype=np.int64) % TRIFEATURE_COMBINATION_COUNT)
    return {"shape": combo // (n_textures * n_colors), "texture": (combo // n_colors) % n_textures,
            "color": combo % n_colors}


def draw_parameters(count: int, seed: int, split: int,
                    combinations: TrifeatureCombinations = TRIFEATURE_DEFAULT_COMBINATIONS) -> dict[str, np.ndarray]:
    """Every random choice of a split: labels, angles and positions, int64 ``[count]`` each."""
    rng = np.random.default_rng([seed, split])
    low, high = ANGLE_RANGE
    return {
        **draw_features(rng, count, combinations),
        "shape_angle": rng.integers(low, high, count),
        "texture_angle": rng.integers(low, high, count),
        "top": rng.integers(0, CANVAS - SHAPE_BOX + 1, count),
        "left": rng.integers(0, CANVAS - SHAPE_BOX + 1, count),
    }


@contextmanager
def single_threaded() -> Iterator[None]:
    """Run torch on one intra-op thread, then restore the previous count. Generation is many
    mid-sized tensor ops, where threads waiting on each other cost more than they give
    (4x faster with one thread on a shared 2-core CPU)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def generate_split(count: int, image_size: int, *, seed: int, split: int,
                   combinations: TrifeatureCombinations = TRIFEATURE_DEFAULT_COMBINATIONS) -> TrifeatureSplit:
    """Draw ``count`` images at 224 px and downsample them to ``image_size``."""
    with single_threaded():
        return _generate_split(count, image_size, seed=seed, split=split,
                               combinations=combinations)


def _generate_split(count: int, image_size: int, *, seed: int, split: int,
                    combinations: TrifeatureCombinations) -> TrifeatureSplit:
    params = draw_parameters(count, seed, split, combinations)
    # Colour in 0..255 first, so a fully covered pixel is exactly the colour's uint8 value.
    palette = torch.tensor([to_uint8(COLOR_RGB[c]) for c in TRIFEATURE_COLORS],
                           dtype=torch.float32)  # [10, 3]
    grey = torch.tensor(to_uint8(GREY), dtype=torch.float32)[None, :, None, None]
    images = np.empty((count, 3, image_size, image_size), dtype=np.uint8)
    bank = ShapeMaskBank()
    for start in range(0, count, CHUNK):
        stop = min(start + CHUNK, count)
        masks = _chunk_masks(bank, params, start, stop, seed, split)[:, None]
        if image_size != CANVAS:
            masks = F.interpolate(masks, size=(image_size, image_size), mode="area")
        colour = palette[torch.from_numpy(params["color"][start:stop])][:, :, None, None]
        rgb = grey + masks * (colour - grey)
        images[start:stop] = torch.round(rgb).to(torch.uint8).numpy()
    return TrifeatureSplit(images=images, shape=params["shape"], texture=params["texture"],
                           color=params["color"])


def cache_file(spec: DatasetSpec, options: TrifeatureOptions, cache_dir: Path | None) -> Path:
    """``<root>/trifeature-<key>.npz``; root defaults to ``<cache>/trifeature``."""
    folder = Path(spec.root).expanduser() if spec.root else cache_root(cache_dir) / "trifeature"
    return folder / f"trifeature-{options.key}.npz"


def trifeature_options(spec: DatasetSpec) -> TrifeatureOptions:
    """Generation options of ``spec``; sizes default to the catalogue's (a plan JSON written by
    hand may leave them out; the compiler always fills them in)."""
    defaults = DATASETS["trifeature"].default_generated_sizes
    assert defaults is not None, "the catalogue gives Trifeature default sizes"
    default_train, default_test = defaults
    return TrifeatureOptions(
        image_size=spec.image_size,
        train_size=spec.generated_train_size or default_train,
        test_size=spec.generated_test_size or default_test,
        combinations=spec.generated_combinations or TRIFEATURE_DEFAULT_COMBINATIONS,
    )


def load_or_generate(path: Path, options: TrifeatureOptions) -> dict[str, np.ndarray]:
    """The cached arrays at ``path``, generating and writing them first if absent. The file is
    written under a temporary name and renamed, so a crash never leaves a half file."""
    if path.is_file():
        with np.load(path) as stored:
            return {name: stored[name] for name in stored.files}
    arrays: dict[str, np.ndarray] = {}
    for split, (name, count) in enumerate((("train", options.train_size),
                                           ("test", options.test_size))):
        generated = generate_split(count, options.image_size, seed=options.seed, split=split,
                                   combinations=options.combinations)
        for field in ("images", "shape", "texture", "color"):
            arrays[f"{name}_{field}"] = getattr(generated, field)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.name}.{os.getpid()}.partial.npz")
    np.savez(partial, **arrays)  # type: ignore[arg-type]
    partial.replace(path)
    return arrays


def read_trifeature(spec: DatasetSpec, cache_dir: Path | None) -> ArraySplits:
    """Trifeature with ``spec.target`` (default shape) as the label; all three as attributes."""
    features = ("shape", "texture", "color")
    target = spec.target or "shape"
    if target not in features:
        raise DataError(f"trifeature: target {target!r} is not one of {', '.join(features)}")
    options = trifeature_options(spec)
    path = cache_file(spec, options, cache_dir)
    arrays = load_or_generate(path, options)
    return ArraySplits(
        train_images=arrays["train_images"],
        train_labels=arrays[f"train_{target}"].astype(np.int64),
        test_images=arrays["test_images"],
        test_labels=arrays[f"test_{target}"].astype(np.int64),
        source=str(path),
        test_attributes={f: arrays[f"test_{f}"].astype(np.int64) for f in features},
    )
