"""A plain PyTorch KD study, written the way the usual knowledge-distillation repositories do it.

The reference the benchmark compares ``kdspec run`` against: a torchvision dataset with
per-sample PIL transforms (RandomCrop with padding / RandomHorizontalFlip / ToTensor /
Normalize, as the study's augmentation preset says) behind a DataLoader, fp32, one training at
a time: every teacher, then every non-distilled student (NDS), then every distilled student (DS)
with its own teacher forward in every step, evaluating on the test split after every epoch and
reading the loss with ``.item()`` per batch, as those repositories do.

It trains exactly the study's runs (same architectures from ``kdspec.runtime.models``, recipes,
epochs, seeds, temperatures, loss weights and train/test subsets), so final accuracies must agree
with kdspec's within seed noise. Timed phases: teacher training, NDS, DS (with the teacher
forward inside DS steps timed apart), data loading (time blocked on the DataLoader plus the copy
to the device) and evaluation.
"""

from __future__ import annotations

import contextlib
import gzip
import shutil
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset
from torchvision import datasets, transforms

from kdspec.plan import DatasetSpec, Plan, Precision, Recipe, Role, Run, Study
from kdspec.runtime.data import load_dataset, read_arrays
from kdspec.runtime.data.augment import NORMALIZATION, crop_padding
from kdspec.runtime.data.in_memory import subset_indices
from kdspec.runtime.data.locations import DEBIAN_FASHION_MNIST
from kdspec.runtime.models import build_model
from kdspec.runtime.optimization import build_optimizer, build_scheduler
from kdspec.runtime.precision import autocast_for

PHASES = ("teachers", "nds", "ds")
PHASE_ROLES: tuple[Role, ...] = ("teacher", "student", "distilled")


@dataclass
class Timers:
    """Seconds spent per named activity (data, teacher_forward, evaluation, ...)."""

    seconds: dict[str, float] = field(default_factory=dict)
    device: torch.device = torch.device("cpu")

    @contextlib.contextmanager
    def measure(self, name: str) -> Iterator[None]:
        """Add the wall time of the block to ``name`` (after the device finished its work)."""
        start = time.perf_counter()
        try:
            yield
        finally:
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start


@dataclass(frozen=True)
class BaselineRun:
    """One trained model of the baseline."""

    role: str
    seed: int
    temperature: float | None
    test_acc: float
    train_images: int  # images through the student's training steps (epochs x N)


@dataclass
class BaselineResult:
    """Every run's final accuracy and where the time went."""

    runs: list[BaselineRun]
    phase_seconds: dict[str, float]  # teachers / nds / ds: wall time of each phase
    activity_seconds: dict[str, dict[str, float]]  # phase -> data / teacher_forward / evaluation


class ArrayImageDataset(Dataset[tuple[torch.Tensor, int]]):
    """uint8 ``[N, C, H, W]`` arrays served as PIL images through per-sample transforms, like a
    repository's own Dataset class for data torchvision does not ship."""

    def __init__(self, images: np.ndarray, labels: np.ndarray,
                 transform: Callable[[Image.Image], torch.Tensor]):
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        pixels = self.images[i]
        image = (Image.fromarray(pixels[0], mode="L") if pixels.shape[0] == 1
                 else Image.fromarray(np.ascontiguousarray(pixels.transpose(1, 2, 0)), "RGB"))
        return self.transform(image), int(self.labels[i])


def image_transforms(spec: DatasetSpec, *, train: bool) -> transforms.Compose:
    """The per-sample transform pipeline of the study's augmentation preset."""
    mean, std = NORMALIZATION[spec.name]
    steps: list[Callable[..., object]] = []
    if train and spec.augment in ("crop", "crop_flip"):
        steps.append(transforms.RandomCrop(spec.image_size, padding=crop_padding(spec.image_size)))
    if train and spec.augment in ("flip", "crop_flip"):
        steps.append(transforms.RandomHorizontalFlip())
    steps += [transforms.ToTensor(), transforms.Normalize(mean, std)]
    return transforms.Compose(steps)


def unpack_debian_fashion_mnist(workdir: Path) -> Path:
    """Gunzip Debian's Fashion-MNIST IDX files where torchvision looks for them; the root."""
    raw = workdir / "FashionMNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for gz in DEBIAN_FASHION_MNIST.glob("*.gz"):
        target = raw / gz.name.removesuffix(".gz")
        if not target.exists():
            with gzip.open(gz, "rb") as src, target.open("wb") as dst:
                shutil.copyfileobj(src, dst)
    return workdir


