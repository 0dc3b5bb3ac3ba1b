"""Benchmark `kdspec report` on an ImageNet-sized study.

Logs synthetic predictions (1000 classes, 50,000 test samples, teacher + NDS + 9 temperatures x
5 seeds = 55 runs) into a fresh sqlite MLflow store, then times `kdspec report` on it as a user
runs it (a new process: interpreter start, imports, MLflow queries, downloads, statistics,
figures, files, logging back to MLflow), and once more in-process phase by phase. The logging
setup is timed separately. Target: the report under 60 s on the 2-core development machine.

    .venv/bin/python bench/bench_report.py [--classes 1000] [--samples 50000] [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the tests' MLflow helper logs runs exactly as the runtime does

from kdspec.catalogue.registry import dataset_facts  # noqa: E402
from kdspec.plan import (  # noqa: E402
    DatasetSpec,
    KDLoss,
    ModelSpec,
    Plan,
    Recipe,
    Study,
    TrackingSpec,
    expand_runs,
)
from tests.analysis.mlflow_store import log_study, open_client  # noqa: E402
from tests.analysis.synthetic import synthetic_predictions  # noqa: E402


def imagenet_sized_plan(num_classes: int, seeds: int) -> Plan:
    """ResNet-50 -> ResNet-18 on an ImageNet-shaped dataset, T = 2..10."""
    names = dataset_facts("imagenet").class_names  # a plan must match the catalogue's classes
    if num_classes != len(names):
        raise SystemExit(f"--classes must be {len(names)} (ImageNet's), not {num_classes}")
    dataset = DatasetSpec(name="imagenet", image_size=224, channels=3, num_classes=num_classes,
                          class_names=names, augment="imagenet")
    recipe = Recipe(epochs=90, batch_size=256, lr=0.1)
    teacher, student = ModelSpec(arch="resnet50", recipe=recipe), ModelSpec(arch="resnet18",
                                                                            recipe=recipe)
    loss = KDLoss(hard_weight=0.1, soft_weight=0.9, convention="alpha = 0.9 on the soft term")
    temperatures = tuple(float(t) for t in range(2, 11))
    seed_list = tuple(range(seeds))
    runs = expand_runs(dataset=dataset, teacher=teacher, student=student,
                       temperatures=temperatures, seeds=seed_list, loss=loss, precision="auto")
    study = Study(name="bench-imagenet", dataset=dataset, teacher=teacher, student=student,
                  temperatures=temperatures, seeds=seed_list, loss=loss,
                  tracking=TrackingSpec(experiment="kdspec-bench-imagenet"),
                  run_ids=tuple(r.id for r in runs))
    return Plan(studies=(study,), runs=runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--samples", type=int, default=50_000)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--keep", type=Path, default=None, help="work in DIR and keep it")
    args = parser.parse_args()
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    work = args.keep or Path(tempfile.mkdtemp(prefix="kdspec-bench-report-"))
    work.mkdir(parents=True, exist_ok=True)
    plan = imagenet_sized_plan(args.classes, args.seeds)
    study = plan.studies[0]
    plan_json = work / "plan.json"
    plan_json.write_text(plan.to_json())

    start = time.perf_counter()
    predictions = synthetic_predictions(plan, study, n_test=args.samples, seed=0)
    generated = time.perf_counter() - start
    client, uri = open_client(work)
    log_study(client, plan, study, work / "artifacts", predictions)
    setup = time.perf_counter() - start

    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "kdspec.cli", "report", str(plan_json), "--tracking-uri", uri,
         "--out", str(work / "report"), "--quiet"], cwd=REPO, check=False)
    report = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"kdspec report failed with exit code {done.returncode}")

    phases = in_process_phases(plan, study, uri, work / "report-inprocess")
    print(f"machine: {os.cpu_count()} CPUs; runs: {len(study.run_ids)}; classes: "
          f"{args.classes}; test samples: {args.samples}")
    print(f"setup (generate {generated:.1f} s + log to sqlite): {setup:.1f} s")
    print(f"kdspec report (new process, end to end): {report:.1f} s  (target < 60 s)")
    for name, seconds in phases:
        print(f"  in-process {name:<28} {seconds:6.2f} s")
    print(f"files: {work / 'report'}" + ("" if args.keep else " (temporary)"))


def in_process_phases(plan: Plan, study: Study, uri: str, out: Path) -> list[tuple[str, float]]:
    """The same report in this process, timed per phase (imports already paid)."""
    from kdspec.analysis.csv_tables import write_tables
    from kdspec.analysis.figures import write_figures
    from kdspec.analysis.report_document import build_document
    from kdspec.analysis.report_html import render_html
    from kdspec.analysis.store_reader import read_study_records
    from kdspec.analysis.study_analysis import analyse_study

    out.mkdir(parents=True, exist_ok=True)
    timings: list[tuple[str, float]] = []

    def timed(name: str, start: float) -> float:
        now = time.perf_counter()
        timings.append((name, now - start))
        return now

    t = time.perf_counter()
    records = read_study_records(plan, study, tracking_uri=uri)
    t = timed("read MLflow + download", t)
    analysis = analyse_study(records)
    t = timed("statistics", t)
    figures = write_figures(analysis, out)
    t = timed("figures", t)
    write_tables(analysis, out)
    t = timed("CSV tables", t)
    (out / "report.html").write_text(render_html(build_document(analysis, figures)))
    timed("document + HTML", t)
    return timings


if __name__ == "__main__":
    main()
