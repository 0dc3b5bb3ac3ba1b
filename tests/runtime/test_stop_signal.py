"""``kdspec run`` stopped by SIGTERM (``scancel``, preemption) in a real process on a real
sqlite store: it exits 143 with a summary that says how to resume, no run is left RUNNING with
a lease, and the same command finishes the plan at once (no lease timeout to wait out)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.factories import tiny_recipe
from tests.runtime.run_helpers import (
    finished_by_kdspec_id,
    fresh_store,
    kdspec_command,
    nested_runs,
    small_plan,
    sqlite_states,
    subprocess_env,
    write_plan,
)

pytestmark = pytest.mark.integration


def test_sigterm_releases_the_runs_and_the_same_command_finishes_the_plan(
        blank_store: Path, tmp_path: Path) -> None:
    plan = small_plan(teacher_recipe=tiny_recipe(epochs=3, batch_size=32),
                      student_recipe=tiny_recipe(epochs=2, batch_size=128))
    path, uri = write_plan(plan, tmp_path), fresh_store(blank_store, tmp_path)
    command = kdspec_command(str(path), "--tracking-uri", uri, "--quiet",
                             "--log-dir", str(tmp_path / "logs"))
    # Held at the 25th step of the first teacher (epoch 2 of 3, 20 batches an epoch) until the
    # signal has arrived (tests/runtime/owner_hooks.py): the stop lands mid-epoch, not between
    # runs, however slow the machine.
    go = tmp_path / "go"
    held = [sys.executable, "-m", "tests.runtime.owner_hooks", "pause", "teacher", "25",
            str(go), "--", *command[command.index("run"):]]
    proc = subprocess.Popen(held, cwd=tmp_path, env=subprocess_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 180
        # Wait for the teacher's first saved epoch, then stop it the way scancel does.
        while not any(status == "RUNNING" and epoch >= 1
                      for status, _, epoch in sqlite_states(tmp_path / "mlruns.db")):
            assert proc.poll() is None, proc.communicate()[1]
            assert time.monotonic() < deadline, "no epoch finished in time"
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        go.touch()
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 143, err[-3000:]
    assert "rerun the same command to resume" in err and "Traceback" not in err
    assert "interrupted" in err  # the summary table says which runs
    states = sqlite_states(tmp_path / "mlruns.db")
    assert not any(status == "RUNNING" for status, _, _ in states), states
    assert any(status == "KILLED" and epoch >= 1 for status, _, epoch in states)
    log = next((tmp_path / "logs").glob("*.log")).read_text()
    assert "SIGTERM: stopping after the current batch" in log
    started = time.monotonic()
    again = subprocess.run(command, cwd=tmp_path, env=subprocess_env(), capture_output=True,
                           text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "resuming at epoch" in "".join(p.read_text() for p in (tmp_path / "logs").glob("*.log"))
    assert "waiting" not in again.stderr  # nothing held: no lease to wait out
    finished = finished_by_kdspec_id(nested_runs(uri))
    assert sorted(finished) == sorted(r.id for r in plan.runs)
    assert all(len(v) == 1 for v in finished.values())
    print(f"resume after SIGTERM finished the plan in {time.monotonic() - started:.1f} s")
