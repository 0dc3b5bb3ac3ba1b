"""kdspec as a lab runs it: Slurm array jobs whose tasks share an ``mlflow server`` on
PostgreSQL (tests/cluster/infra.py brings both up on this machine). Each scenario checks that
every run of the plan ends with exactly one FINISHED MLflow run, that nothing was trained twice
and how long it took. Marked ``cluster``: ``make test-cluster`` (and ``.ci/run``) runs them;
skipped with the reason where root or the Debian packages are missing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow import MlflowClient
from mlflow.entities import Run as MlflowRun
from mlflow.entities import ViewType

from bench.lab_cluster import Cluster, missing, running_cluster
from kdspec.plan import Plan
from kdspec.tracking import schema
from tests.factories import dataset_spec, tiny_plan, tiny_recipe

REPO = Path(__file__).resolve().parents[2]
WHY_NOT = missing()
pytestmark = [pytest.mark.cluster, pytest.mark.skipif(bool(WHY_NOT), reason=WHY_NOT)]


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    started = time.monotonic()
    with running_cluster(REPO) as up:
        print(f"\ncluster up in {time.monotonic() - started:.0f} s: {up.tracking_uri}")
        yield up


def _plan(tag: float, epochs: int = 2, batch_size: int = 64) -> Plan:
    """A plan of its own for each scenario (the learning rate makes the run ids differ):
    digits, LeNet-5 teacher and student, 2 seeds, T = 2: 6 runs."""
    recipe = tiny_recipe(epochs=epochs, batch_size=batch_size, lr=0.05 + tag / 1000)
    return tiny_plan(dataset=dataset_spec("digits", train_subset=640, test_subset=200),
                     teacher_arch="lenet5", student_arch="lenet5", seeds=(0, 1),
                     temperatures=(2.0,), teacher_recipe=recipe, student_recipe=recipe)


def _workdir(cluster: Cluster, name: str, plan: Plan) -> tuple[Path, Path]:
    folder = cluster.root / name
    folder.mkdir()
    path = folder / "plan.json"
    path.write_text(plan.to_json())
    return folder, path


def _nested(uri: str, plan: Plan) -> list:  # type: ignore[type-arg]
    client = MlflowClient(uri)
    ids = [e.experiment_id for e in client.search_experiments(view_type=ViewType.ALL)]
    runs = client.search_runs(ids, f"tags.`{schema.TAG_KIND}` = '{schema.KIND_RUN}'",
                              run_view_type=ViewType.ACTIVE_ONLY, max_results=1000)
    wanted = {r.id for r in plan.runs}
    return [r for r in runs if r.data.tags.get(schema.TAG_RUN_ID) in wanted]


def _assert_each_finished_once(uri: str, plan: Plan) -> None:
    runs = _nested(uri, plan)
    finished: dict[str, int] = {}
    for run in runs:
        assert run.info.status != "RUNNING", run.data.tags
        if run.info.status == "FINISHED":
            kid = run.data.tags[schema.TAG_RUN_ID]
            finished[kid] = finished.get(kid, 0) + 1
    assert finished == {r.id: 1 for r in plan.runs}, finished


def _trained_lines(folder: Path) -> int:
    return sum(log.read_text().count(" finished: test_acc")
               for log in folder.rglob(".kdspec/logs/*.log"))


def _submit(cluster: Cluster, folder: Path, plan_path: Path, shards: int,
            *, time_limit: str = "10:00", extra: tuple[str, ...] = ()) -> Path:
    done = subprocess.run(
        [sys.executable, "-m", "kdspec.cli", "submit", str(plan_path), "--shards", str(shards),
         "--cpus", "1", "--tracking-uri", cluster.tracking_uri, "--time", time_limit,
         "--run-args", "--poll-seconds 2", *extra, "--submit"],
        cwd=folder, env=cluster.env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "Submitted batch job" in done.stdout
    return folder / ".kdspec" / "submit" / "plan.sbatch"


def _wait_running_epoch(uri: str, plan: Plan, timeout_s: float = 180,
                        at_most: int | None = None) -> None:
    """Until a run is RUNNING with a saved epoch (and, with ``at_most``, no more than that
    many: the run then has epochs left for a signal sent now to land inside it)."""
    deadline = time.monotonic() + timeout_s

    def saved(r: MlflowRun) -> int:
        return int(r.data.tags.get(schema.TAG_LAST_EPOCH, "0") or 0)

    while not any(r.info.status == "RUNNING" and saved(r) >= 1
                  and (at_most is None or saved(r) <= at_most) for r in _nested(uri, plan)):
        assert time.monotonic() < deadline, "no run saved an epoch in time"
        time.sleep(0.5)


def test_an_array_job_finishes_every_run_once_and_status_and_report_read_the_server(
        cluster: Cluster) -> None:
    plan = _plan(1)
    folder, path = _workdir(cluster, "array", plan)
    started = time.monotonic()
    script = _submit(cluster, folder, path, shards=3)
    cluster.wait_idle()
    took = time.monotonic() - started
    _assert_each_finished_once(cluster.tracking_uri, plan)
    assert _trained_lines(folder) == len(plan.runs)
    assert "--open-mode=append" in script.read_text()
    status = subprocess.run([sys.executable, "-m", "kdspec.cli", "status", str(path),
                             "--tracking-uri", cluster.tracking_uri, "--json"], env=cluster.env,
                            capture_output=True, text=True, timeout=120)
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["studies"][0]["counts"]["finished"] == len(plan.runs)
    report = subprocess.run([sys.executable, "-m", "kdspec.cli", "report", str(path),
                             "--tracking-uri", cluster.tracking_uri, "--out",
                             str(folder / "report")], env=cluster.env, capture_output=True,
                            text=True, timeout=300)
    assert report.returncode == 0, report.stderr
    assert (folder / "report" / "report.md").exists()
    print(f"array of 3: {len(plan.runs)} runs finished once each in {took:.0f} s")


def test_the_same_array_submitted_twice_trains_nothing_twice(cluster: Cluster) -> None:
    plan = _plan(2)
    folder, path = _workdir(cluster, "twice", plan)
    started = time.monotonic()
    script = _submit(cluster, folder, path, shards=2)
    again = cluster.slurm("sbatch", str(script))
    assert "Submitted batch job" in again.stdout
    cluster.wait_idle()
    took = time.monotonic() - started
    _assert_each_finished_once(cluster.tracking_uri, plan)
    assert len(_nested(cluster.tracking_uri, plan)) == len(plan.runs)  # losers deleted theirs
    assert _trained_lines(folder) == len(plan.runs)
    print(f"two arrays of 2: {len(plan.runs)} runs, each trained once, in {took:.0f} s")


def test_scancel_then_a_retry_on_another_node_finishes_the_study_in_that_one_retry(
        cluster: Cluster) -> None:
    """scancel stops the task with SIGTERM: its runs are released, so a retry in a new PID
    namespace (standing in for another node, where the old pid means nothing) resumes them at
    once instead of waiting out the 600 s lease."""
    # 20 short epochs, the signal sent while a run has 14+ left: with 4 epochs (about a second
    # a run) the signal could land between two groups, with nothing claimed to release.
    plan = _plan(3, epochs=20, batch_size=16)
    folder, path = _workdir(cluster, "scancel", plan)
    _submit(cluster, folder, path, shards=1)
    _wait_running_epoch(cluster.tracking_uri, plan, at_most=6)
    cancelled_at = time.monotonic()
    [job] = {line.split()[0].split("_")[0] for line in cluster.jobs()}
    cluster.slurm("scancel", job)
    cluster.wait_idle(timeout_s=120)
    killed = [r for r in _nested(cluster.tracking_uri, plan) if r.info.status == "KILLED"]
    assert killed and all(schema.TAG_INTERRUPTED in r.data.tags for r in killed)
    retry = subprocess.run(
        ["unshare", "--pid", "--fork", "--mount-proc", sys.executable, "-m", "kdspec.cli",
         "run", str(path), "--tracking-uri", cluster.tracking_uri, "--quiet",
         "--log-dir", str(folder / ".kdspec" / "logs")],
        cwd=folder, env=cluster.env, capture_output=True, text=True, timeout=300)
    took = time.monotonic() - cancelled_at
    assert retry.returncode == 0, retry.stderr[-3000:]
    assert "waiting" not in retry.stderr
    _assert_each_finished_once(cluster.tracking_uri, plan)
    assert took < 300  # the lease timeout alone would be 600 s
    print(f"scancel to a finished study with one retry on 'another node': {took:.0f} s "
          f"(was 11 min 48 s with two submissions)")


def test_a_kill_9_on_another_node_is_taken_over_once_its_lease_expires(
        cluster: Cluster) -> None:
    """kill -9 leaves the runs RUNNING with a lease nobody renews (the pid of another PID
    namespace cannot be checked). Another process started right away leaves it alone while the
    lease is live, takes it over when it expires (--lease-timeout 20) and finishes the whole
    study in the same invocation."""
    plan = _plan(4, epochs=4, batch_size=16)
    folder, path = _workdir(cluster, "kill9", plan)
    command = [sys.executable, "-m", "kdspec.cli", "run", str(path), "--tracking-uri",
               cluster.tracking_uri, "--quiet", "--lease-timeout", "20", "--poll-seconds", "5",
               "--log-dir", str(folder / ".kdspec" / "logs")]
    other_node = subprocess.Popen(["unshare", "--pid", "--fork", "--mount-proc", *command],
                                  cwd=folder, env=cluster.env, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
    try:
        _wait_running_epoch(cluster.tracking_uri, plan)
        children = subprocess.run(["pgrep", "-P", str(other_node.pid)], capture_output=True,
                                  text=True).stdout.split()
        for pid in children:  # pid 1 of the namespace: the namespace dies with it
            os.kill(int(pid), signal.SIGKILL)
        other_node.wait(timeout=30)
    finally:
        if other_node.poll() is None:
            other_node.kill()
    killed_at = time.monotonic()
    takeover = subprocess.run(command, cwd=folder, env=cluster.env, capture_output=True,
                              text=True, timeout=400)
    took = time.monotonic() - killed_at
    assert takeover.returncode == 0, takeover.stderr[-3000:]
    # It trains the other runs meanwhile and resumes the killed one once its lease expired
    # (tests/runtime/test_stop_and_takeover.py checks the wait message when nothing else is
    # left to do).
    log = "".join(p.read_text() for p in (folder / ".kdspec" / "logs").glob("*.log"))
    assert "(resuming at epoch" in log
    _assert_each_finished_once(cluster.tracking_uri, plan)
    print(f"kill -9 to a finished study, taken over in the same invocation: {took:.0f} s "
          "(lease timeout 20 s)")


@pytest.mark.timeout(1500)
def test_a_shard_longer_than_its_time_limit_requeues_itself_until_it_is_done(
        cluster: Cluster) -> None:
    """The time limit's warning (``--signal=B:USR1@60`` under a 2-minute limit) stops the task,
    which requeues itself, resumes the interrupted run in the next allocation (Slurm holds a
    requeued task about 2 minutes) and stops requeueing once the shard is done.

    How long the study takes depends on the machine (about 17 s on an idle 2-core VM, a minute
    and a half under load), so whether Slurm's own warning comes before the study ends does too:
    the test delivers the first warning itself, as Slurm does (``scancel --signal=USR1 --batch``:
    to the batch shell), while a run is mid-training; on a slow machine Slurm's own warnings
    requeue it further."""
    plan = _plan(5, epochs=20, batch_size=16)
    folder, path = _workdir(cluster, "requeue", plan)
    started = time.monotonic()
    _submit(cluster, folder, path, shards=1, time_limit="2:00",
            extra=("--warn-seconds", "60", "--max-requeues", "8"))
    _wait_running_epoch(cluster.tracking_uri, plan, at_most=6)
    [job] = {line.split()[0].split("_")[0] for line in cluster.jobs()}
    cluster.slurm("scancel", "--signal=USR1", "--batch", job)
    cluster.wait_idle(timeout_s=1400)
    took = time.monotonic() - started
    output = "".join(p.read_text() for p in (folder / ".kdspec" / "slurm").glob("*.out"))
    requeues = output.count("requeueing (requeue")
    assert requeues >= 1, output
    assert "(restart 1)" in output and "exited 0" in output, output
    assert "not requeued" not in output, output
    assert output.rstrip().splitlines()[-1].startswith("kdspec task 0 exited 0"), output
    _assert_each_finished_once(cluster.tracking_uri, plan)
    log = "".join(p.read_text() for p in (folder / ".kdspec" / "logs").glob("*.log"))
    assert "(resuming at epoch" in log
    print(f"a shard over its 2-minute limit: {requeues} requeue(s), finished in {took:.0f} s")
