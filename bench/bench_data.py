"""Images per second delivered by kdspec's in-memory tensor path vs a per-sample DataLoader.

The DataLoader path is the usual KD-repository way: a dataset returning PIL images,
``RandomCrop(32, padding=4) + RandomHorizontalFlip + ToTensor + Normalize`` per sample, batched
by a ``DataLoader`` with 0 and 2 worker processes. Both deliver the same augmentation (crop with
4 px zero padding and flip) of a CIFAR-shaped uint8 dataset of random images.

    .venv/bin/python bench/bench_data.py [--images 10000] [--batch-size 128] [--epochs 2]
                                         [--threads N] [--device cuda]

On a shared CPU, torch's intra-op threads wait on each other when another process holds a core:
compare ``--threads 1`` with the default.
"""

from __future__ import annotations

import argparse
import platform
import time
from collections.abc import Callable, Iterable

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from kdspec.runtime.data.augment import NORMALIZATION, make_augmenter
from kdspec.runtime.data.in_memory import InMemoryTrainSource


class PilImages(Dataset[tuple[torch.Tensor, int]]):
    """A CIFAR-like dataset: HWC uint8 array -> PIL image -> per-sample transform."""

    def __init__(self, images_hwc: np.ndarray, labels: np.ndarray,
                 transform: Callable[[Image.Image], torch.Tensor]) -> None:
        self.images, self.labels, self.transform = images_hwc, labels, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.transform(Image.fromarray(self.images[index])), int(self.labels[index])


def images_per_second(batches: Callable[[int], Iterable[object]], total: int,
                      epochs: int) -> float:
    """Images delivered per second over ``epochs`` full passes (after one warm-up batch)."""
    next(iter(batches(-1)))
    start = time.perf_counter()
    for epoch in range(epochs):
        for _ in batches(epoch):
            pass
    return total * epochs / (time.perf_counter() - start)


def loader_epochs(loader: DataLoader[tuple[torch.Tensor, int]]) -> Callable[[int], Iterable[object]]:
    """Epoch ``e`` of a DataLoader (it reshuffles by itself)."""
    def epoch(_: int) -> Iterable[object]:
        return loader
    return epoch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--device", default="cpu", help="device of the in-memory path")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (args.images, 3, 32, 32), dtype=np.uint8)
    labels = rng.integers(0, 10, args.images)
    device = torch.device(args.device)
    results: list[tuple[str, float]] = []

    augmenter = make_augmenter("cifar10", "crop_flip", 32, 3, device)
    source = InMemoryTrainSource(images, labels, augmenter, device)
    def tensor_epoch(epoch: int) -> Iterable[object]:
        for batch in source.epoch(seed=0, epoch=epoch, batch_size=args.batch_size):
            if device.type == "cuda":
                torch.cuda.synchronize()
            yield batch

    results.append((f"in-memory tensor path (kdspec, {device.type})",
                    images_per_second(tensor_epoch, args.images, args.epochs)))

    mean, std = NORMALIZATION["cifar10"]
    transform = transforms.Compose([
        transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip(),
        transforms.ToTensor(), transforms.Normalize(mean, std),
    ])
    dataset = PilImages(np.ascontiguousarray(images.transpose(0, 2, 3, 1)), labels, transform)
    for workers in (0, 2):
        loader = DataLoader(dataset, batch_size=args.batch_size, shuffle=True,
                            num_workers=workers, persistent_workers=workers > 0)
        results.append((f"DataLoader, per-sample transforms, {workers} workers",
                        images_per_second(loader_epochs(loader), args.images, args.epochs)))

    print(f"{args.images} random 3x32x32 uint8 images, batch {args.batch_size}, crop(4)+flip, "
          f"{args.epochs} epochs; torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{platform.processor() or platform.machine()}")
    fastest_loader = max(rate for name, rate in results if name.startswith("DataLoader"))
    print(f"{'path':52s} {'images/s':>10s} {'vs best DataLoader':>19s}")
    for name, rate in results:
        print(f"{name:52s} {rate:10.0f} {rate / fastest_loader:18.1f}x")


if __name__ == "__main__":
    main()
