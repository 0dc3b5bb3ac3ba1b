"""`kdspec status`: each run's state from the store alone; a killed run turns from running to
interrupted once its lease expires; nothing is read but the store, nothing is written."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from dataclasses import replace
from pathlib import Path

import pytest

from kdspec.cli import main
from kdspec.commands.status import render, run_status
from kdspec.tracking.leases import Lease, now_ms, this_machine
from kdspec.tracking.run_store import StoredRun
from tests.factories import tiny_recipe
from tests.runtime.run_helpers import (
    fresh_store,
    kdspec_command,
    small_plan,
    sqlite_states,
    subprocess_env,
    write_plan,
)


def _stored(status: str, *, epochs: int = 0, heartbeat_age_s: float | None = None,
            failure: str = "") -> StoredRun:
    at = now_ms()
    lease = Lease() if heartbeat_age_s is None else Lease(
        "host:42:t", at - int(heartbeat_age_s * 1000), at - int(heartbeat_age_s * 1000))
    return StoredRun("m1", "k", status, epochs, at - 1000, "0", failure, lease)


def test_each_state_is_named_with_its_detail() -> None:
    run = small_plan(teacher_recipe=tiny_recipe(epochs=5, batch_size=128)).runs[0]
    def state(*stored: StoredRun) -> tuple[str, str]:
        s = run_status(run, list(stored), at_ms=now_ms(), timeout_s=60)
        return s.state, s.detail

    assert state() == ("not started", "")
    assert state(_stored("FAILED", failure="NaN loss"))[0] == "failed"
    assert state(_stored("FAILED", failure="NaN loss"))[1] == ("NaN loss; restarts (no "
                                                                "checkpoint)")
    assert state(_stored("FAILED", epochs=2, failure="NaN loss"))[1] == ("NaN loss; resumes at "
                                                                          "epoch 3")
    # What `kdspec run` would do decides the words: a checkpoint past the recipe restarts.
    assert state(_stored("KILLED", epochs=9))[1] == (
        "killed; restarts (its checkpoint of epoch 9 is past the recipe's 5 epochs)")
    running = state(_stored("RUNNING", epochs=2, heartbeat_age_s=5))
    assert running[0] == "running" and running[1].startswith("on host (pid 42), heartbeat 5")
    assert running[1].endswith("the lease expires in 55 s unless renewed")
    assert state(_stored("RUNNING", epochs=2, heartbeat_age_s=600)) == (
        "interrupted", "lease expired 540 s ago (host pid 42 stopped renewing it); resumes at "
        "epoch 3")
    assert state(_stored("KILLED")) == ("interrupted", "killed; restarts (no checkpoint)")
    stopped = replace(_stored("KILLED", epochs=1),
                      interrupted="stopped by SIGTERM: stopped in epoch 2; resumes at epoch 2")
    assert state(stopped) == ("interrupted", "killed: stopped by SIGTERM; resumes at epoch 2")
    assert state(_stored("KILLED"), _stored("FINISHED"))[0] == "finished"


def test_a_run_whose_owner_is_gone_from_this_machine_is_interrupted_at_once() -> None:
    run = small_plan().runs[0]
    dead = subprocess.Popen(["true"])
    dead.wait()
    at = now_ms()
    lease = Lease(f"host:{dead.pid}:t", at, at, this_machine())
    stored = StoredRun("m1", "k", "RUNNING", 1, at, "0", "", lease)
    status = run_status(run, [stored], at_ms=at, timeout_s=600)
    assert (status.state, status.detail) == (
        "interrupted", f"owner gone (pid {dead.pid} no longer exists on this machine); resumes "
        "at epoch 2")


def test_status_of_a_store_that_does_not_exist_creates_nothing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plan = small_plan()
    path = write_plan(plan, tmp_path)
    before = set(tmp_path.iterdir())
    assert main(["status", str(path), "--tracking-uri", f"sqlite:///{tmp_path / 'none.db'}",
                 "--json"]) == 0
    [study] = json.loads(capsys.readouterr().out)["studies"]
    assert study["counts"]["not started"] == len(plan.runs)
    assert set(tmp_path.iterdir()) == before


@pytest.mark.integration
def test_status_during_and_after_a_run_and_after_a_kill(
        blank_store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plan = small_plan(seeds=(0,), temperatures=(2.0,),
                      student_recipe=tiny_recipe(epochs=30, batch_size=128))
    path, uri = write_plan(plan, tmp_path), fresh_store(blank_store, tmp_path)
    proc = subprocess.Popen(kdspec_command(str(path), "--tracking-uri", uri, "--quiet",
                                           "--log-dir", str(tmp_path / "logs")),
                            cwd=tmp_path, env=subprocess_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    # The 30-epoch student, not the teacher: a teacher seen at its last epoch could finish
    # before the kill, which then lands on a student with no checkpoint yet.
    student = plan.runs_of(plan.studies[0], "student")[0].id
    try:
        deadline = time.monotonic() + 180
        while not any(s[0] == "RUNNING" and s[1] == student and s[2] >= 1
                      for s in sqlite_states(tmp_path / "mlruns.db")):
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.1)
        assert main(["status", str(path), "--tracking-uri", uri]) == 0
        during = capsys.readouterr().out
        assert "1 running" in during and "running: " in during and "heartbeat" in during
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    # Killed: still RUNNING in the store, but its heartbeat ages past a short lease timeout.
    time.sleep(3.1)
    assert main(["status", str(path), "--tracking-uri", uri, "--lease-timeout", "3"]) == 0
    after_kill = capsys.readouterr().out
    assert "0 running" in after_kill and "1 interrupted" in after_kill
    assert "resumes at epoch" in after_kill
    # The same command finishes the plan; status then says so, with no ETA left.
    assert main(["run", str(path), "--tracking-uri", uri, "--quiet", "--lease-timeout", "3",
                 "--log-dir", str(tmp_path / "logs")]) == 0
    capsys.readouterr()
    assert main(["status", str(path), "--tracking-uri", uri, "--json"]) == 0
    [study] = json.loads(capsys.readouterr().out)["studies"]
    assert study["counts"]["finished"] == len(plan.runs) and study["eta_seconds"] == 0.0


def test_a_study_whose_teacher_is_evaluated_only_has_a_status_and_an_eta(
        tmp_path: Path) -> None:
    """A teacher that loads a checkpoint trains 0 epochs: its finished run measures no pace
    (status divided by its 0 epochs before) and no ETA waits on it."""
    import torch

    from kdspec.commands.status import seconds_per_epoch, study_status
    from kdspec.dsl import compile_text
    from kdspec.runtime.models import build_model
    from tests.runtime.memory_store import MemoryStore

    torch.save(build_model("lenet5", in_channels=1, image_size=8, num_classes=10).state_dict(),
               tmp_path / "t.pt")
    plan = compile_text(
        'recipe r { epochs = 1  batch_size = 64  lr = 0.05 }\n'
        'study s { dataset digits { }  teacher lenet5 { checkpoint = "t.pt" }\n'
        '  student lenet5 { recipe = r }  distill { temperatures = [2]  '
        'loss = 0.2 * hard + 0.8 * soft }  seeds = 2 }', str(tmp_path / "s.kdspec"))
    study = plan.studies[0]
    store = MemoryStore()
    for run in plan.runs:
        if run.role in ("teacher", "student"):
            mlflow_id = store.create_run(experiment="e", parent_id="", run_name=run.id,
                                         tags={"kdspec.run_id": run.id})
            store.runs[mlflow_id].start_time -= 60_000
            store.finish(mlflow_id)
    pace = seconds_per_epoch(store.find_runs(study.run_ids), plan)
    assert "teacher lenet5" not in pace and "student lenet5" in pace
    status = study_status(plan, study, store, timeout_s=600)  # type: ignore[arg-type]
    assert status["counts"]["finished"] == 4 and status["counts"]["not started"] == 2
    # The students are paced by the finished NDS (same architecture): 60 s an epoch, 2 x 1.
    assert status["eta_seconds"] == pytest.approx(120.0, rel=0.01)
    assert status["eta_unmeasured"] == []
    assert "4 finished" in render(status)
