"""kill -9 in the middle of ``kdspec run``; the next ``kdspec run`` finishes the plan, keeps every
completed run and duplicates none."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient

from kdspec.cli import main
from kdspec.tracking import schema
from tests.factories import tiny_recipe
from tests.runtime.run_helpers import (
    fresh_store,
    kdspec_command,
    nested_runs,
    small_plan,
    sqlite_states,
    subprocess_env,
    write_plan,
)

pytestmark = pytest.mark.integration

STUDENT_EPOCHS = 4
POLL_TIMEOUT_S = 120.0


def _wait_for_mid_run(db: Path, proc: subprocess.Popen[bytes]) -> list[tuple[str, str, int]]:
    """Poll the store until one run is FINISHED and another has saved a checkpoint."""
    deadline = time.monotonic() + POLL_TIMEOUT_S
    while time.monotonic() < deadline:
        states = sqlite_states(db)
        finished = [s for s in states if s[0] == "FINISHED"]
        mid = [s for s in states if s[0] == "RUNNING" and 1 <= s[2] < STUDENT_EPOCHS - 1]
        if finished and mid:
            return states
        if proc.poll() is not None:
            pytest.fail(f"kdspec run ended (rc {proc.returncode}) before it could be killed")
        time.sleep(0.05)
    pytest.fail("no run reached a checkpoint in time")


def test_kill_9_then_rerun_completes_the_plan(blank_store: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    plan = small_plan(seeds=(0,), temperatures=(2.0,),
                      student_recipe=tiny_recipe(epochs=STUDENT_EPOCHS, batch_size=128))
    path, uri = write_plan(plan, tmp_path), fresh_store(blank_store, tmp_path)
    proc = subprocess.Popen(
        kdspec_command(str(path), "--tracking-uri", uri, "--quiet",
                       "--log-dir", str(tmp_path / "logs")),
        cwd=tmp_path, env=subprocess_env(), stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL)
    try:
        _wait_for_mid_run(tmp_path / "mlruns.db", proc)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    before = {r.info.run_id: (r.data.tags[schema.TAG_RUN_ID], r.info.status,
                              int(r.data.tags.get(schema.TAG_LAST_EPOCH, "0")))
              for r in nested_runs(uri)}
    completed = {mid for mid, (_, status, _) in before.items() if status == "FINISHED"}
    interrupted = {mid: epoch for mid, (_, status, epoch) in before.items()
                   if status == "RUNNING" and epoch >= 1}
    assert completed and interrupted

    assert main(["run", str(path), "--tracking-uri", uri, "--quiet",
                 "--log-dir", str(tmp_path / "logs")]) == 0
    assert "resumed at epoch" in capsys.readouterr().err

    after = nested_runs(uri)
    finished: dict[str, list[str]] = {}
    for run in after:
        if run.info.status == "FINISHED":
            finished.setdefault(run.data.tags[schema.TAG_RUN_ID], []).append(run.info.run_id)
    assert sorted(finished) == sorted(r.id for r in plan.runs)  # the plan is complete
    assert all(len(ids) == 1 for ids in finished.values())  # no kdspec id twice
    finished_ids = {i for ids in finished.values() for i in ids}
    assert completed <= finished_ids  # completed runs kept, same MLflow run ids
    client = MlflowClient(uri)
    for mlflow_id in interrupted:  # resumed in place, every epoch's metrics present
        assert mlflow_id in finished_ids
        steps = sorted(m.step for m in client.get_metric_history(mlflow_id,
                                                                 schema.METRIC_TRAIN_LOSS))
        assert steps == list(range(1, STUDENT_EPOCHS + 1))  # each once: none logged twice
    stale = [r for r in after if r.info.status == "RUNNING"]
    assert stale == []