def make_datasets(spec: DatasetSpec, workdir: Path) -> tuple[Dataset[object], Dataset[object]]:
    """(train, test) with the study's subsets: torchvision's classes where it has one."""
    train_tf, test_tf = image_transforms(spec, train=True), image_transforms(spec, train=False)
    train: Dataset[object]
    test: Dataset[object]
    if spec.name == "fashion_mnist" and spec.root is None:
        root = str(unpack_debian_fashion_mnist(workdir))
        train = datasets.FashionMNIST(root, train=True, transform=train_tf)
        test = datasets.FashionMNIST(root, train=False, transform=test_tf)
    elif spec.name in ("cifar10", "cifar100") and spec.root is not None:
        cls = datasets.CIFAR10 if spec.name == "cifar10" else datasets.CIFAR100
        train = cls(spec.root, train=True, transform=train_tf, download=spec.download)
        test = cls(spec.root, train=False, transform=test_tf, download=spec.download)
    else:
        arrays = read_arrays(spec, workdir)
        train = ArrayImageDataset(arrays.train_images, arrays.train_labels, train_tf)
        test = ArrayImageDataset(arrays.test_images, arrays.test_labels, test_tf)
    train_n, test_n = len(train), len(test)  # type: ignore[arg-type]
    return (Subset(train, subset_indices(train_n, spec.train_subset).tolist()),
            Subset(test, subset_indices(test_n, spec.test_subset).tolist()))


def kd_loss(student: torch.Tensor, teacher: torch.Tensor, labels: torch.Tensor, *,
            temperature: float, hard_weight: float, soft_weight: float) -> torch.Tensor:
    """Hinton's loss as KD repositories write it: ``hard * CE + soft * T^2 * KL(batchmean)``."""
    soft = F.kl_div(F.log_softmax(student / temperature, dim=1),
                    F.softmax(teacher / temperature, dim=1), reduction="batchmean")
    return hard_weight * F.cross_entropy(student, labels) + soft_weight * temperature**2 * soft


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, images: torch.Tensor,
               labels: torch.Tensor, *, teacher: nn.Module | None = None,
               run: Run | None = None, timers: Timers | None = None,
               precision: Precision = "fp32") -> float:
    """One SGD step; a distilled ``run`` runs ``teacher``'s forward on the same images first.
    ``precision``: the forwards under autocast (bf16/fp16), the loss in fp32.

    Returns the loss with ``.item()`` (the per-batch host sync those repositories all do).
    """
    if teacher is not None:
        assert run is not None and run.temperature is not None and run.loss is not None
        with timers.measure("teacher_forward") if timers else contextlib.nullcontext(), \
                torch.no_grad(), autocast_for(images.device, precision):
            teacher_logits = teacher(images).float()
        with autocast_for(images.device, precision):
            logits = model(images).float()
        loss = kd_loss(logits, teacher_logits, labels, temperature=run.temperature,
                       hard_weight=run.loss.hard_weight, soft_weight=run.loss.soft_weight)
    else:
        with autocast_for(images.device, precision):
            logits = model(images).float()
        loss = F.cross_entropy(logits, labels)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.item()


@torch.no_grad()
def evaluate(model: nn.Module, loader: Iterable[tuple[torch.Tensor, torch.Tensor]],
             device: torch.device, precision: Precision = "fp32") -> float:
    """Top-1 accuracy on the test batches."""
    model.eval()
    correct = total = 0
    for images, labels in loader:
        images, labels = images.to(device), labels.to(device)
        with autocast_for(device, precision):
            correct += int((model(images).argmax(1) == labels).sum())
        total += labels.numel()
    return correct / max(total, 1)


