"""A process frozen past its lease, and woken after another process took its run over, writes
nothing more to that run and finishes nothing twice: on a sqlite store and on an ``mlflow
server``, frozen before its teacher's first checkpoint (the other process trains the teacher
anew) and after it (the other resumes it in the same MLflow run).

The interleaving is forced, not slept for (tests/runtime/owner_hooks.py): process A stops
itself (SIGSTOP: every thread, heartbeat included) at a step of its teacher; process B takes
the teacher over once A's lease has expired and trains the rest, holding itself (alive, its
heartbeat running) at its first distilled step; A is woken then, and B let go only once A has
said it is waiting for B's live runs. So A wakes while B holds live runs, as on a cluster."""

from __future__ import annotations

import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from mlflow import MlflowClient

from kdspec.plan import Plan
from kdspec.tracking import schema
from tests.factories import dataset_spec, tiny_plan, tiny_recipe
from tests.mlflow_server import start_server
from tests.runtime.run_helpers import fresh_store, nested_runs, subprocess_env, write_plan

pytestmark = pytest.mark.integration

LEASE = "3"  # the shortest lease kdspec run accepts: A's expires 3 s after it froze
TIMEOUT_S = 240.0


def _plan() -> Plan:
    """Digits (256 images: 4 batches of 64), LeNet-5 teacher and student, one seed, two T."""
    return tiny_plan(dataset=dataset_spec("digits", train_subset=256, test_subset=96),
                     teacher_arch="lenet5", student_arch="lenet5", seeds=(0,),
                     temperatures=(2.0, 4.0),
                     teacher_recipe=tiny_recipe(epochs=3, batch_size=64),
                     student_recipe=tiny_recipe(epochs=2, batch_size=64))


def _kdspec(hook: list[str], path: Path, uri: str, logs: Path, folder: Path
            ) -> subprocess.Popen[str]:
    """``kdspec run`` with a hook; its stderr goes to ``logs/stderr.txt``."""
    logs.mkdir(parents=True, exist_ok=True)
    with (logs / "stderr.txt").open("w") as stderr:
        return subprocess.Popen(
            [sys.executable, "-m", "tests.runtime.owner_hooks", *hook, "--", "run", str(path),
             "--tracking-uri", uri, "--quiet", "--lease-timeout", LEASE, "--claim-settle",
             "0.2", "--poll-seconds", "0.5", "--log-dir", str(logs)],
            cwd=folder, env=subprocess_env(), stdout=subprocess.DEVNULL, stderr=stderr,
            text=True)


def _stderr(proc: subprocess.Popen[str], folder: Path) -> str:
    name = "logs-a" if proc.args[3] == "freeze" else "logs-b"  # type: ignore[index]
    return (folder / name / "stderr.txt").read_text()[-3000:]


def _state(pid: int) -> str:
    """The process state letter of /proc/<pid>/stat ("T": stopped)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


def _until(condition, what: str, folder: Path, *procs: subprocess.Popen[str]) -> None:  # type: ignore[no-untyped-def]
    """Wait for ``condition()`` (a state of the processes or the store), failing if a process
    exits first or it takes longer than TIMEOUT_S."""
    deadline = time.monotonic() + TIMEOUT_S
    while not condition():
        for proc in procs:
            assert proc.poll() is None, (f"exited ({proc.returncode}) before {what}: "
                                         f"{_stderr(proc, folder)}")
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _log(folder: Path) -> str:
    return "".join(p.read_text() for p in folder.glob("*.log")) if folder.exists() else ""


def _freeze_and_take_over(plan: Plan, uri: str, folder: Path, freeze_at: int
                          ) -> tuple[int, float]:
    """A freezes at teacher step ``freeze_at``; B takes over and trains the plan; A wakes while
    B holds its distilled runs. Returns A's pid and the time (ms) it was woken."""
    path = write_plan(plan, folder)
    a = _kdspec(["freeze", "teacher", str(freeze_at)], path, uri, folder / "logs-a", folder)
    go = folder / "go"
    try:
        _until(lambda: _state(a.pid) == "T", "A froze", folder, a)
        b = _kdspec(["pause", "distilled", "1", str(go)], path, uri, folder / "logs-b", folder)
        try:
            _until(lambda: any(r.data.tags.get(schema.TAG_ROLE) == "distilled"
                               and r.info.status == "RUNNING" for r in nested_runs(uri)),
                   "B held the distilled runs", folder, b)
            woken_ms = time.time() * 1000
            subprocess.run(["kill", "-CONT", str(a.pid)], check=True)
            _until(lambda: "waiting" in _log(folder / "logs-a"),
                   "A waited for B's live runs", folder, a, b)
            go.touch()
            assert b.wait(timeout=TIMEOUT_S) == 0, _stderr(b, folder)
        finally:
            go.touch()
            if b.poll() is None:
                b.kill()
                b.wait()
        assert a.wait(timeout=TIMEOUT_S) == 0, _stderr(a, folder)
    finally:
        if a.poll() is None:
            subprocess.run(["kill", "-CONT", str(a.pid)], check=False)
            a.kill()
            a.wait()
    return a.pid, woken_ms


