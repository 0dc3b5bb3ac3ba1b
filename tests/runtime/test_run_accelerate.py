"""Job-spreading under ``accelerate launch`` with 2 CPU processes: each process trains whole
runs (a teacher with its students), one parent run per study, no run twice."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from mlflow import MlflowClient

from kdspec.cli import main
from kdspec.tracking import schema
from tests.factories import tiny_recipe
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


@pytest.mark.extended
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


@pytest.mark.extended
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


def _final_weights(uri: str, role: str, tmp: Path) -> dict[str, torch.Tensor]:
    run = next(r for r in nested_runs(uri) if r.data.tags[schema.TAG_ROLE] == role)
    path = MlflowClient(uri).download_artifacts(run.info.run_id,
                                                schema.ARTIFACT_FINAL_CHECKPOINT, str(tmp))
    state = torch.load(path, map_location="cpu", weights_only=True)["model"]
    return {k.removeprefix("module."): v for k, v in state.items()}


def test_data_parallel_equals_one_process_at_twice_the_batch(blank_store: Path,
                                                              tmp_path: Path) -> None:
    """Two processes at batch 64 take batches 2j and 2j + 1 of one shuffle at step j, which is
    batch j at 128 in one process: DDP's averaged gradient is that batch's gradient. LeNet-5
    (no BatchNorm, whose statistics would be per process) for 2 epochs of 5 steps: the weights
    agree to 1e-4 of their largest magnitude (float32 all-reduce and summation order differ;
    measured on a 2-core Xeon: 1.1e-8 against a largest weight of 0.2)."""
    recipe = tiny_recipe(epochs=2, batch_size=64, lr=0.05)
    two = small_plan(seeds=(0,), temperatures=(2.0,), teacher_recipe=recipe,
                     student_recipe=recipe)
    double = recipe.model_copy(update={"batch_size": 128})
    one = small_plan(seeds=(0,), temperatures=(2.0,), teacher_recipe=double,
                     student_recipe=double)
    (tmp_path / "dp").mkdir()
    (tmp_path / "solo").mkdir()
    uri_dp = fresh_store(blank_store, tmp_path / "dp")
    _launch(write_plan(two, tmp_path / "dp"), uri_dp, tmp_path / "dp" / "logs",
            "--data-parallel", "on")
    uri_solo = fresh_store(blank_store, tmp_path / "solo")
    assert main(["run", str(write_plan(one, tmp_path / "solo")), "--tracking-uri", uri_solo,
                 "--quiet", "--log-dir", str(tmp_path / "solo" / "logs")]) == 0
    for role in ("teacher", "student"):
        dp = _final_weights(uri_dp, role, tmp_path / f"dp-{role}")
        solo = _final_weights(uri_solo, role, tmp_path / f"solo-{role}")
        assert dp.keys() == solo.keys()
        scale = max(float(v.abs().max()) for v in solo.values())
        gap = max(float((dp[k] - solo[k]).abs().max()) for k in solo)
        print(f"{role}: max weight gap {gap:.2e} of largest weight {scale:.3f}")
        assert gap <= 1e-4 * scale, (role, gap, scale)


@pytest.mark.extended
def test_every_parent_of_the_shard_is_closed_whichever_process_trained_its_study(
        blank_store: Path, tmp_path: Path) -> None:
    """Two one-seed studies: each process trains one. Process 0 closes both parents (it used
    to close only the parents of its own share, leaving the other RUNNING)."""
    from kdspec.plan import Plan

    first = small_plan(name="alpha", seeds=(0,), temperatures=(2.0,))
    second = small_plan(name="beta", seeds=(1,), temperatures=(2.0,))
    plan = Plan(studies=(*first.studies, *second.studies), runs=(*first.runs, *second.runs))
    path, uri = write_plan(plan, tmp_path), fresh_store(blank_store, tmp_path)
    _launch(path, uri, tmp_path / "logs")
    client = MlflowClient(uri)
    parents = []
    for study in plan.studies:
        experiment = client.get_experiment_by_name(study.tracking.experiment)
        assert experiment is not None
        parents += client.search_runs([experiment.experiment_id],
                                      f"tags.`{schema.TAG_KIND}` = '{schema.KIND_PLAN}'")
    assert sorted(p.info.status for p in parents) == ["FINISHED", "FINISHED"]
    trained = [log.read_text().count(" finished: test_acc")
               for log in sorted((tmp_path / "logs").glob("*.log"))]
    assert trained == [3, 3]  # one study (teacher, NDS, one DS) per process


FAILING_PLUGIN = '''
    import os
    from kdspec.plugin import ArchFacts, ArchitectureEntry


    def architectures():
        return [ArchitectureEntry(ArchFacts("failing_mlp", "test", params_millions=0.01,
                                            forward_mflops=0.01, ref_size=8, min_size=8),
                                  build="failing_plugin:build")]


    def build(*, in_channels, image_size, num_classes):
        import torch

        class FailsOnProcessOne(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.net = torch.nn.Sequential(torch.nn.Flatten(),
                                               torch.nn.Linear(in_channels * image_size ** 2,
                                                               num_classes))
                self.calls = 0

            def forward(self, x):
                self.calls += 1
                if self.training and os.environ.get("RANK") == "1" and self.calls == 3:
                    raise RuntimeError("injected failure on process 1")
                return self.net(x)

        return FailsOnProcessOne()
'''


@pytest.mark.extended
def test_a_failure_on_one_data_parallel_process_stops_both_with_a_clear_message(
        blank_store: Path, tmp_path: Path) -> None:
    """Process 1's teacher step raises mid-epoch: both processes exit (none waits in a
    collective for a peer that left), within a bounded time, and say why."""
    import time

    from tests.runtime.plugin_on_disk import write_plugin

    plugins = write_plugin(tmp_path / "plugins", "failing_plugin", FAILING_PLUGIN,
                           architectures="failing_plugin:architectures")
    recipe = tiny_recipe(epochs=2, batch_size=32)
    plan = small_plan(seeds=(0,), temperatures=(2.0,), teacher_arch="failing_mlp",
                      teacher_recipe=recipe, student_recipe=recipe)
    path, uri = write_plan(plan, tmp_path), fresh_store(blank_store, tmp_path)
    accelerate = str(Path(sys.executable).with_name("accelerate"))
    env = subprocess_env()
    env["PYTHONPATH"] = f"{plugins}:{env['PYTHONPATH']}"
    started = time.monotonic()
    result = subprocess.run(
        [accelerate, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
         "--mixed_precision", "no", "--dynamo_backend", "no",
         "--main_process_port", str(free_port()),
         "-m", "kdspec.cli", "run", str(path), "--tracking-uri", uri, "--quiet",
         "--data-parallel", "on", "--log-dir", str(tmp_path / "logs")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    took = time.monotonic() - started
    assert result.returncode != 0
    assert "injected failure on process 1" in result.stderr, result.stderr[-3000:]
    assert "every process stops" in result.stderr, result.stderr[-3000:]
    logs = [p.read_text() for p in (tmp_path / "logs").glob("*.log")]
    assert len(logs) == 2 and all("failing_mlp" in log for log in logs)
    print(f"both processes stopped {took:.0f} s after the launch")
