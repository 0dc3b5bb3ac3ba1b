"""`make bench`: one small KD study trained two ways in one invocation, timed and compared.

1. the plain PyTorch baseline of ``baseline_kd.py`` (per-sample transforms + DataLoader, fp32,
   one training at a time, a teacher forward in every distilled step);
2. ``kdspec run`` on the same study, in a subprocess, into a fresh sqlite MLflow store.

Both train the runs of one ``.kdspec`` written to a temporary folder (the baseline reads the
compiled plan, so recipes, subsets, seeds and temperatures cannot drift apart). kdspec's phase
times come from its runs' start and end times in MLflow: a phase is the union of its runs'
intervals (a lockstep group's runs overlap). The distillation phase is NDS + DS with the
teachers already trained; the whole study is the wall time of everything, process start included.

    .venv/bin/python bench/bench_distillation.py             # default study, a few minutes here
    .venv/bin/python bench/bench_distillation.py --quick     # smoke test, well under a minute
    .venv/bin/python bench/bench_distillation.py --paper-shaped --device cuda   # make bench-gpu
    .venv/bin/python bench/bench_distillation.py --paper-shaped --device cpu --quick  # its smoke test
    .venv/bin/python bench/bench_distillation.py --device cuda --dataset cifar10 \\
        --data-root ~/data --teacher resnet56 --student resnet20 --epochs 30 --json gpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from baseline_kd import BaselineResult, run_baseline

from kdspec.catalogue.facts import DATASETS
from kdspec.dsl import load_plan
from kdspec.plan import Plan, Precision, Role, Study
from kdspec.tracking import schema


@dataclass(frozen=True)
class StudySize:
    """What the benchmark study trains (the knobs of the written .kdspec)."""

    dataset: str
    data_root: str | None
    teacher: str
    student: str
    train_subset: int
    test_subset: int
    epochs: int
    seeds: int
    temperatures: tuple[float, ...]
    augment: str | None  # None: the dataset's default preset
    teacher_cache: str
    precision: str = "auto"  # kdspec's side only: the baseline is the plain fp32 loop
    compile: str = "auto"  # auto, true or false


@dataclass(frozen=True)
class KdspecRun:
    """One run of ``kdspec run`` as read back from MLflow."""

    role: str
    seed: int
    temperature: float | None
    test_acc: float
    start: float  # seconds since the epoch
    end: float
    teacher_cache: str
    lockstep: str
    precision: str  # what it trained in (the kdspec.precision tag: "auto" resolved)
    compiled: str
    #: Seconds of each epoch, from the train_loss history's timestamps (the first from start).
    epoch_seconds: tuple[float, ...] = ()

    @property
    def warmup_s(self) -> float | None:
        """First epoch minus the median of the others: compilation and other one-off warm-up
        (None with one epoch)."""
        if len(self.epoch_seconds) < 2:
            return None
        return self.epoch_seconds[0] - statistics.median(self.epoch_seconds[1:])


def spec_text(size: StudySize) -> str:
    """The benchmark study as a .kdspec."""
    if DATASETS[size.dataset].default_generated_sizes is not None:  # generate just what is used
        dataset_lines = [f"generated_train = {size.train_subset}",
                         f"generated_test = {size.test_subset}"]
    else:
        dataset_lines = [f"train_subset = {size.train_subset}",
                         f"test_subset = {size.test_subset}"]
    if size.data_root:
        dataset_lines.append(f'root = "{size.data_root}"')
    if size.augment:
        dataset_lines.append(f"augment = {size.augment}")
    temps = ", ".join(f"{t:g}" for t in size.temperatures)
    return "\n".join([
        "# Written by bench/bench_distillation.py; run with `kdspec run` (see docs/speed.md).",
        "study bench {",
        f"  dataset {size.dataset} {{ {'  '.join(dataset_lines)} }}",
        # A speed benchmark: its quick sizes train too little to leave chance, and its
        # accuracies are printed beside the baseline's, not judged (accept_chance).
        f"  teacher {size.teacher} {{ epochs = {size.epochs}  batch_size = 128  lr = 0.1"
        "  accept_chance = true }",
        # Adam: with SGD at lr 0.05 the LeNet-5 students of a 3-epoch study collapse to chance
        # at T >= 4 (measured); Adam at 0.002 learns at every T of the grid.
        f"  student {size.student} {{ epochs = {size.epochs}  batch_size = 128  optimizer = adam"
        "  lr = 0.002 }",
        "  distill {",
        f"    temperatures = [{temps}]",
        "    loss = 0.1 * hard + 0.9 * soft",
        "  }",
        f"  seeds = {size.seeds}",
        f"  runtime {{ teacher_cache = {size.teacher_cache}  precision = {size.precision}"
        f"  compile = {size.compile} }}",
        '  tracking { experiment = "kdspec-bench" }',
        "}",
        "",
    ])


def run_kdspec(spec: Path, workdir: Path, *, device: str) -> tuple[float, float]:
    """Run ``kdspec run`` in a subprocess; (start time, wall seconds). Raises on failure."""
    env = dict(os.environ, MLFLOW_DISABLE_TELEMETRY="true")
    if device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""  # Accelerate would otherwise pick a GPU
    command = [sys.executable, "-m", "kdspec.cli", "run", str(spec),
               "--tracking-uri", f"sqlite:///{workdir / 'mlruns.db'}", "--quiet",
               "--cache-dir", str(workdir / "cache"), "--log-dir", str(workdir / "logs")]
    start = time.time()
    done = subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True)
    wall = time.time() - start
    if done.returncode != 0:
        sys.stderr.write(done.stdout + done.stderr)
        raise SystemExit(f"kdspec run failed with exit code {done.returncode}")
    return start, wall


def read_kdspec_runs(workdir: Path) -> list[KdspecRun]:
    """Every nested run of the benchmark store: role, seed, T, accuracy, start and end."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{workdir / 'mlruns.db'}")
    experiment = client.get_experiment_by_name("kdspec-bench")
    assert experiment is not None, "kdspec run created no kdspec-bench experiment"
    found = client.search_runs([experiment.experiment_id],
                               filter_string=f"tags.`{schema.TAG_KIND}` = '{schema.KIND_RUN}'")
    runs = []
    for r in found:
        tags = r.data.tags
        temperature = tags.get(schema.TAG_TEMPERATURE, "")
        stamps = sorted(m.timestamp / 1000 for m in
                        client.get_metric_history(r.info.run_id, schema.METRIC_TRAIN_LOSS))
        edges = [r.info.start_time / 1000, *stamps]
        runs.append(KdspecRun(
            role=tags[schema.TAG_ROLE], seed=int(tags[schema.TAG_SEED]),
            temperature=float(temperature) if temperature else None,
            test_acc=float(r.data.metrics[schema.METRIC_TEST_ACC]),
            start=r.info.start_time / 1000, end=(r.info.end_time or r.info.start_time) / 1000,
            teacher_cache=tags.get(schema.TAG_TEACHER_CACHE, "-"),
            lockstep=tags.get(schema.TAG_LOCKSTEP, "-"),
            precision=tags.get(schema.TAG_PRECISION, "-"),
            compiled=tags.get(schema.TAG_COMPILE, "-"),
            epoch_seconds=tuple(b - a for a, b in zip(edges, edges[1:], strict=False))))
    return runs