def _check_store(plan: Plan, uri: str, folder: Path, woken_ms: float) -> dict[str, list]:
    """Exactly one FINISHED run per run id, all B's; no metric of A after it woke, no duplicate
    metric step, no heartbeat after a run finished; A's log says it lost the teacher."""
    runs = [r for r in nested_runs(uri) if r.info.lifecycle_stage == "active"]
    finished = Counter(r.data.tags[schema.TAG_RUN_ID] for r in runs
                       if r.info.status == "FINISHED")
    assert finished == Counter({run.id: 1 for run in plan.runs})
    owners = {r.data.tags[schema.TAG_LEASE_OWNER] for r in runs if r.info.status == "FINISHED"}
    assert len(owners) == 1  # B's
    client = MlflowClient(uri)
    by_id: dict[str, list] = {}
    for run in runs:
        by_id.setdefault(run.data.tags[schema.TAG_RUN_ID], []).append(run)
        for key in run.data.metrics:
            history = client.get_metric_history(run.info.run_id, key)
            steps = [m.step for m in history]
            assert len(steps) == len(set(steps)), (run.info.run_name, key, steps)
            if run.info.status != "FINISHED":  # what A left: nothing written after it woke
                assert all(m.timestamp < woken_ms for m in history), (run.info.run_name, key)
        if run.info.status == "FINISHED":
            heartbeat = int(run.data.tags[schema.TAG_LEASE_HEARTBEAT])
            assert heartbeat <= run.info.end_time, run.info.run_name
    log_a = _log(folder / "logs-a")
    assert "writes nothing more to it" in log_a and "trying again later" in log_a
    return by_id


def _frozen_before_the_checkpoint(uri: str, folder: Path) -> None:
    """A froze at its teacher's 2nd step (no checkpoint): B trained the teacher in a new MLflow
    run; A's run is KILLED, naming its replacement's owner, with nothing A wrote after waking."""
    plan = _plan()
    _, woken = _freeze_and_take_over(plan, uri, folder, freeze_at=2)
    by_id = _check_store(plan, uri, folder, woken)
    teacher = plan.runs_of(plan.studies[0], "teacher")[0]
    statuses = sorted(r.info.status for r in by_id[teacher.id])
    assert statuses == ["FINISHED", "KILLED"]
    [killed] = [r for r in by_id[teacher.id] if r.info.status == "KILLED"]
    assert killed.data.tags[schema.TAG_REPLACED_BY]
    assert killed.data.tags[schema.TAG_LAST_EPOCH] == "0"


def _frozen_after_the_checkpoint(uri: str, folder: Path) -> None:
    """A froze in its teacher's 2nd epoch (epoch 1 saved): B resumed the teacher in the same
    MLflow run, whose epochs are 1, 2, 3 once each."""
    plan = _plan()
    _, woken = _freeze_and_take_over(plan, uri, folder, freeze_at=6)
    by_id = _check_store(plan, uri, folder, woken)
    teacher = plan.runs_of(plan.studies[0], "teacher")[0]
    [run] = by_id[teacher.id]
    steps = [m.step for m in MlflowClient(uri).get_metric_history(run.info.run_id,
                                                                   schema.METRIC_TRAIN_LOSS)]
    assert sorted(steps) == [1, 2, 3]


@pytest.mark.parametrize("case", [_frozen_before_the_checkpoint, _frozen_after_the_checkpoint],
                         ids=["before-checkpoint", "after-checkpoint"])
def test_a_frozen_owner_on_sqlite(case, blank_store: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    case(fresh_store(blank_store, tmp_path), tmp_path)


@pytest.mark.parametrize("case", [_frozen_before_the_checkpoint, _frozen_after_the_checkpoint],
                         ids=["before-checkpoint", "after-checkpoint"])
def test_a_frozen_owner_on_a_server(case, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    server = start_server(tmp_path / "server")
    try:
        case(server.url, tmp_path)
    finally:
        server.stop()
