"""Fused vs sequential training of K distilled students on one shared batch.

For each architecture: K students (one per temperature) take one distillation step per batch,
either as K separate models and optimisers (what the runtime does by default) or as one
``FusedStudents`` step (``torch.func`` stacking + vmap). The teacher logits are a fixed tensor:
only the students' steps are timed. Images/second counts student-images (K x batch per step).

    .venv/bin/python bench/bench_fusion.py                 # K=4, resnet20 + lenet5, 32x32, b128
    .venv/bin/python bench/bench_fusion.py --device cuda --steps 50 --json fusion.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable

import torch
from fused_students import FusedStudents, fused_distillation_step
from torch import nn

from kdspec.plan import KDLoss
from kdspec.runtime.losses import distillation_loss
from kdspec.runtime.models import build_model

LOSS = KDLoss(hard_weight=0.1, soft_weight=0.9, convention="alpha = 0.9 on the soft term")


def sgd(params: list[torch.Tensor]) -> torch.optim.Optimizer:
    return torch.optim.SGD(params, lr=0.05, momentum=0.9, weight_decay=5e-4)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(step: Callable[[], None], *, warmup: int, steps: int,
               device: torch.device) -> float:
    """Seconds per step after ``warmup`` untimed steps."""
    for _ in range(warmup):
        step()
    synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    synchronize(device)
    return (time.perf_counter() - start) / steps


def measure(arch: str, *, k: int, batch_size: int, image_size: int, channels: int,
            steps: int, warmup: int, rounds: int, device: torch.device) -> dict[str, float | str | int]:
    """Student-images/second of K sequential steps and of one fused step."""
    temperatures = [2.0 + 2.0 * i for i in range(k)]
    gen = torch.Generator().manual_seed(0)
    images = torch.randn(batch_size, channels, image_size, image_size, generator=gen).to(device)
    labels = torch.randint(0, 10, (batch_size,), generator=gen).to(device)
    teacher = torch.randn(batch_size, 10, generator=gen).to(device)

    def students() -> list[nn.Module]:
        return [build_model(arch, in_channels=channels, image_size=image_size,
                            num_classes=10).to(device).train() for _ in range(k)]

    separate = students()
    optimizers = [sgd(list(m.parameters())) for m in separate]

    def sequential_step() -> None:
        for model, opt, t in zip(separate, optimizers, temperatures, strict=True):
            opt.zero_grad(set_to_none=True)
            distillation_loss(model(images), teacher, labels, temperature=t,
                              loss=LOSS).backward()
            opt.step()

    fused = FusedStudents(students()).train()
    fused_opt = sgd(fused.parameters())

    def fused_step() -> None:
        fused_distillation_step(fused, fused_opt, images, labels, teacher,
                                temperatures=temperatures, loss=LOSS)

    # Alternate the two variants over several rounds and keep each one's median: on a shared
    # machine another process's burst then hits both variants instead of one.
    seq_rounds, fused_rounds = [], []
    for round_index in range(rounds):
        warm = warmup if round_index == 0 else 0
        seq_rounds.append(time_steps(sequential_step, warmup=warm, steps=steps, device=device))
        fused_rounds.append(time_steps(fused_step, warmup=warm, steps=steps, device=device))
    seq, fus = statistics.median(seq_rounds), statistics.median(fused_rounds)
    return {"arch": arch, "k": k, "batch_size": batch_size,
            "sequential_img_s": k * batch_size / seq, "fused_img_s": k * batch_size / fus,
            "fused_over_sequential": seq / fus}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", nargs="+", default=["resnet20", "lenet5"])
    parser.add_argument("--k", type=int, default=4, help="students per group")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--channels", type=int, default=3)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per round")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds (median)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", dest="json_out", help="also write the results here")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    rows = [measure(arch, k=args.k, batch_size=args.batch_size, image_size=args.image_size,
                    channels=args.channels, steps=args.steps, warmup=args.warmup, rounds=args.rounds,
                    device=device)
            for arch in args.archs]
    print(f"device {device}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"K={args.k}, batch {args.batch_size}, {args.channels}x{args.image_size}x"
          f"{args.image_size}, fp32, median of {args.rounds} rounds of {args.steps} steps")
    print(f"{'arch':<10} {'sequential img/s':>17} {'fused img/s':>12} {'fused/seq':>10}")
    for r in rows:
        print(f"{r['arch']:<10} {r['sequential_img_s']:>17.0f} {r['fused_img_s']:>12.0f} "
              f"{r['fused_over_sequential']:>9.2f}x")
    if args.json_out:
        with open(args.json_out, "w") as fh:
            json.dump({"device": str(device), "torch": torch.__version__, "rows": rows}, fh,
                      indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