def union_seconds(intervals: list[tuple[float, float]]) -> float:
    """Length of the union of ``[start, end]`` intervals (overlapping runs counted once)."""
    total, reach = 0.0, float("-inf")
    for start, end in sorted(intervals):
        if end > reach:
            total += end - max(start, reach)
            reach = end
    return total


def trained_as(runs: list[KdspecRun], role: str) -> str:
    """What a role's runs trained with, from their tags: e.g. "bf16" or "fp32 compiled"."""
    kinds = sorted({r.precision + (" compiled" if r.compiled == "true" else "")
                    for r in runs if r.role == role})
    return "/".join(kinds) or "-"


def phase(runs: list[KdspecRun], *roles: str) -> float:
    return union_seconds([(r.start, r.end) for r in runs if r.role in roles])


def accuracy_rows(plan: Plan, study: Study, baseline: BaselineResult,
                  kdspec_runs: list[KdspecRun]) -> list[tuple[str, str, str]]:
    """(model, baseline mean +- sd, kdspec mean +- sd) per role and temperature, over seeds."""

    def summary(values: list[float]) -> str:
        if not values:
            return "-"
        sd = statistics.stdev(values) if len(values) > 1 else 0.0
        return f"{100 * statistics.mean(values):.2f} +- {100 * sd:.2f}"

    keys: list[tuple[str, float | None]] = [("teacher", None), ("student", None)]
    keys += [("distilled", t) for t in study.temperatures]
    rows = []
    for role, t in keys:
        name = f"DS T={t:g}" if t is not None else {"teacher": "teacher", "student": "NDS"}[role]
        base = [r.test_acc for r in baseline.runs if r.role == role and r.temperature == t]
        ours = [r.test_acc for r in kdspec_runs if r.role == role and r.temperature == t]
        rows.append((name, summary(base), summary(ours)))
    return rows


