"""Trifeature: deterministic, colour-correct, ten distinguishable shapes and textures, cached."""

from __future__ import annotations

import itertools
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest
import torch

from kdspec.analysis.fairness_metrics import one_vs_rest_gaps
from kdspec.catalogue.facts import (
    DATASETS,
    TRIFEATURE_BALANCED_MULTIPLE,
    TRIFEATURE_COLORS,
    TRIFEATURE_COMBINATION_COUNT,
    TRIFEATURE_DEFAULT_COMBINATIONS,
    TRIFEATURE_SHAPES,
    TRIFEATURE_TEXTURES,
)
from kdspec.errors import DataError
from kdspec.runtime.data import check_dataset_available, load_dataset
from kdspec.runtime.data.trifeature import (
    TRIFEATURE_SEED,
    draw_parameters,
    generate_split,
    trifeature_options,
)
from kdspec.runtime.data.trifeature_drawing import (
    COLOR_RGB,
    GREY,
    SHAPE_BOX,
    shape_mask,
    texture_pattern,
)
from tests.factories import dataset_spec

CPU = torch.device("cpu")


def trifeature_spec(tmp_path: Path, **overrides: object):
    fields: dict[str, object] = dict(
        image_size=32, num_classes=10, class_names=TRIFEATURE_SHAPES, target="shape",
        sensitive=("color",), generated_train_size=60, generated_test_size=30,
        root=str(tmp_path),
    )
    fields.update(overrides)
    return dataset_spec("trifeature", **fields)


def rounded_255(rgb: tuple[float, ...]) -> np.ndarray:
    """The colour in 0..255 with halves rounded up, from the decimal values of the brief."""
    return np.array([int(Decimal(repr(c)) * 255 + Decimal("0.5")) for c in rgb], dtype=np.float64)


def test_generation_is_deterministic_and_splits_differ() -> None:
    a = generate_split(12, 32, seed=5, split=0)
    b = generate_split(12, 32, seed=5, split=0)
    other = generate_split(12, 32, seed=5, split=1)
    assert np.array_equal(a.images, b.images)
    assert np.array_equal(a.shape, b.shape) and np.array_equal(a.color, b.color)
    assert not np.array_equal(a.images, other.images)


def test_every_pixel_is_a_mix_of_grey_and_the_labelled_colour() -> None:
    split = generate_split(40, 32, seed=1, split=0)
    grey = rounded_255(GREY)
    for image, colour_id in zip(split.images, split.color, strict=True):
        colour = rounded_255(COLOR_RGB[TRIFEATURE_COLORS[colour_id]])
        pixels = image.reshape(3, -1).T.astype(np.float64)  # [P, 3]
        direction = colour - grey
        # Project each pixel on the grey -> colour segment; the residual is rounding only.
        weight = (pixels - grey) @ direction / (direction @ direction)
        residual = pixels - (grey + weight[:, None] * direction)
        assert np.abs(residual).max() <= 1.0
        assert weight.min() >= -0.01 and weight.max() <= 1.01
        assert weight.max() > 0.1  # the shape is visible


def test_solid_shapes_at_full_resolution_reach_the_exact_colour() -> None:
    split = generate_split(60, 224, seed=3, split=0)
    solid = np.nonzero(split.texture == TRIFEATURE_TEXTURES.index("solid"))[0]
    assert len(solid) > 0
    for i in solid:
        expected = rounded_255(COLOR_RGB[TRIFEATURE_COLORS[split.color[i]]])
        pixels = split.images[i].reshape(3, -1).T
        assert (pixels == expected).all(axis=1).sum() > 1000


def test_the_ten_shapes_are_pairwise_distinct() -> None:
    masks = [shape_mask(name, 0) > 0.5 for name in TRIFEATURE_SHAPES]
    for (i, a), (j, b) in itertools.combinations(enumerate(masks), 2):
        iou = (a & b).sum() / (a | b).sum()
        assert iou < 0.93, (TRIFEATURE_SHAPES[i], TRIFEATURE_SHAPES[j], iou)


@pytest.mark.parametrize("shape", TRIFEATURE_SHAPES)
def test_rotated_shapes_stay_inside_their_box(shape: str) -> None:
    for angle in (-45, -20, 44):
        mask = shape_mask(shape, angle)
        assert mask.shape == (SHAPE_BOX, SHAPE_BOX)
        assert mask[[0, -1], :].max() == 0 and mask[:, [0, -1]].max() == 0
        assert mask.sum() > 0.05 * SHAPE_BOX**2


def test_the_ten_textures_are_pairwise_distinct() -> None:
    coords = torch.arange(64, dtype=torch.float32) + 0.5
    v, u = torch.meshgrid(coords, coords, indexing="ij")
    noise = torch.rand(64, 64, generator=torch.Generator().manual_seed(0))
    patterns = {name: texture_pattern(name, u, v, noise) for name in TRIFEATURE_TEXTURES}
    for a, b in itertools.combinations(TRIFEATURE_TEXTURES, 2):
        differing = (patterns[a] != patterns[b]).float().mean().item()
        assert differing > 0.05, (a, b, differing)
    for name, pattern in patterns.items():
        if name != "solid":
            assert 0.05 < pattern.mean().item() < 0.95, name


