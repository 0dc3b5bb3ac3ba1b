"""Training-step speed of one model under each numeric/layout option, on this machine.

For each architecture, one optimisation step (SGD, cross-entropy; the distilled step adds a
Hinton loss on fixed teacher logits) on a fixed batch, timed as:

- ``fp32``: the plain step (what ``precision = fp32`` runs);
- ``fp32 + channels_last``: the model and batch in NHWC;
- ``bf16``: the forward under ``torch.autocast(dtype=bfloat16)``;
- ``bf16 + channels_last``;
- ``+ compile``: the same with the model wrapped in ``torch.compile`` (first compile not
  counted; its cost is printed separately).

Variants alternate over rounds and each keeps its median, so a burst from another process hits
them all. The ratio column is against ``fp32`` in the same invocation. This is what decided
``precision = auto`` and ``compile = auto`` (``kdspec.runtime.precision``); rerun it on a new
machine to see whether the same choice holds there.

    .venv/bin/python bench/bench_precision.py                         # Fashion-shaped, 1x28x28
    .venv/bin/python bench/bench_precision.py --channels 3 --image-size 32 --archs resnet56
    .venv/bin/python bench/bench_precision.py --no-compile --json precision.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import cast

import torch
from torch import nn

from kdspec.plan import KDLoss
from kdspec.runtime.losses import distillation_loss, hard_label_loss
from kdspec.runtime.models import build_model
from kdspec.runtime.precision import cpu_bf16_support

LOSS = KDLoss(hard_weight=0.1, soft_weight=0.9, convention="alpha = 0.9 on the soft term")


@dataclass(frozen=True)
class Variant:
    name: str
    bf16: bool
    channels_last: bool
    compile: bool


VARIANTS = (
    Variant("fp32", False, False, False),
    Variant("fp32 + channels_last", False, True, False),
    Variant("bf16", True, False, False),
    Variant("bf16 + channels_last", True, True, False),
    Variant("fp32 + compile", False, False, True),
    Variant("bf16 + compile", True, False, True),
    Variant("bf16 + channels_last + compile", True, True, True),
)


@dataclass(frozen=True)
class Row:
    arch: str
    step: str  # "train" (cross-entropy) or "distill" (Hinton loss on fixed teacher logits)
    variant: str
    img_s: float
    ratio: float  # over fp32 of the same arch and step
    compile_s: float | None  # first compiled step, for compiled variants


def make_step(arch: str, variant: Variant, *, distill: bool, images: torch.Tensor,
              labels: torch.Tensor, teacher: torch.Tensor, device: torch.device
              ) -> Callable[[], None]:
    torch.manual_seed(0)
    model: nn.Module = build_model(arch, in_channels=images.shape[1], image_size=images.shape[2],
                                   num_classes=teacher.shape[1]).to(device).train()
    batch = images
    if variant.channels_last:
        model = model.to(memory_format=torch.channels_last)
        batch = images.contiguous(memory_format=torch.channels_last)
    forward = cast(nn.Module, torch.compile(model)) if variant.compile else model
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)

    def autocast() -> contextlib.AbstractContextManager[object]:
        if variant.bf16:
            return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with autocast():
            logits = forward(batch)
        if distill:
            loss = distillation_loss(logits, teacher, labels, temperature=4.0, loss=LOSS)
        else:
            loss = hard_label_loss(logits, labels)
        loss.backward()
        optimizer.step()

    return step


def seconds_per_step(step: Callable[[], None], steps: int, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (time.perf_counter() - start) / steps


def measure(arch: str, *, distill: bool, variants: list[Variant], batch_size: int,
            channels: int, image_size: int, steps: int, rounds: int,
            device: torch.device) -> list[Row]:
    gen = torch.Generator().manual_seed(0)
    images = torch.randn(batch_size, channels, image_size, image_size, generator=gen).to(device)
    labels = torch.randint(0, 10, (batch_size,), generator=gen).to(device)
    teacher = torch.randn(batch_size, 10, generator=gen).to(device)
    steps_of: dict[str, Callable[[], None]] = {}
    compile_s: dict[str, float | None] = {}
    for variant in variants:
        step = make_step(arch, variant, distill=distill, images=images, labels=labels,
                         teacher=teacher, device=device)
        start = time.perf_counter()
        step()  # warm-up (and, compiled, the compile itself)
        step()
        compile_s[variant.name] = time.perf_counter() - start if variant.compile else None
        steps_of[variant.name] = step
    times: dict[str, list[float]] = {v.name: [] for v in variants}
    for _ in range(rounds):
        for variant in variants:
            times[variant.name].append(seconds_per_step(steps_of[variant.name], steps, device))
    base = statistics.median(times["fp32"])
    kind = "distill" if distill else "train"
    return [Row(arch, kind, v.name, batch_size / statistics.median(times[v.name]),
                base / statistics.median(times[v.name]), compile_s[v.name]) for v in variants]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", nargs="+", default=["resnet20", "lenet5"])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--image-size", type=int, default=28)
    parser.add_argument("--channels", type=int, default=1)
    parser.add_argument("--steps", type=int, default=4, help="timed steps per round")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds (median)")
    parser.add_argument("--no-compile", action="store_true", help="skip the compiled variants")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", dest="json_out", help="also write the rows here")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    variants = [v for v in VARIANTS if not (args.no_compile and v.compile)]
    rows: list[Row] = []
    for arch in args.archs:
        for distill in (False, True):
            rows += measure(arch, distill=distill, variants=variants,
                            batch_size=args.batch_size, channels=args.channels,
                            image_size=args.image_size, steps=args.steps, rounds=args.rounds,
                            device=device)
    print(f"device {device}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"CPU bf16 support: {cpu_bf16_support()}, batch {args.batch_size}, {args.channels}x"
          f"{args.image_size}x{args.image_size}, median of {args.rounds} rounds of {args.steps} "
          f"steps, load average {os.getloadavg()[0]:.2f}")
    print(f"{'arch':<10}{'step':<9}{'variant':<32}{'img/s':>9}{'vs fp32':>9}{'compile s':>11}")
    for r in rows:
        first = f"{r.compile_s:.1f}" if r.compile_s is not None else "-"
        print(f"{r.arch:<10}{r.step:<9}{r.variant:<32}{r.img_s:>9.0f}{r.ratio:>8.2f}x"
              f"{first:>11}")
    if args.json_out:
        with open(args.json_out, "w") as fh:
            json.dump({"device": str(device), "torch": torch.__version__,
                       "rows": [asdict(r) for r in rows]}, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