def report(size: StudySize, plan: Plan, study: Study, baseline: BaselineResult,
           baseline_wall: float, kdspec_runs: list[KdspecRun], kdspec_wall: float,
           kdspec_start: float, device: str) -> dict[str, object]:
    """Print the comparison table; return every figure for ``--json``."""
    n = size.train_subset
    images = {role: sum(r.recipe.epochs * n for r in plan.runs_of(study, role))
              for role in ("teacher", "student", "distilled")}
    distill_images = images["student"] + images["distilled"]
    base_distill = baseline.phase_seconds["nds"] + baseline.phase_seconds["ds"]
    ours = {"teachers": phase(kdspec_runs, "teacher"), "nds": phase(kdspec_runs, "student"),
            "ds": phase(kdspec_runs, "distilled")}
    ours_distill = phase(kdspec_runs, "student", "distilled")
    first_start = min(r.start for r in kdspec_runs)
    startup = first_start - kdspec_start
    act = baseline.activity_seconds
    data_total = sum(a.get("data", 0.0) for a in act.values())
    eval_total = sum(a.get("evaluation", 0.0) for a in act.values())
    caches = sorted({r.teacher_cache for r in kdspec_runs if r.role == "distilled"})
    lockstep = sorted({r.lockstep for r in kdspec_runs if r.role == "distilled"})
    ratio_distill = base_distill / ours_distill
    ratio_whole = baseline_wall / kdspec_wall

    print(f"\nkdspec benchmark: {size.dataset} ({n} train / {size.test_subset} test), teacher "
          f"{size.teacher}, student {size.student}, {size.epochs} epochs, {size.seeds} seeds, "
          f"T = {', '.join(f'{t:g}' for t in size.temperatures)}; {len(plan.runs)} runs")
    card = (f" ({torch.cuda.get_device_name(0)})" if device.startswith("cuda")
            and torch.cuda.is_available() else "")
    print(f"device {device}{card}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"load average {os.getloadavg()[0]:.2f} at the end; the baseline in fp32")
    print(f"kdspec: precision = {size.precision}, compile = {size.compile} -> trained "
          + ", ".join(f"{label} {trained_as(kdspec_runs, role)}" for role, label in
                      (("teacher", "teachers"), ("student", "NDS"), ("distilled", "DS"))))
    print(f"\n{'':<34}{'baseline':>12}{'kdspec run':>12}{'ratio':>9}")
    print(f"{'whole study (s)':<34}{baseline_wall:>12.1f}{kdspec_wall:>12.1f}"
          f"{ratio_whole:>8.2f}x")
    print(f"{'distillation phase: NDS + DS (s)':<34}{base_distill:>12.1f}{ours_distill:>12.1f}"
          f"{ratio_distill:>8.2f}x")
    print(f"{'distillation images/s':<34}{distill_images / base_distill:>12.0f}"
          f"{distill_images / ours_distill:>12.0f}")
    print(f"{'teacher training images/s':<34}"
          f"{images['teacher'] / baseline.phase_seconds['teachers']:>12.0f}"
          f"{images['teacher'] / ours['teachers']:>12.0f}")
    print("\nwhere the time goes (s)")
    print(f"{'  start-up, data, MLflow outside runs':<40}{'-':>10}"
          f"{kdspec_wall - sum(ours.values()):>12.1f}   (kdspec: first run at +{startup:.1f})")
    for key, label in (("teachers", "teacher training"), ("nds", "NDS"), ("ds", "DS")):
        print(f"  {label:<38}{baseline.phase_seconds[key]:>10.1f}{ours[key]:>12.1f}")
    print(f"  {'  of which teacher forwards in DS':<38}"
          f"{act['ds'].get('teacher_forward', 0.0):>10.1f}{'-':>12}   "
          f"(kdspec teacher cache: {'/'.join(caches)}, lockstep group: {'/'.join(lockstep)})")
    for role, label in (("teacher", "teachers"), ("student", "NDS"), ("distilled", "DS")):
        warm = [w for r in kdspec_runs if r.role == role and (w := r.warmup_s) is not None]
        if warm:
            print(f"  {'  first epoch - steady epoch, ' + label:<38}{'-':>10}"
                  f"{statistics.median(warm):>12.1f}   (median per run: compilation and "
                  "warm-up, apart from steady state)")
    print(f"  {'  data loading (all phases)':<38}{data_total:>10.1f}{'-':>12}")
    print(f"  {'  test evaluation (all phases)':<38}{eval_total:>10.1f}{'-':>12}")
    print(f"\nfinal test accuracy (%), mean +- sd over {size.seeds} seeds")
    print(f"{'model':<12}{'baseline':>18}{'kdspec run':>18}")
    rows = accuracy_rows(plan, study, baseline, kdspec_runs)
    for name, base, mine in rows:
        print(f"{name:<12}{base:>18}{mine:>18}")
    return {
        "study": asdict(size), "device": device, "torch": torch.__version__,
        "threads": torch.get_num_threads(), "load_average_end": os.getloadavg()[0],
        "baseline": {"whole_s": baseline_wall, "distillation_s": base_distill,
                     "phases_s": baseline.phase_seconds, "activities_s": act,
                     "runs": [asdict(r) for r in baseline.runs]},
        "kdspec": {"whole_s": kdspec_wall, "distillation_s": ours_distill, "phases_s": ours,
                   "startup_s": startup, "teacher_cache": caches, "lockstep": lockstep,
                   "runs": [asdict(r) for r in kdspec_runs]},
        "ratio_distillation": ratio_distill, "ratio_whole": ratio_whole,
        "distillation_images": distill_images, "accuracy": rows,
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="baseline KD vs kdspec run on one study")
    parser.add_argument("--quick", action="store_true", help="tiny study: a smoke test")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (baseline and kdspec)")
    parser.add_argument("--dataset", default="fashion_mnist",
                        help="fashion_mnist (Debian files), digits, or cifar10 / cifar100 "
                             "with --data-root")
    parser.add_argument("--data-root", help="dataset root (CIFAR: holds cifar-10-batches-py/)")
    parser.add_argument("--teacher", default="resnet20")
    parser.add_argument("--student", default="lenet5")
    parser.add_argument("--epochs", type=int, help="epochs of every run (default 3; quick 1)")
    parser.add_argument("--train-subset", type=int, help="training images (default 5000)")
    parser.add_argument("--test-subset", type=int, help="test images (default 2000)")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--temperatures", type=float, nargs="+", default=[2.0, 4.0, 6.0, 8.0])
    parser.add_argument("--augment", help="augmentation preset (default: the dataset's)")
    parser.add_argument("--teacher-cache", default="auto", choices=("auto", "on", "off"))
    parser.add_argument("--workers", type=int, default=2, help="baseline DataLoader workers")
    parser.add_argument("--workdir", type=Path, help="keep the spec, store and logs here")
    parser.add_argument("--json", dest="json_out", type=Path, help="write every figure here")
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16", "fp16"), default="auto",
                        help="kdspec's precision (default auto: what `kdspec run` picks for a "
                             "spec that names none; the baseline stays the plain fp32 loop)")
    parser.add_argument("--compile", choices=("auto", "true", "false"), default="auto",
                        help="kdspec's torch.compile setting (default auto)")
    parser.add_argument("--fair", action="store_true",
                        help="also time the plain loop in the precision kdspec trained each "
                             "role in, and that loop on kdspec's in-memory on-device data path, "
                             "so the ratios separate kdspec's design from precision and data "
                             "loading")
    parser.add_argument("--paper-shaped", action="store_true",
                        help="`make bench-gpu`'s study: synthetic CIFAR-shaped data (50,000 / "
                             "10,000, crop + flip), ResNet-56 -> ResNet-20, 3 epochs, 2 seeds, "
                             "T = 2, 4, 6, 8; kdspec in bf16 (compile as --compile says: "
                             "auto leaves it off until verified on the device: compiled "
                             "ResNet-56 teachers trained to 49-74 % on an H200)")
    args = parser.parse_args(argv)
    if args.paper_shaped:
        args.dataset, args.teacher, args.student = "synthetic", "resnet56", "resnet20"
        # --quick: a smoke test of this path on a CPU (ResNet-56 trains at ~100 img/s there).
        args.train_subset = args.train_subset or (128 if args.quick else 50_000)
        args.test_subset = args.test_subset or (64 if args.quick else 10_000)
        if args.quick:
            args.temperatures = args.temperatures[:1]
        args.precision = "bf16" if args.precision == "auto" else args.precision
    return args


