"""Tiny-ImageNet from a tiny copy of the official ``tiny-imagenet-200`` folder layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from kdspec.errors import DataError
from kdspec.runtime.data import check_dataset_available, load_dataset
from tests.factories import dataset_spec
from tests.runtime.data_fixtures import write_tiny_imagenet

CPU = torch.device("cpu")


def test_reads_the_official_layout_with_sorted_wnid_classes(tmp_path: Path) -> None:
    wnids = write_tiny_imagenet(tmp_path / "data", train_per_class=2, val=6)
    spec = dataset_spec("tiny_imagenet", root=str(tmp_path / "data"))
    check_dataset_available(spec, cache_dir=tmp_path / "cache")
    data = load_dataset(spec, device=CPU, cache_dir=tmp_path / "cache")
    assert data.train.num_samples == 400 and data.test.num_samples == 6
    train_labels = data.train.labels.numpy()
    assert np.array_equal(train_labels, np.repeat(np.arange(200), 2))  # wnid order, not wnids.txt
    annotations = (tmp_path / "data/tiny-imagenet-200/val/val_annotations.txt").read_text()
    expected = [wnids.index(line.split("\t")[1]) for line in annotations.splitlines()]
    assert data.test.labels.tolist() == expected
    first = tmp_path / "data/tiny-imagenet-200/train" / wnids[0] / "images" / f"{wnids[0]}_0.JPEG"
    with Image.open(first) as img:
        decoded = np.asarray(img.convert("RGB")).transpose(2, 0, 1)
    assert np.array_equal(data.train.images[0].numpy(), decoded)


def test_second_load_reads_the_cache(tmp_path: Path) -> None:
    write_tiny_imagenet(tmp_path / "data")
    spec = dataset_spec("tiny_imagenet", root=str(tmp_path / "data"))
    first = load_dataset(spec, device=CPU, cache_dir=tmp_path / "cache")
    assert len(list((tmp_path / "cache").rglob("tiny-imagenet-*.npz"))) == 1
    for jpeg in (tmp_path / "data").rglob("*.JPEG"):
        jpeg.unlink()  # the cache alone must serve the second load
    second = load_dataset(spec, device=CPU, cache_dir=tmp_path / "cache")
    assert torch.equal(first.train.images, second.train.images)
    assert np.array_equal(first.test.labels, second.test.labels)


def test_missing_annotations_and_wrong_class_count_are_named(tmp_path: Path) -> None:
    write_tiny_imagenet(tmp_path / "data", classes=199)
    spec = dataset_spec("tiny_imagenet", root=str(tmp_path / "data"))
    with pytest.raises(DataError, match="has 199 class folders, the plan expects 200"):
        load_dataset(spec, device=CPU, cache_dir=tmp_path / "cache")
    (tmp_path / "data/tiny-imagenet-200/val/val_annotations.txt").unlink()
    with pytest.raises(DataError) as raised:
        check_dataset_available(spec, cache_dir=tmp_path / "cache")
    assert "val_annotations.txt" in str(raised.value)
    assert "tiny-imagenet-200.zip" in str(raised.value)


def test_an_annotation_with_an_unknown_wnid_names_its_line(tmp_path: Path) -> None:
    write_tiny_imagenet(tmp_path / "data")
    path = tmp_path / "data/tiny-imagenet-200/val/val_annotations.txt"
    path.write_text(path.read_text() + "val_9.JPEG\tn99999999\t0\t0\t1\t1\n")
    spec = dataset_spec("tiny_imagenet", root=str(tmp_path / "data"))
    with pytest.raises(DataError, match=r"val_annotations.txt:7:"):
        load_dataset(spec, device=CPU, cache_dir=tmp_path / "cache")
