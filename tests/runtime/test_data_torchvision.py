"""CIFAR-10/100, SVHN and CelebA through torchvision's real parsers, from tiny on-disk files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from kdspec.catalogue.facts import CELEBA_ATTRIBUTES
from kdspec.errors import DataError
from kdspec.runtime.data import check_dataset_available, load_dataset
from kdspec.runtime.data.augment import make_augmenter
from kdspec.runtime.data.celeba import square_resize, undersample
from tests.factories import dataset_spec
from tests.runtime.data_fixtures import (
    skip_md5,
    write_celeba,
    write_cifar10,
    write_cifar100,
    write_svhn,
)

CPU = torch.device("cpu")
SMILING = CELEBA_ATTRIBUTES.index("Smiling")
YOUNG = CELEBA_ATTRIBUTES.index("Young")


def test_cifar10_reads_pickled_batches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    skip_md5(monkeypatch)
    test_images = write_cifar10(tmp_path, per_batch=4, test=6)
    data = load_dataset(dataset_spec("cifar10", root=str(tmp_path)), device=CPU)
    assert (data.train.num_samples, data.test.num_samples) == (20, 6)
    assert data.train.num_views == 162
    assert np.array_equal(data.test.labels, np.arange(6))
    batch = next(data.test.batches(batch_size=6))
    expected = make_augmenter("cifar10", "none", 32, 3, CPU).normalize(torch.from_numpy(test_images))
    assert torch.equal(batch.inputs, expected)
    assert str(tmp_path) in data.description


def test_cifar100_uses_fine_labels(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    skip_md5(monkeypatch)
    write_cifar100(tmp_path, train=8, test=5)
    data = load_dataset(dataset_spec("cifar100", root=str(tmp_path), test_subset=3), device=CPU)
    assert (data.train.num_samples, data.test.num_samples, data.num_classes) == (8, 3, 100)
    assert data.test.labels.max() < 100


def test_svhn_maps_label_ten_to_zero_and_has_no_flip(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    skip_md5(monkeypatch)
    written = write_svhn(tmp_path, train=7, test=4)
    data = load_dataset(dataset_spec("svhn", root=str(tmp_path)), device=CPU)
    assert np.array_equal(data.test.labels, written % 10)
    assert data.train.num_views == 81  # crop only: 9 x 9 offsets
    batch = next(data.train.epoch(seed=0, epoch=0, batch_size=7))
    assert batch.inputs.shape == (7, 3, 32, 32)


def celeba_tables(count: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    attributes = rng.integers(0, 2, (count, 40))
    partition = np.array([0] * (count - 8) + [1] * 2 + [2] * 6)
    # Training split: 5 smiling of count - 8, so Smiling is the smaller class.
    attributes[: count - 8, SMILING] = 0
    attributes[[1, 4, 6, 9, 12], SMILING] = 1
    return attributes, partition


def test_celeba_target_attributes_and_undersampling(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    skip_md5(monkeypatch)
    attributes, partition = celeba_tables(24)
    write_celeba(tmp_path / "data", attributes, partition)
    spec = dataset_spec("celeba", root=str(tmp_path / "data"), image_size=16, num_classes=2,
                        class_names=("not Smiling", "Smiling"), target="Smiling",
                        sensitive=("Young",), balance="undersample")
    data = load_dataset(spec, device=CPU, cache_dir=tmp_path / "cache")
    assert data.train.num_samples == 10  # 5 smiling + 5 of the 11 others
    train_labels = torch.cat([b.labels for b in data.train.epoch(seed=0, epoch=0,
                                                                 batch_size=4)])
    assert int(train_labels.sum()) == 5
    test_rows = np.nonzero(partition == 2)[0]
    assert np.array_equal(data.test.labels, attributes[test_rows, SMILING])
    assert set(data.test.attributes) == set(CELEBA_ATTRIBUTES)
    assert np.array_equal(data.test.attributes["Young"], attributes[test_rows, YOUNG])
    batch = next(data.test.batches(batch_size=6))
    assert batch.inputs.shape == (6, 3, 16, 16)
    # The resized images were cached and are reused.
    assert len(list((tmp_path / "cache" / "celeba").glob("*.npy"))) == 2
    again = load_dataset(spec, device=CPU, cache_dir=tmp_path / "cache")
    assert torch.equal(next(again.test.batches(batch_size=6)).inputs, batch.inputs)


def test_undersampling_is_deterministic_and_balanced() -> None:
    labels = np.array([0] * 30 + [1] * 7)
    kept = undersample(labels)
    assert np.array_equal(kept, undersample(labels))
    assert np.bincount(labels[kept]).tolist() == [7, 7]
    assert np.array_equal(kept, np.sort(kept))


def test_square_resize_takes_the_centred_square(tmp_path: Path) -> None:
    from PIL import Image

    pixels = np.zeros((30, 10, 3), dtype=np.uint8)
    pixels[10:20] = 200  # the centred 10 x 10 square is bright, the rest black
    Image.fromarray(pixels).save(tmp_path / "tall.png")
    out = square_resize(tmp_path / "tall.png", 5)
    assert out.shape == (3, 5, 5)
    assert (out == 200).all()


@pytest.mark.parametrize(("name", "missing"), [
    ("cifar10", "cifar-10-batches-py/data_batch_1"),
    ("cifar100", "cifar-100-python/train"),
    ("svhn", "train_32x32.mat"),
    ("imagenet", "train"),
])
def test_missing_files_name_the_path_and_the_way_to_get_them(
    tmp_path: Path, name: str, missing: str
) -> None:
    spec = dataset_spec(name, root=str(tmp_path))
    with pytest.raises(DataError) as raised:
        check_dataset_available(spec)
    message = str(raised.value)
    assert str(tmp_path / missing) in message
    assert "To get it:" in message
    assert ("download = true" in message) == (name != "imagenet")


def test_missing_celeba_annotation_is_named(tmp_path: Path) -> None:
    attributes, partition = celeba_tables(16)
    write_celeba(tmp_path, attributes, partition)
    (tmp_path / "celeba" / "list_attr_celeba.txt").unlink()
    spec = dataset_spec("celeba", root=str(tmp_path), image_size=16, num_classes=2,
                        class_names=("no", "yes"), target="Smiling")
    with pytest.raises(DataError, match="list_attr_celeba.txt"):
        load_dataset(spec, device=CPU)


def test_download_allowed_skips_the_file_check_without_fetching(tmp_path: Path) -> None:
    # The check only looks at paths: with download allowed, absent files are not an error, and
    # nothing is fetched or written (no test here or in CI may reach the network).
    root = tmp_path / "data"
    root.mkdir()
    check_dataset_available(dataset_spec("cifar10", root=str(root), download=True))
    assert list(root.iterdir()) == []
    with pytest.raises(DataError, match="cifar-10-batches-py"):
        check_dataset_available(dataset_spec("cifar10", root=str(root), download=False))


def test_default_root_is_under_the_cache(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=str(tmp_path / "data" / "cifar-10-batches-py")):
        check_dataset_available(dataset_spec("cifar10"), cache_dir=tmp_path)