class InMemoryBatches:
    """kdspec's data path under the plain loop: the study's images as uint8 on the device,
    augmented there in whole batches (``kdspec.runtime.data``), so the fair comparison can
    separate kdspec's data path from the rest of its design."""

    def __init__(self, spec: DatasetSpec, device: torch.device, workdir: Path) -> None:
        self.data = load_dataset(spec, device=device, cache_dir=workdir / "cache")

    def epoch(self, *, seed: int, epoch: int, batch_size: int
              ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for batch in self.data.train.epoch(seed=seed, epoch=epoch, batch_size=batch_size):
            yield batch.inputs, batch.labels

    def test(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for batch in self.data.test.batches(batch_size=256):
            yield batch.inputs, batch.labels


def train_run(run: Run, spec: DatasetSpec, train_set: Dataset[object] | InMemoryBatches,
              test_loader: DataLoader[object] | None, *, device: torch.device,
              num_workers: int, timers: Timers, teacher: nn.Module | None = None,
              precision: Precision = "fp32") -> tuple[nn.Module, float]:
    """Train one run from scratch (seeded init, seeded DataLoader or kdspec's seeded in-memory
    batches); (model, final test acc)."""
    torch.manual_seed(run.seed)
    model = build_model(run.arch, in_channels=spec.channels, image_size=spec.image_size,
                        num_classes=spec.num_classes).to(device)
    recipe: Recipe = run.recipe
    # The runtime's own optimizer and per-epoch schedule, so the two ways cannot drift apart.
    optimizer = build_optimizer(model, recipe)
    scheduler = build_scheduler(optimizer, recipe)
    loader = None if isinstance(train_set, InMemoryBatches) else DataLoader(
        train_set, batch_size=recipe.batch_size, shuffle=True, num_workers=num_workers,
        pin_memory=device.type == "cuda", generator=torch.Generator().manual_seed(run.seed))
    if teacher is not None:
        teacher.eval()
    acc = 0.0
    for epoch in range(recipe.epochs):
        model.train()
        batches: Iterator[tuple[torch.Tensor, torch.Tensor]] = (
            iter(loader) if loader is not None else train_set.epoch(  # type: ignore[union-attr]
                seed=run.seed, epoch=epoch, batch_size=recipe.batch_size))
        while True:
            with timers.measure("data"):
                item = next(batches, None)
                if item is not None:
                    images, labels = item[0].to(device), item[1].to(device)
            if item is None:
                break
            train_step(model, optimizer, images, labels, teacher=teacher, run=run, timers=timers,
                       precision=precision)
        scheduler.step()
        with timers.measure("evaluation"):
            tests = test_loader if test_loader is not None else train_set.test()  # type: ignore[union-attr]
            acc = evaluate(model, tests, device, precision)
    return model, acc


def run_baseline(plan: Plan, study: Study, *, device: torch.device, workdir: Path,
                 num_workers: int = 2, log: Callable[[str], None] = print,
                 precision: Precision | dict[Role, Precision] = "fp32",
                 in_memory: bool = False) -> BaselineResult:
    """Train every run of ``study`` one at a time: teachers, then NDS, then DS. ``precision``
    and ``in_memory`` (kdspec's on-device data path instead of DataLoader + PIL transforms) are
    the fair-comparison variants of bench_distillation.py's ``--fair``."""
    spec = study.dataset
    train_set: Dataset[object] | InMemoryBatches
    test_loader: DataLoader[object] | None = None
    if in_memory:
        train_set = InMemoryBatches(spec, device, workdir)
    else:
        train_set, test_set = make_datasets(spec, workdir)
        test_loader = DataLoader(test_set, batch_size=256, num_workers=num_workers)
    results: list[BaselineRun] = []
    phase_seconds: dict[str, float] = {}
    activity: dict[str, dict[str, float]] = {}
    teachers: dict[int, nn.Module] = {}
    for phase, role in zip(PHASES, PHASE_ROLES, strict=True):
        timers = Timers(device=device)
        start = time.perf_counter()
        for run in plan.runs_of(study, role):
            model, acc = train_run(run, spec, train_set, test_loader, device=device,
                                   num_workers=num_workers, timers=timers,
                                   teacher=teachers[run.seed] if role == "distilled" else None,
                                   precision=precision if isinstance(precision, str)
                                   else precision[role])
            if role == "teacher":
                teachers[run.seed] = model
            size = (train_set.data.train.num_samples if isinstance(train_set, InMemoryBatches)
                    else len(train_set))  # type: ignore[arg-type]
            results.append(BaselineRun(role, run.seed, run.temperature, acc,
                                       run.recipe.epochs * size))
            label = f"T={run.temperature:g} " if run.temperature is not None else ""
            log(f"baseline {role:<9} seed {run.seed} {label}test_acc {acc:.4f}")
        phase_seconds[phase] = time.perf_counter() - start
        activity[phase] = dict(timers.seconds)
    return BaselineResult(results, phase_seconds, activity)
