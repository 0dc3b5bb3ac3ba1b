"""The in-memory fast path: seeded batches, addressable views, subsets, digits and Fashion-MNIST."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from kdspec.errors import DataError
from kdspec.runtime.data import check_dataset_available, load_dataset
from kdspec.runtime.data.augment import make_augmenter
from kdspec.runtime.data.in_memory import InMemoryTrainSource, subset_indices
from kdspec.runtime.data.locations import DEBIAN_FASHION_MNIST
from tests.factories import dataset_spec

CPU = torch.device("cpu")


def random_train_source(preset: str = "crop_flip", n: int = 50, size: int = 12,
                        channels: int = 3) -> InMemoryTrainSource:
    images = torch.randint(0, 256, (n, channels, size, size), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(3))
    labels = torch.arange(n) % 10
    augmenter = make_augmenter("cifar10", preset, size, channels, CPU)  # type: ignore[arg-type]
    return InMemoryTrainSource(images, labels, augmenter, CPU)


@pytest.mark.parametrize(("preset", "views"), [("none", 1), ("flip", 2), ("crop", 25),
                                               ("crop_flip", 50)])
def test_num_views_counts_every_discrete_outcome(preset: str, views: int) -> None:
    # 12 px -> padding round(12 / 8) = 2 -> (2*2 + 1)^2 = 25 crop cells.
    assert random_train_source(preset).num_views == views


@pytest.mark.parametrize("preset", ["none", "flip", "crop", "crop_flip"])
def test_render_reproduces_every_batch_exactly(preset: str) -> None:
    source = random_train_source(preset)
    for batch in source.epoch(seed=4, epoch=2, batch_size=16):
        assert batch.view is not None
        assert torch.equal(source.render(batch.index, batch.view), batch.inputs)


def test_batches_depend_only_on_seed_and_epoch_not_global_rng() -> None:
    source = random_train_source()
    torch.manual_seed(0)
    first = list(source.epoch(seed=7, epoch=1, batch_size=16))
    torch.manual_seed(12345)
    torch.rand(100)
    again = list(source.epoch(seed=7, epoch=1, batch_size=16))
    other_epoch = list(source.epoch(seed=7, epoch=2, batch_size=16))
    for a, b in zip(first, again, strict=True):
        assert torch.equal(a.index, b.index) and torch.equal(a.inputs, b.inputs)
    assert not torch.equal(first[0].index, other_epoch[0].index)


def test_an_epoch_visits_every_sample_once_and_keeps_the_last_partial_batch() -> None:
    source = random_train_source(n=50)
    batches = list(source.epoch(seed=0, epoch=0, batch_size=16))
    assert [len(b.index) for b in batches] == [16, 16, 16, 2]
    seen = torch.cat([b.index for b in batches])
    assert sorted(seen.tolist()) == list(range(50))
    for b in batches:
        assert torch.equal(b.labels, source.labels[b.index])


def test_view_zero_of_crop_flip_is_the_unflipped_top_left_crop() -> None:
    source = random_train_source("crop_flip", n=2, size=8)  # padding 1: 3 x 3 cells
    augmenter = source.augmenter
    index = torch.tensor([0, 1])
    # dy = dx = 1 is the centre crop (no shift); flip bit 1 mirrors it.
    centre = augmenter.encode(torch.tensor([1, 1]), torch.tensor([1, 1]), torch.tensor([0, 1]))
    rendered = source.render(index, centre)
    plain = augmenter.normalize(source.images[index])
    assert torch.equal(rendered[0], plain[0])
    assert torch.equal(rendered[1], plain[1].flip(-1))
    # Top-left cell: the first row and column come from the zero padding.
    corner = source.render(index[:1], torch.tensor([0]))
    zero = augmenter.normalize(torch.zeros(1, 3, 1, 1, dtype=torch.uint8))
    assert torch.equal(corner[0, :, 0, :], zero[0, :, 0].expand(3, 8))
    assert torch.equal(corner[0, :, 1:, 1:], plain[0, :, :-1, :-1])


def test_normalisation_uses_the_dataset_mean_and_std() -> None:
    augmenter = make_augmenter("cifar10", "none", 4, 3, CPU)
    images = torch.full((1, 3, 4, 4), 255, dtype=torch.uint8)
    out = augmenter.normalize(images)
    expected = (1.0 - torch.tensor([0.4914, 0.4822, 0.4465])) / torch.tensor([0.2470, 0.2435, 0.2616])
    assert torch.allclose(out[0, :, 0, 0], expected)


def test_subset_is_a_fixed_sorted_choice() -> None:
    chosen = subset_indices(100, 10)
    assert len(set(chosen.tolist())) == 10
    assert np.array_equal(chosen, np.sort(chosen))
    assert np.array_equal(chosen, subset_indices(100, 10))
    assert not np.array_equal(chosen, np.arange(10))
    assert np.array_equal(subset_indices(5, None), np.arange(5))
    assert np.array_equal(subset_indices(5, 9), np.arange(5))


def test_digits_load_with_the_catalogue_split_sizes() -> None:
    data = load_dataset(dataset_spec("digits"), device=CPU)
    assert (data.train.num_samples, data.test.num_samples) == (1437, 360)
    assert data.train.num_views == 1
    batch = next(data.test.batches(batch_size=100))
    assert batch.inputs.shape == (100, 1, 8, 8) and batch.inputs.dtype == torch.float32
    assert batch.view is None
    assert torch.equal(batch.index, torch.arange(100))
    assert np.array_equal(batch.labels.numpy(), data.test.labels[:100])
    assert set(np.unique(data.test.labels)) == set(range(10))
    # Together the two splits hold each of sklearn's digits once.
    from sklearn.datasets import load_digits

    train_labels = torch.cat([b.labels for b in data.train.epoch(seed=0, epoch=0,
                                                                 batch_size=512)])
    counts = np.bincount(train_labels.numpy(), minlength=10) + np.bincount(data.test.labels,
                                                                           minlength=10)
    assert np.array_equal(counts, np.bincount(load_digits().target, minlength=10))


def test_test_subset_keeps_the_split_order() -> None:
    full = load_dataset(dataset_spec("digits"), device=CPU)
    sub = load_dataset(dataset_spec("digits", test_subset=50, train_subset=200), device=CPU)
    assert (sub.train.num_samples, sub.test.num_samples) == (200, 50)
    chosen = subset_indices(360, 50)
    assert np.array_equal(sub.test.labels, full.test.labels[chosen])


@pytest.mark.skipif(not DEBIAN_FASHION_MNIST.is_dir(),
                    reason="Debian package dataset-fashion-mnist is not installed")
def test_fashion_mnist_from_the_debian_folder(tmp_path: Path) -> None:
    spec = dataset_spec("fashion_mnist", train_subset=300, test_subset=200)
    check_dataset_available(spec, cache_dir=tmp_path)
    data = load_dataset(spec, device=CPU, cache_dir=tmp_path)
    assert (data.train.num_samples, data.test.num_samples) == (300, 200)
    assert data.train.num_views == 162  # 4 px padding at 28 px, with flips
    assert (tmp_path / "fashion_mnist" / "FashionMNIST" / "raw" / "t10k-images-idx3-ubyte").is_file()
    assert str(DEBIAN_FASHION_MNIST) in data.description
    batch = next(data.train.epoch(seed=0, epoch=0, batch_size=64))
    assert batch.inputs.shape == (64, 1, 28, 28)
    assert batch.view is not None
    assert torch.equal(data.train.render(batch.index, batch.view), batch.inputs)
    assert set(np.unique(data.test.labels)) <= set(range(10))


@pytest.mark.skipif(not DEBIAN_FASHION_MNIST.is_dir(),
                    reason="Debian package dataset-fashion-mnist is not installed")
def test_fashion_mnist_read_again_comes_from_the_cached_arrays_torchvision_read(
        tmp_path: Path) -> None:
    from kdspec.runtime.data.classification_readers import FASHION_ARRAYS, read_fashion_mnist

    spec = dataset_spec("fashion_mnist")
    first = read_fashion_mnist(spec, tmp_path)  # torchvision's IDX reader
    cache = tmp_path / "fashion_mnist" / FASHION_ARRAYS
    assert cache.is_file()
    again = read_fashion_mnist(spec, tmp_path)
    for name in ("train_images", "train_labels", "test_images", "test_labels"):
        a, b = getattr(first, name), getattr(again, name)
        assert a.dtype == b.dtype and np.array_equal(a, b), name
    assert again.train_images.shape == (60_000, 1, 28, 28) and again.source == first.source
    cache.write_bytes(b"not an npz")  # a damaged cache is read past, and rewritten
    assert np.array_equal(read_fashion_mnist(spec, tmp_path).test_labels, first.test_labels)
    with np.load(cache) as arrays:
        assert "stamp" in arrays


def test_missing_fashion_mnist_root_names_the_path(tmp_path: Path) -> None:
    spec = dataset_spec("fashion_mnist", root=str(tmp_path / "nowhere"))
    with pytest.raises(DataError, match=r"nowhere.*apt-get install dataset-fashion-mnist.*download = true"):
        check_dataset_available(spec)
    with pytest.raises(DataError, match="nowhere"):
        load_dataset(spec, device=CPU)


def test_random_resized_crop_is_refused_for_in_memory_datasets() -> None:
    with pytest.raises(DataError, match="augment 'imagenet'.*only the imagenet dataset"):
        load_dataset(dataset_spec("digits", augment="imagenet"), device=CPU)


def test_eval_batches_cover_the_split_in_order_with_a_partial_last_batch() -> None:
    data = load_dataset(dataset_spec("digits", test_subset=70), device=CPU)
    batches = list(data.test.batches(batch_size=32))
    assert [len(b.index) for b in batches] == [32, 32, 6]
    assert torch.equal(torch.cat([b.index for b in batches]), torch.arange(70))
    assert np.array_equal(torch.cat([b.labels for b in batches]).numpy(), data.test.labels)


def test_plan_mismatches_are_data_errors() -> None:
    with pytest.raises(DataError, match="no sensitive attribute Male"):
        load_dataset(dataset_spec("digits", sensitive=("Male",)), device=CPU)
    with pytest.raises(DataError, match="label 9 found but the plan has 5 classes"):
        load_dataset(dataset_spec("digits", num_classes=5, class_names=tuple("abcde")),
                     device=CPU)


@pytest.mark.parametrize(("n", "batch_size", "processes"), [(50, 16, 2), (50, 8, 3), (64, 16, 2)])
def test_shards_are_the_epochs_own_batches_and_only_those_are_rendered(
        n: int, batch_size: int, processes: int) -> None:
    source = random_train_source(n=n)
    whole = list(source.epoch(seed=5, epoch=3, batch_size=batch_size))
    rendered: list[int] = []

    class CountingAugmenter:  # the source's augmenter, recording what it renders
        def __init__(self, inner):  # type: ignore[no-untyped-def]
            self.inner, self.num_views = inner, inner.num_views

        def render(self, images: torch.Tensor, view: torch.Tensor) -> torch.Tensor:
            rendered.append(images.shape[0])
            return self.inner.render(images, view)

    source.augmenter = CountingAugmenter(source.augmenter)  # type: ignore[assignment]
    usable = (len(whole) // processes) * processes
    seen: list[int] = []
    for k in range(processes):
        rendered.clear()
        shard = list(source.epoch(seed=5, epoch=3, batch_size=batch_size, share=(k, processes)))
        assert len(shard) == usable // processes  # the same step count in every process
        assert len(rendered) == len(shard)  # the other processes' batches were never built
        for j, batch in enumerate(shard):
            reference = whole[k + j * processes]
            assert torch.equal(batch.index, reference.index)
            assert torch.equal(batch.inputs, reference.inputs)
            seen += batch.index.tolist()
    # The union is the epoch (less at most processes - 1 trailing batches), each sample once.
    expected = torch.cat([b.index for b in whole[:usable]]).tolist()
    assert sorted(seen) == sorted(expected) and len(seen) == len(set(seen))


def test_a_share_outside_the_processes_is_refused() -> None:
    from kdspec.runtime.interfaces import shard_batches

    assert list(shard_batches(50, 16, (1, 2))) == [1, 3]
    for bad in ((2, 2), (-1, 2), (0, 0)):
        with pytest.raises(ValueError, match="share must be"):
            shard_batches(50, 16, bad)
