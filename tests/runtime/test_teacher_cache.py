"""The teacher-logit cache gives the live forward's logits, and "auto" caches only when it pays."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
import torch
from torch import nn

from kdspec.plan import TeacherCacheMode
from kdspec.runtime.interfaces import Batch, TeacherSignal, shard_batches
from kdspec.runtime.teacher_cache import (
    ERR_BATCH_WITHOUT_VIEW,
    ERR_NO_VIEWS,
    CachedTeacher,
    CachePolicy,
    TeacherCacheEstimate,
    TeacherDemand,
    build_teacher_signal,
    compute_teacher_logit_table,
    estimate_teacher_cache,
)

GiB = 1024**3


class CropFlipSource:
    """A small real TrainSource: uint8 images, crop with ``pad``-px padding and flip as views.

    View ``v`` encodes ``flip = v // (2p+1)^2``, offset ``(dy, dx) = divmod(v % (2p+1)^2, 2p+1)``.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, pad: int = 2):
        self.images, self.labels, self.pad = images, labels, pad
        self.num_samples = images.shape[0]
        self.num_views: int | None = 2 * (2 * pad + 1) ** 2

    def render(self, index: torch.Tensor, view: torch.Tensor) -> torch.Tensor:
        side = 2 * self.pad + 1
        size = self.images.shape[-1]
        padded = nn.functional.pad(self.images[index].float() / 255.0, [self.pad] * 4)
        offsets = view % (side * side)
        out = torch.stack([
            padded[i, :, dy:dy + size, dx:dx + size]
            for i, (dy, dx) in enumerate(zip((offsets // side).tolist(), (offsets % side).tolist(),
                                             strict=True))
        ])
        flip = (view // (side * side)).bool()
        out[flip] = out[flip].flip(-1)
        return (out - 0.5) / 0.25

    def epoch(self, *, seed: int, epoch: int, batch_size: int,
              share: tuple[int, int] = (0, 1)) -> Iterator[Batch]:
        gen = torch.Generator().manual_seed(seed * 1000 + epoch)
        order = torch.randperm(self.num_samples, generator=gen)
        assert self.num_views is not None
        views = torch.randint(self.num_views, (self.num_samples,), generator=gen)
        for number in shard_batches(self.num_samples, batch_size, share):
            start = number * batch_size
            index = order[start:start + batch_size]
            view = views[start:start + batch_size]
            yield Batch(self.render(index, view), self.labels[index], index, view)


class LiveForward:
    """The reference: the teacher's forward on every batch, eval mode, no grad."""

    mode = "off"

    def __init__(self, teacher: nn.Module):
        self.teacher = teacher

    @torch.no_grad()
    def logits(self, batch: Batch) -> torch.Tensor:
        self.teacher.eval()
        return self.teacher(batch.inputs).float()


def small_teacher(channels: int = 1, classes: int = 5) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(channels, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(32, classes),
    )


@pytest.fixture
def source() -> CropFlipSource:
    gen = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (24, 1, 8, 8), dtype=torch.uint8, generator=gen)
    return CropFlipSource(images, torch.randint(0, 5, (24,), generator=gen), pad=1)


def test_test_source_renders_its_own_batches(source: CropFlipSource) -> None:
    batch = next(source.epoch(seed=0, epoch=0, batch_size=7))
    assert batch.view is not None
    torch.testing.assert_close(source.render(batch.index, batch.view), batch.inputs,
                               rtol=1e-5, atol=1e-6)


def test_cached_logits_equal_live_forward_on_the_same_batches(source: CropFlipSource) -> None:
    teacher = small_teacher()
    # Train-mode BN statistics would differ; move them off their init so eval mode matters.
    teacher.train()
    teacher(torch.randn(16, 1, 8, 8))
    cached = CachedTeacher.compute(teacher, source, batch_size=13)
    live = LiveForward(teacher)
    assert cached.table.shape == (24, 18, 5)
    for epoch in range(2):
        for batch in source.epoch(seed=3, epoch=epoch, batch_size=5):
            # Same images, different batch composition: oneDNN may pick another kernel per batch
            # size, so equality holds to float32 rounding rather than bit for bit.
            torch.testing.assert_close(cached.logits(batch), live.logits(batch),
                                       rtol=1e-5, atol=1e-6)


def test_table_is_bitwise_the_forward_of_each_pair(source: CropFlipSource) -> None:
    teacher = small_teacher()
    table = compute_teacher_logit_table(teacher, source, batch_size=1000)
    index = torch.arange(24).repeat_interleave(18)
    view = torch.arange(18).repeat(24)
    with torch.no_grad():
        direct = teacher.eval()(source.render(index, view))
    assert torch.equal(table.view(-1, 5), direct)


def test_fill_restores_the_teachers_mode(source: CropFlipSource) -> None:
    teacher = small_teacher().train()
    compute_teacher_logit_table(teacher, source)
    assert teacher.training


def test_bf16_table_keeps_the_forward_dtype(source: CropFlipSource) -> None:
    teacher = small_teacher()
    cached = CachedTeacher.compute(
        teacher, source,
        autocast=lambda: torch.autocast(device_type="cpu", dtype=torch.bfloat16))
    assert cached.table.dtype == torch.bfloat16
    assert cached.nbytes == 24 * 18 * 5 * 2
    batch = next(source.epoch(seed=0, epoch=0, batch_size=8))
    assert cached.logits(batch).dtype == torch.float32


def test_batch_without_views_is_refused(source: CropFlipSource) -> None:
    cached = CachedTeacher(torch.zeros(24, 18, 5))
    batch = Batch(torch.zeros(2, 1, 8, 8), torch.zeros(2, dtype=torch.long),
                  torch.arange(2), None)
    with pytest.raises(ValueError, match=re.escape(ERR_BATCH_WITHOUT_VIEW)):
        cached.logits(batch)


@pytest.mark.parametrize(
    ("views", "epochs", "expected"),
    [
        (1, 1, True),  # no augmentation: a tie, the cache's large batches win
        (1, 2, True),
        (2, 1, False),  # flip only
        (2, 2, True),
        (162, 5, False),  # crop + flip, a few epochs: caching loses
        (162, 161, False),
        (162, 200, True),  # crop + flip over a full CIFAR recipe
        (None, 1000, False),  # continuous augmentation
    ],
)
def test_auto_rule_counts_forwards(views: int | None, epochs: int, expected: bool) -> None:
    assert estimate_teacher_cache(num_samples=50_000, num_views=views, epochs=epochs,
                                  num_classes=10, memory_budget_bytes=8 * GiB).use_cache is expected


def test_auto_rule_counts_one_forward_per_student_without_lockstep() -> None:
    shared, separate = (
        estimate_teacher_cache(num_samples=50_000, num_views=162, epochs=50, num_classes=10,
                               live_forwards_per_batch=k, memory_budget_bytes=8 * GiB)
        for k in (1, 4))
    assert (shared.use_cache, separate.use_cache) == (False, True)
    assert (shared.live_forwards, separate.live_forwards) == (50 * 50_000, 4 * 50 * 50_000)


def test_auto_rule_respects_the_memory_budget() -> None:
    # CIFAR-100 crop+flip over 200 epochs: 50,000 x 162 x 100 x 4 B = 3.24 GB.
    def estimate(budget: int, bytes_per_logit: int = 4) -> TeacherCacheEstimate:
        return estimate_teacher_cache(num_samples=50_000, num_views=162, epochs=200,
                                      num_classes=100, bytes_per_logit=bytes_per_logit,
                                      memory_budget_bytes=budget)

    fits, too_big = estimate(4 * GiB), estimate(2 * GiB)
    assert fits.table_bytes == 50_000 * 162 * 100 * 4
    assert fits.use_cache and not too_big.use_cache
    assert "exceeds the budget" in too_big.reason
    assert estimate(2 * GiB, bytes_per_logit=2).use_cache


def test_build_teacher_signal_modes(source: CropFlipSource) -> None:
    teacher = small_teacher()
    live = LiveForward(teacher)

    def signal(mode: TeacherCacheMode, epochs: int, group_size: int = 1) -> TeacherSignal:
        return build_teacher_signal(
            teacher, TeacherDemand(source, epochs=epochs, num_classes=5, group_size=group_size,
                                   shared_forward=group_size == 1),
            CachePolicy(mode=mode, memory_budget_bytes=GiB), live=live,
            device=torch.device("cpu"))

    off, on = signal("off", epochs=100), signal("on", epochs=1)
    auto_few, auto_many = signal("auto", epochs=5), signal("auto", epochs=18)
    unshared = signal("auto", epochs=5, group_size=4)
    assert off is live and auto_few is live
    assert (on.mode, auto_many.mode, unshared.mode) == ("on", "on", "on")


def test_cache_on_refuses_continuous_augmentation(source: CropFlipSource) -> None:
    source.num_views = None
    with pytest.raises(ValueError, match=re.escape(ERR_NO_VIEWS)):
        build_teacher_signal(small_teacher(), TeacherDemand(source, epochs=1, num_classes=5),
                             CachePolicy(mode="on"), live=LiveForward(small_teacher()),
                             device=torch.device("cpu"))