def role_precisions(kdspec_runs: list[KdspecRun]) -> dict[Role, Precision]:
    """The precision kdspec trained each role in (from its runs' tags)."""
    out: dict[Role, Precision] = {}
    for role in ("teacher", "student", "distilled"):
        found = {r.precision for r in kdspec_runs if r.role == role}
        out[role] = found.pop() if len(found) == 1 else "fp32"
    return out


def fair_variants(plan: Plan, study: Study, kdspec_runs: list[KdspecRun], kdspec_wall: float,
                  baseline_wall: float, *, device: torch.device, workdir: Path,
                  workers: int) -> dict[str, object]:
    """Time the plain loop again in kdspec's precisions, then also on kdspec's data path;
    print each beside kdspec (whole study and distillation) and return the figures."""
    precisions = role_precisions(kdspec_runs)
    ours_distill = phase(kdspec_runs, "student", "distilled")
    rows: dict[str, object] = {}
    print(f"\nfair comparison: the plain loop in kdspec's precisions "
          f"({', '.join(f'{k} {v}' for k, v in precisions.items())})")
    print(f"{'plain loop variant':<46}{'whole s':>9}{'ratio':>8}{'distill s':>11}{'ratio':>8}")
    print(f"{'fp32, DataLoader + PIL transforms':<46}{baseline_wall:>9.1f}"
          f"{baseline_wall / kdspec_wall:>7.2f}x{'':>11}{'':>8}")
    for name, in_memory in (("kdspec precision, DataLoader", False),
                            ("kdspec precision, kdspec in-memory data", True)):
        start = time.perf_counter()
        result = run_baseline(plan, study, device=device, workdir=workdir / "fair",
                              num_workers=workers, precision=precisions, in_memory=in_memory,
                              log=lambda _line: None)
        wall = time.perf_counter() - start
        distill = result.phase_seconds["nds"] + result.phase_seconds["ds"]
        print(f"{name:<46}{wall:>9.1f}{wall / kdspec_wall:>7.2f}x{distill:>11.1f}"
              f"{distill / ours_distill:>7.2f}x")
        rows[name] = {"whole_s": wall, "distillation_s": distill,
                      "ratio_whole": wall / kdspec_wall,
                      "ratio_distillation": distill / ours_distill,
                      "accuracy": [asdict(r) for r in result.runs]}
    print(f"{'kdspec run':<46}{kdspec_wall:>9.1f}{'':>8}{ours_distill:>11.1f}")
    print("ratio = plain loop time / kdspec time: above 1, kdspec is faster than that loop; the "
          "in-memory row's ratio is what kdspec's own design (lockstep groups, teacher cache, "
          "fewer host syncs) adds beyond precision and the data path.")
    return {"precisions": precisions, "variants": rows}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    quick = args.quick
    size = StudySize(
        dataset=args.dataset, data_root=args.data_root, teacher=args.teacher,
        student=args.student,
        train_subset=args.train_subset or (512 if quick else 5000),
        test_subset=args.test_subset or (256 if quick else 2000),
        epochs=args.epochs or (1 if quick else 3), seeds=args.seeds,
        temperatures=tuple(args.temperatures[:2] if quick else args.temperatures),
        augment=args.augment, teacher_cache=args.teacher_cache, precision=args.precision,
        compile=args.compile)
    with tempfile.TemporaryDirectory(prefix="kdspec-bench-") as scratch:
        workdir = args.workdir or Path(scratch)
        workdir.mkdir(parents=True, exist_ok=True)
        spec = workdir / "bench.kdspec"
        spec.write_text(spec_text(size))
        plan = load_plan(spec)
        study = plan.studies[0]
        print(f"study written to {spec}; kdspec run ...", flush=True)
        kdspec_start, kdspec_wall = run_kdspec(spec, workdir, device=args.device)
        print(f"kdspec run: {kdspec_wall:.1f} s; baseline ...", flush=True)
        start = time.perf_counter()
        baseline = run_baseline(plan, study, device=torch.device(args.device),
                                workdir=workdir / "baseline", num_workers=args.workers)
        baseline_wall = time.perf_counter() - start
        kdspec_runs = read_kdspec_runs(workdir)
        figures = report(size, plan, study, baseline, baseline_wall, kdspec_runs,
                         kdspec_wall, kdspec_start, args.device)
        if args.fair:
            figures["fair"] = fair_variants(plan, study, kdspec_runs, kdspec_wall,
                                            baseline_wall, device=torch.device(args.device),
                                            workdir=workdir, workers=args.workers)
    if args.json_out:
        args.json_out.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