def test_load_caches_once_and_uses_the_target_attribute(tmp_path: Path) -> None:
    spec = trifeature_spec(tmp_path)
    check_dataset_available(spec)
    data = load_dataset(spec, device=CPU)
    files = list(tmp_path.glob("trifeature-*.npz"))
    assert len(files) == 1
    assert (data.train.num_samples, data.test.num_samples) == (60, 30)
    assert set(data.test.attributes) == {"shape", "texture", "color"}
    assert np.array_equal(data.test.labels, data.test.attributes["shape"])
    assert data.train.num_views == 1
    batch = next(data.test.batches(batch_size=8))
    assert batch.inputs.shape == (8, 3, 32, 32)
    modified = files[0].stat().st_mtime_ns
    by_colour = load_dataset(trifeature_spec(tmp_path, target="color",
                                             class_names=TRIFEATURE_COLORS), device=CPU)
    assert files[0].stat().st_mtime_ns == modified  # reused, not regenerated
    assert np.array_equal(by_colour.test.labels, data.test.attributes["color"])


def test_options_have_defaults_and_distinct_cache_keys() -> None:
    spec = dataset_spec("trifeature", image_size=32, num_classes=10,
                        class_names=TRIFEATURE_SHAPES, target="shape")
    options = trifeature_options(spec)
    assert (options.train_size, options.test_size) == DATASETS["trifeature"].default_generated_sizes
    bigger = trifeature_options(spec.model_copy(update={"image_size": 64}))
    assert options.key != bigger.key


def test_unknown_target_is_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="target 'size'"):
        load_dataset(trifeature_spec(tmp_path, target="size"), device=CPU)


def test_balanced_draw_deals_every_combination_equally_often() -> None:
    params = draw_parameters(3000, seed=TRIFEATURE_SEED, split=1, combinations="balanced")
    combo = params["shape"] * 100 + params["texture"] * 10 + params["color"]
    assert np.array_equal(np.bincount(combo, minlength=TRIFEATURE_COMBINATION_COUNT),
                          np.full(TRIFEATURE_COMBINATION_COUNT, 3))
    # Dealt in a seeded random order, not in combination order.
    assert not np.array_equal(combo[:1000], np.arange(1000))
    # A size that is not a multiple: counts differ by at most one.
    uneven = draw_parameters(1234, seed=TRIFEATURE_SEED, split=0, combinations="balanced")
    counts = np.bincount(uneven["shape"] * 100 + uneven["texture"] * 10 + uneven["color"],
                         minlength=TRIFEATURE_COMBINATION_COUNT)
    assert counts.min() == 1 and counts.max() == 2


def test_a_perfect_classifier_is_fair_on_a_balanced_split_only() -> None:
    """The fairness floor: DPD and EOD of y_pred = y_true over colour, one-vs-rest per shape."""
    balanced = generate_split(1000, 8, seed=TRIFEATURE_SEED, split=1, combinations="balanced")
    dpd, eod = one_vs_rest_gaps(balanced.shape, balanced.shape, balanced.color, num_classes=10)
    assert np.array_equal(dpd, np.zeros(10)) and np.array_equal(eod, np.zeros(10))
    # Any multiple of TRIFEATURE_BALANCED_MULTIPLE, any target and sensitive feature.
    params = draw_parameters(1300, seed=TRIFEATURE_SEED, split=1, combinations="balanced")
    for target, attribute in itertools.permutations(("shape", "texture", "color"), 2):
        dpd, _ = one_vs_rest_gaps(params[target], params[target], params[attribute],
                                  num_classes=10)
        assert np.array_equal(dpd, np.zeros(10)), (target, attribute)
    assert 1300 % TRIFEATURE_BALANCED_MULTIPLE == 0
    # Independent draws: some shapes come with some colours more often, so even a perfect
    # classifier's selection rates differ between colours (EOD stays 0: TPR 1, FPR 0).
    independent = draw_parameters(1000, seed=TRIFEATURE_SEED, split=1,
                                  combinations="independent")
    dpd, eod = one_vs_rest_gaps(independent["shape"], independent["shape"],
                                independent["color"], num_classes=10)
    assert dpd.mean() > 0.03 and np.array_equal(eod, np.zeros(10))


def test_the_combination_rule_is_part_of_the_cache_key() -> None:
    spec = dataset_spec("trifeature", image_size=32, num_classes=10,
                        class_names=TRIFEATURE_SHAPES, target="shape")
    options = trifeature_options(spec)
    assert options.combinations == TRIFEATURE_DEFAULT_COMBINATIONS == "balanced"
    independent = trifeature_options(spec.model_copy(
        update={"generated_combinations": "independent"}))
    assert independent.combinations == "independent" and independent.key != options.key
