"""A new sqlite store is made whole or not at all: processes that open it together, and a process
killed at any moment of its creation, never leave a store that later commands refuse."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow import MlflowClient

from kdspec.tracking.sqlite_store import is_complete, run_count
from kdspec.tracking.store import MlflowStore
from tests.runtime.run_helpers import subprocess_env

pytestmark = pytest.mark.integration

OPEN_STORE = """
import sys
from kdspec.tracking.store import MlflowStore
store = MlflowStore(sys.argv[1])
store.preflight()
print(store.experiment_id("shared"))
"""
#: Kill this process at the k-th SQL statement of the creation (MLflow's creation runs ~1,700).
KILL_AT_STATEMENT = """
import os, signal, sys
from sqlalchemy import event
from sqlalchemy.engine import Engine
kill_at = int(sys.argv[2])
count = 0

@event.listens_for(Engine, "before_cursor_execute")
def maybe_die(*args):
    global count
    count += 1
    if count == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)

if sys.argv[3] == "kdspec":
    from kdspec.tracking.store import MlflowStore
    MlflowStore(sys.argv[1])
else:  # plain MLflow, creating the database in place as it does without kdspec
    from mlflow import MlflowClient
    MlflowClient(sys.argv[1]).search_experiments(max_results=1)
"""


def _python(code: str, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", code, *args], env=subprocess_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_processes_opening_one_new_store_at_once_all_succeed(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'new.db'}"
    processes = [_python(OPEN_STORE, uri) for _ in range(4)]
    outputs = [p.communicate(timeout=240) for p in processes]
    results = [(p.returncode, out) for p, out in zip(processes, outputs, strict=True)]
    assert all(code == 0 for code, _ in results), [err.decode()[-2000:] for _, (_, err) in results]
    # One experiment, created by whichever came first and found by the others.
    assert len({out.strip() for _, (out, _) in results}) == 1
    assert is_complete(tmp_path / "new.db")
    assert not list(tmp_path.glob(".new.db.creating-*"))


@pytest.mark.parametrize("kill_at", [1, 250, 900, 1500])
def test_a_kill_during_creation_leaves_nothing_half_made(kill_at: int, tmp_path: Path) -> None:
    db = tmp_path / "new.db"
    uri = f"sqlite:///{db}"
    child = _python(KILL_AT_STATEMENT, uri, str(kill_at), "kdspec")
    child.communicate(timeout=240)
    assert child.returncode == -signal.SIGKILL
    assert not db.exists()  # the half-made database only ever had a temporary name
    store = MlflowStore(uri)
    store.preflight()
    assert is_complete(db) and not list(tmp_path.glob(".new.db.creating-*"))


def test_a_half_made_store_without_runs_is_rebuilt_one_with_runs_is_left(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    uri = f"sqlite:///{db}"
    child = _python(KILL_AT_STATEMENT, uri, "900", "mlflow")
    child.communicate(timeout=240)
    assert child.returncode == -signal.SIGKILL
    assert db.exists() and not is_complete(db)  # what plain MLflow leaves: a wedged store
    MlflowStore(uri).preflight()
    assert is_complete(db)
    assert len(list(tmp_path.glob(".old.db.broken-*"))) == 1  # kept aside, not deleted
    # A store that holds runs is never moved or rebuilt, whatever its schema says.
    client = MlflowClient(uri)
    client.create_run(client.create_experiment("e"))
    assert run_count(db) == 1
    MlflowStore(uri)
    assert run_count(db) == 1 and len(list(tmp_path.glob(".old.db.broken-*"))) == 1
