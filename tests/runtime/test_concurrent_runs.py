"""Two `kdspec run` of one plan on one store, started together (a second shard started by
mistake, or two people): together they finish the plan, and every run is trained exactly once,
on a sqlite store and on an `mlflow server`."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.mlflow_server import start_server
from tests.runtime.run_helpers import (
    finished_by_kdspec_id,
    fresh_store,
    kdspec_command,
    nested_runs,
    small_plan,
    subprocess_env,
    write_plan,
)

pytestmark = pytest.mark.integration


def _both(path: Path, uri: str, folder: Path) -> list[tuple[int, str]]:
    env = subprocess_env() | {"KDSPEC_CLAIM_SETTLE": "1.0"}
    procs = [subprocess.Popen(kdspec_command(str(path), "--tracking-uri", uri, "--quiet",
                                             "--poll-seconds", "1",
                                             "--log-dir", str(folder / f"logs-{i}")),
                              cwd=folder, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True) for i in range(2)]
    return [(p.wait(timeout=600), p.communicate()[1]) for p in procs]


def _trained_once(uri: str, plan_ids: list[str], folder: Path) -> None:
    runs = [r for r in nested_runs(uri) if r.info.lifecycle_stage == "active"]
    finished = finished_by_kdspec_id(runs)
    assert sorted(finished) == sorted(plan_ids)
    assert all(len(ids) == 1 for ids in finished.values()), finished
    assert len(runs) == len(plan_ids)  # no second, abandoned run of anything (lost claims
    # delete theirs)
    # The two logs together finished each run once (which process trained what depends on
    # who started first).
    trained = [log.read_text().count(" finished: test_acc")
               for log in sorted(folder.glob("logs-*/*.log"))]
    assert len(trained) == 2 and sum(trained) == len(plan_ids)


def test_two_processes_on_one_sqlite_store_train_every_run_once(blank_store: Path,
                                                                tmp_path: Path) -> None:
    plan = small_plan()
    path, uri = write_plan(plan, tmp_path), fresh_store(blank_store, tmp_path)
    results = _both(path, uri, tmp_path)
    assert [code for code, _ in results] == [0, 0], [err[-2000:] for _, err in results]
    _trained_once(uri, [r.id for r in plan.runs], tmp_path)


@pytest.mark.extended  # make test keeps the sqlite case; the frozen-owner tests use a server
def test_two_processes_on_one_server_train_every_run_once(tmp_path: Path) -> None:
    plan = small_plan()
    path = write_plan(plan, tmp_path)
    server = start_server(tmp_path / "server")
    try:
        results = _both(path, server.url, tmp_path)
        assert [code for code, _ in results] == [0, 0], [err[-2000:] for _, err in results]
        _trained_once(server.url, [r.id for r in plan.runs], tmp_path)
    finally:
        server.stop()
