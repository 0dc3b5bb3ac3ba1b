"""The streaming (DataLoader) path, and its agreement with the in-memory tensor path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats
from torch.utils.data import Dataset
from torchvision.transforms.v2 import functional as TF

from kdspec.runtime.data import load_dataset
from kdspec.runtime.data.augment import ViewAugmenter
from kdspec.runtime.data.imagenet import load_imagenet
from kdspec.runtime.data.in_memory import InMemoryTrainSource
from kdspec.runtime.data.streaming import StreamingTrainSource, train_transform
from tests.factories import dataset_spec
from tests.runtime.data_fixtures import write_image_folder

CPU = torch.device("cpu")
SIZE, PAD = 32, 4
IDENTITY_STD = (1 / 255,) * 3  # normalise with mean 0 and std 1/255: pixels come back as 0..255


def coordinate_image() -> torch.Tensor:
    """uint8 [3, 32, 32]: channel 0 = row + 1, channel 1 = column + 1, channel 2 = 7."""
    rows = torch.arange(SIZE)[:, None].expand(SIZE, SIZE) + 1
    cols = torch.arange(SIZE)[None, :].expand(SIZE, SIZE) + 1
    return torch.stack([rows, cols, torch.full_like(rows, 7)]).to(torch.uint8)


class RepeatedImage(Dataset[tuple[torch.Tensor, int]]):
    def __init__(self, image: torch.Tensor, count: int) -> None:
        self.image, self.count = image, count

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.image, 0


def crop_and_flip_of(images: torch.Tensor) -> np.ndarray:
    """(dy, dx, flip) per image ``[B, 3, 32, 32]`` of coordinate images; dy, dx in 0..2*PAD."""
    values = images.round().long()
    flip = (values[:, 1, 16, 16] < values[:, 1, 16, 15]).long()
    dy = values[:, 0, 16, 16] - (16 - PAD + 1)
    dx = values[:, 1, 16, 16] - (16 - PAD + 1) + flip  # a flipped crop shows column dx + 11
    return torch.stack([dy, dx, flip], dim=1).numpy()


def tensor_path_outcomes(count: int) -> np.ndarray:
    images = coordinate_image()[None].expand(count, 3, SIZE, SIZE).contiguous()
    augmenter = ViewAugmenter("crop_flip", SIZE, torch.zeros(1, 3, 1, 1),
                              torch.tensor(IDENTITY_STD).view(1, 3, 1, 1))
    source = InMemoryTrainSource(images, torch.zeros(count), augmenter, CPU)
    return np.concatenate([crop_and_flip_of(b.inputs)
                           for b in source.epoch(seed=1, epoch=0, batch_size=512)])


def loader_path_outcomes(count: int) -> np.ndarray:
    transform = train_transform("crop_flip", SIZE, (0.0, 0.0, 0.0), IDENTITY_STD)
    source = StreamingTrainSource(RepeatedImage(coordinate_image(), count), np.arange(count),
                                  transform, CPU)
    return np.concatenate([crop_and_flip_of(b.inputs)
                           for b in source.epoch(seed=1, epoch=0, batch_size=512)])


def test_tensor_views_equal_torchvision_pad_crop_flip() -> None:
    image = torch.randint(0, 256, (3, SIZE, SIZE), dtype=torch.uint8,
                          generator=torch.Generator().manual_seed(0))
    augmenter = ViewAugmenter("crop_flip", SIZE, torch.zeros(1, 3, 1, 1),
                              torch.tensor(IDENTITY_STD).view(1, 3, 1, 1))
    padded = TF.pad(image, [PAD])
    for dy, dx, flip in [(0, 0, 0), (8, 8, 1), (3, 5, 0), (6, 1, 1), (4, 4, 0)]:
        expected = TF.crop(padded, dy, dx, SIZE, SIZE)
        if flip:
            expected = TF.horizontal_flip(expected)
        view = augmenter.encode(torch.tensor([dy]), torch.tensor([dx]), torch.tensor([flip]))
        rendered = augmenter.render(image[None], view)[0].round().to(torch.uint8)
        assert torch.equal(rendered, expected), (dy, dx, flip)


def test_both_paths_draw_crops_and_flips_from_the_same_distribution() -> None:
    count = 1620  # ten per crop_flip view on average
    tensor_path, loader_path = tensor_path_outcomes(count), loader_path_outcomes(count)
    for outcomes in (tensor_path, loader_path):
        assert outcomes[:, :2].min() >= 0 and outcomes[:, :2].max() <= 2 * PAD
        for column, levels in ((0, 2 * PAD + 1), (1, 2 * PAD + 1), (2, 2)):
            observed = np.bincount(outcomes[:, column], minlength=levels)
            assert stats.chisquare(observed).pvalue > 1e-3
    for column, levels in ((0, 2 * PAD + 1), (1, 2 * PAD + 1), (2, 2)):
        table = np.stack([np.bincount(p[:, column], minlength=levels)
                          for p in (tensor_path, loader_path)])
        assert stats.chi2_contingency(table).pvalue > 1e-3
    assert abs(tensor_path[:, 2].mean() - 0.5) < 0.05
    assert abs(loader_path[:, 2].mean() - 0.5) < 0.05


@pytest.fixture()
def image_folder_root(tmp_path: Path) -> Path:
    classes = ("n01", "n02", "n03")
    write_image_folder(tmp_path / "train", classes, per_class=4, seed=0)
    write_image_folder(tmp_path / "val", classes, per_class=2, seed=1)
    return tmp_path


def imagenet_spec(root: Path, **overrides: object):
    return dataset_spec("imagenet", root=str(root), image_size=32, num_classes=3,
                        class_names=("a", "b", "c"), **overrides)


def test_image_folder_streams_seeded_batches(image_folder_root: Path) -> None:
    data = load_imagenet(imagenet_spec(image_folder_root), device=CPU, num_workers=0)
    assert (data.train.num_samples, data.test.num_samples) == (12, 6)
    assert data.train.num_views is None
    first = list(data.train.epoch(seed=3, epoch=0, batch_size=5))
    assert [len(b.index) for b in first] == [5, 5, 2]
    assert all(b.view is None and b.inputs.shape[1:] == (3, 32, 32) for b in first)
    torch.manual_seed(99)
    again = list(data.train.epoch(seed=3, epoch=0, batch_size=5))
    other = list(data.train.epoch(seed=4, epoch=0, batch_size=5))
    assert all(torch.equal(a.inputs, b.inputs) for a, b in zip(first, again, strict=True))
    assert not torch.equal(first[0].inputs, other[0].inputs)
    assert sorted(torch.cat([b.index for b in first]).tolist()) == list(range(12))
    with pytest.raises(NotImplementedError, match="teacher-logit cache"):
        data.train.render(first[0].index, torch.zeros(5, dtype=torch.int64))
    test_batches = list(data.test.batches(batch_size=4))
    assert torch.equal(torch.cat([b.index for b in test_batches]), torch.arange(6))
    assert np.array_equal(torch.cat([b.labels for b in test_batches]).numpy(),
                          data.test.labels)
    assert data.test.labels.tolist() == [0, 0, 1, 1, 2, 2]


def test_worker_processes_give_the_same_batches(image_folder_root: Path) -> None:
    spec = imagenet_spec(image_folder_root, train_subset=6)
    in_process = load_imagenet(spec, device=CPU, num_workers=0)
    with_workers = load_imagenet(spec, device=CPU, num_workers=2)
    a = list(in_process.train.epoch(seed=0, epoch=1, batch_size=4))
    b = list(with_workers.train.epoch(seed=0, epoch=1, batch_size=4))
    assert all(torch.equal(x.inputs, y.inputs) and torch.equal(x.index, y.index)
               for x, y in zip(a, b, strict=True))


def test_image_folder_class_count_must_match_the_plan(image_folder_root: Path) -> None:
    from kdspec.errors import DataError

    spec = dataset_spec("imagenet", root=str(image_folder_root), image_size=32)
    with pytest.raises(DataError, match="3 class folders but the plan expects 1000"):
        load_dataset(spec, device=CPU)


class CountingFolder(torch.utils.data.Dataset):
    """A dataset that records which samples were loaded."""

    def __init__(self, base) -> None:  # type: ignore[no-untyped-def]
        self.base, self.loaded = base, []

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int):  # type: ignore[no-untyped-def]
        self.loaded.append(index)
        return self.base[index]


def test_a_shard_loads_only_its_own_batches(image_folder_root: Path) -> None:
    data = load_imagenet(imagenet_spec(image_folder_root), device=CPU, num_workers=0)
    whole = list(data.train.epoch(seed=2, epoch=1, batch_size=3))  # 12 samples: 4 batches
    counting = CountingFolder(data.train.base)
    data.train.base = counting
    seen = []
    for k in range(2):
        counting.loaded.clear()
        shard = list(data.train.epoch(seed=2, epoch=1, batch_size=3, share=(k, 2)))
        assert len(shard) == 2 and len(counting.loaded) == 6  # half the epoch decoded
        for j, batch in enumerate(shard):
            assert torch.equal(batch.index, whole[k + 2 * j].index)
            assert torch.equal(batch.inputs, whole[k + 2 * j].inputs)
            seen += batch.index.tolist()
    assert sorted(seen) == list(range(12))
