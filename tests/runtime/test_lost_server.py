"""A tracking server that goes away mid-run: the plan stops with one line after a bounded wait
(not hours of retries), finished runs are kept, and the same command finishes the plan once the
server is back."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from kdspec.cli import main
from tests.mlflow_server import start_server
from tests.runtime.run_helpers import (
    finished_by_kdspec_id,
    kdspec_command,
    nested_runs,
    small_plan,
    sqlite_states,
    subprocess_env,
    write_plan,
)

pytestmark = pytest.mark.integration
POLL_TIMEOUT_S = 180.0


@pytest.mark.extended
def test_a_lost_server_stops_the_plan_and_the_rerun_finishes_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plan = small_plan()
    path = write_plan(plan, tmp_path)
    server = start_server(tmp_path / "server")
    proc = subprocess.Popen(
        kdspec_command(str(path), "--tracking-uri", server.url, "--quiet",
                       "--log-dir", str(tmp_path / "logs")),
        cwd=tmp_path, env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)
    try:
        deadline = time.monotonic() + POLL_TIMEOUT_S
        while not any(s[0] == "FINISHED" for s in sqlite_states(server.database)):
            assert proc.poll() is None, proc.communicate()[1]
            assert time.monotonic() < deadline, "no run finished in time"
            time.sleep(0.1)
        lost_at = time.monotonic()
        server.stop()
        _, err = proc.communicate(timeout=300)  # a hang would end here, not after hours
        stopped_after = time.monotonic() - lost_at
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        server.stop()
    assert proc.returncode == 1
    assert "lost the MLflow store" in err and "run the same command again" in err
    assert "Traceback" not in err
    print(f"kdspec run stopped {stopped_after:.1f} s after the server went away")
    kept = {k for k, v in finished_by_kdspec_id(
        [r for r in _runs_of(server.database)]).items() if v}
    assert kept  # what finished before the server went away is still there

    back = start_server(tmp_path / "server", port=server.port)
    try:
        assert main(["run", str(path), "--tracking-uri", back.url, "--quiet",
                     "--log-dir", str(tmp_path / "logs")]) == 0
        finished = finished_by_kdspec_id(nested_runs(back.url))
    finally:
        back.stop()
    assert sorted(finished) == sorted(r.id for r in plan.runs)
    assert all(len(ids) == 1 for ids in finished.values())  # nothing trained twice
    assert kept <= set(finished)


def _runs_of(database: Path) -> list:
    """The nested runs of a server's backend, read directly from its sqlite file."""
    return nested_runs(f"sqlite:///{database}")


def test_report_against_a_dead_server_is_one_line(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    plan = small_plan()
    path = write_plan(plan, tmp_path)
    dead = "http://127.0.0.1:9"  # the discard port: nothing listens
    started = time.monotonic()
    assert main(["report", str(path), "--tracking-uri", dead, "--no-log"]) == 1
    err = capsys.readouterr().err
    assert "cannot reach the MLflow store http://127.0.0.1:9" in err
    print(f"kdspec report gave up after {time.monotonic() - started:.1f} s")
