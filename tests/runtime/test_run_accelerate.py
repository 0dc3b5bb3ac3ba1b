"""Job-spreading under ``accelerate launch`` with 2 CPU processes: each process trains whole
runs (a teacher with its students), one parent run per study, no run twice."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from mlflow import MlflowClient

from kdspec.tracking import schema
from tests.mlflow_server import free_port
from tests.runtime.run_helpers import (
    finished_by_kdspec_id,
    fresh_store,
    nested_runs,
    small_plan,
    subprocess_env,
    write_plan,
)

pytestmark = pytest.mark.integration


def _launch(plan_path: Path, uri: str, logs: Path, *extra: str) -> None:
    """``accelerate launch`` of ``kdspec run`` with 2 processes (gloo on a CPU-only machine)."""
    accelerate = str(Path(sys.executable).with_name("accelerate"))
    result = subprocess.run(
        [accelerate, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
         "--mixed_precision", "no", "--dynamo_backend", "no",
         "--main_process_port", str(free_port()),
         "-m", "kdspec.cli", "run", str(plan_path), "--tracking-uri", uri, "--quiet",
         "--log-dir", str(logs), *extra],
        cwd=logs.parent, env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]


def test_two_processes_share_the_plan(blank_store: Path, tmp_path: Path) -> None:
    plan = small_plan()
    path, uri = write_plan(plan, tmp_path), fresh_store(blank_store, tmp_path)
    logs = tmp_path / "logs"
    _launch(path, uri, logs)

    runs = nested_runs(uri)
    assert len(runs) == len(plan.runs)  # nothing trained twice
    finished = finished_by_kdspec_id(runs)
    assert sorted(finished) == sorted(r.id for r in plan.runs)
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(plan.studies[0].tracking.experiment)
    assert experiment is not None
    parents = client.search_runs([experiment.experiment_id],
                                 f"tags.`{schema.TAG_KIND}` = '{schema.KIND_PLAN}'")
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert {r.data.tags["mlflow.parentRunId"] for r in runs} == {parents[0].info.run_id}

    # Each process wrote its own log and trained one seed's teacher with its students.
    trained_by_log = []
    for log in sorted(logs.glob("*.log")):
        lines = [ln for ln in log.read_text().splitlines() if " finished: test_acc" in ln]
        trained_by_log.append({ln.split(" INFO ")[1].split(" finished")[0] for ln in lines})
    assert len(trained_by_log) == 2 and all(len(names) == 4 for names in trained_by_log)
    seeds = [{name.rsplit("-s", 1)[1] for name in names} for names in trained_by_log]
    assert sorted(map(sorted, seeds)) == [["0"], ["1"]]


def test_data_parallel_trains_each_run_once_over_both_processes(blank_store: Path,
                                                                tmp_path: Path) -> None:
    plan = small_plan(seeds=(0,), temperatures=(2.0,))
    path, uri = write_plan(plan, tmp_path), fresh_store(blank_store, tmp_path)
    _launch(path, uri, tmp_path / "logs", "--data-parallel", "on")
    runs = nested_runs(uri)
    assert len(runs) == len(plan.runs)  # only process 0 writes MLflow
    assert sorted(finished_by_kdspec_id(runs)) == sorted(r.id for r in plan.runs)
    # Both processes trained every run (each on its half of the batches).
    for log in (tmp_path / "logs").glob("*.log"):
        assert log.read_text().count("training ") == len(plan.runs)
