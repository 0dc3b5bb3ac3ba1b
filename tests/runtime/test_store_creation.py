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


def _python(code: str, *args: str, cache: Path | None = None) -> subprocess.Popen[bytes]:
    env = subprocess_env()
    if cache is not None:  # no template store yet: the creation runs MLflow's migrations
        env["XDG_CACHE_HOME"] = str(cache)
    return subprocess.Popen([sys.executable, "-c", code, *args], env=env,
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
    child = _python(KILL_AT_STATEMENT, uri, str(kill_at), "kdspec", cache=tmp_path / "xdg")
    child.communicate(timeout=240)
    assert child.returncode == -signal.SIGKILL
    assert not db.exists()  # the half-made database only ever had a temporary name
    # ... and so did the template store it was being built from
    assert not list((tmp_path / "xdg").rglob("empty-mlflow-*.db"))
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


def test_a_store_created_in_the_background_is_the_store_the_main_process_opens(
        tmp_path: Path) -> None:
    """``kdspec run`` starts the creation in a child and opens the store at once: the main
    process waits on the creation lock and finds one whole store (no broken or partial file)."""
    from kdspec.tracking.sqlite_store import create_in_background, prepare_sqlite_store

    db = tmp_path / "bg" / "mlruns.db"
    db.parent.mkdir()
    uri = f"sqlite:///{db}"
    child = create_in_background(uri)
    assert child is not None
    prepare_sqlite_store(uri, artifact_root=str(tmp_path / "bg" / "mlartifacts"))
    assert child.wait(timeout=120) == 0
    assert is_complete(db) and run_count(db) == 0
    assert sorted(p.name for p in db.parent.iterdir()) == [".mlruns.db.lock", "mlruns.db"]
    assert create_in_background(uri) is None  # a file is there: nothing to start
    assert create_in_background("http://127.0.0.1:5000") is None


def test_a_store_copied_from_the_template_is_a_working_store_of_its_own(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The second new store is a copy of the template MLflow built for the first: same schema
    revision, its own Default experiment artifact folder, and MLflow works with it."""
    from kdspec.tracking.sqlite_store import prepare_sqlite_store, template_dir

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    uris = []
    for name in ("a", "b"):
        folder = tmp_path / name
        folder.mkdir()
        uri = f"sqlite:///{folder / 'mlruns.db'}"
        prepare_sqlite_store(uri, artifact_root=str(folder / "mlartifacts"))
        assert is_complete(folder / "mlruns.db")
        uris.append(uri)
    assert [p.name for p in template_dir().glob("empty-mlflow-*.db")]
    client = MlflowClient(uris[1])
    default = client.get_experiment("0")
    assert default.artifact_location == str(tmp_path / "b" / "mlartifacts" / "0")
    experiment = client.create_experiment("copied")
    run = client.create_run(experiment)
    client.log_metric(run.info.run_id, "m", 1.0)
    assert client.get_run(run.info.run_id).data.metrics == {"m": 1.0}
    assert MlflowClient(uris[0]).search_experiments(filter_string="name = 'copied'") == []
