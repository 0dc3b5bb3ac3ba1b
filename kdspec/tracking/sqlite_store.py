"""A new sqlite MLflow store is created whole or not at all.

MLflow builds a new sqlite database in place: it creates the tables, then runs some sixty
migrations, about 1,700 statements that sqlite cannot roll back as one. A process killed among
them, or two processes migrating one file at once, leaves a database that every later command
refuses ("table ... already exists"). So kdspec creates a missing store itself:

1. under an exclusive ``flock`` on ``.<name>.lock`` beside the database (every kdspec process on
   the machine queues there; the first creates, the others find the store made);
2. into ``.<name>.creating-<pid>`` beside it, by MLflow's own ``SqlAlchemyStore`` (so the schema
   is exactly MLflow's), flushed to disk;
3. then ``os.replace`` onto the real name: atomic, so the real path is never half a store.

Step 2 runs MLflow's ~3 s of migrations once per MLflow version, into an empty template store
in ``~/.cache/kdspec/mlflow-stores``; every later store is a copy of it whose Default experiment
is pointed at its own artifact folder (the one value of an empty store that depends on where it
is), so a new store costs milliseconds. That one edit is made in the ``experiments`` table
directly (MLflow has no API to move an experiment's artifact location): the MLflow versions
kdspec supports are pinned in pyproject.toml (``mlflow<4``), and the tests open such a copy with
``MlflowClient`` and log to it. The head schema revision a complete store must have is read
from the template MLflow built, not from MLflow's private functions.

A file at the real path whose schema is not MLflow's current head and that holds no runs is a
half-created store (from before this existed, or made by plain MLflow): it is moved aside to
``.<name>.broken-<time>`` and created again. One that holds runs is never touched; MLflow then
says what it needs (usually ``mlflow db upgrade``). Leftover ``.creating-*`` files of dead
processes are removed.

``kdspec run`` starts that creation in a child process (:func:`create_in_background`) as soon as
it knows the store's URI, so MLflow's migrations (~3 s on a 2-core machine) run while the main
process imports torch and MLflow; the main process then takes the same lock and finds the store
made (or makes it itself, if the child could not).
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from kdspec.errors import TrackingError
from kdspec.tracking.store_uri import SQLITE_PREFIX, local_artifact_root, sqlite_path


@functools.cache
def head_revision() -> str:
    """The schema revision this MLflow creates: that of the empty template store MLflow built
    (no private MLflow function is needed to know it); without a usable template cache, that of
    a store MLflow builds in a temporary folder."""
    template = _template()
    revision = schema_revision(template[0]) if template is not None else None
    if revision is not None:
        return revision
    with tempfile.TemporaryDirectory(prefix="kdspec-mlflow-head-") as scratch:
        probe = Path(scratch) / "probe.db"
        _build_with_mlflow(probe, str(Path(scratch) / "artifacts"))
        revision = schema_revision(probe)
    if revision is None:
        raise TrackingError("MLflow built a sqlite store without a schema revision")
    return revision


def _query(path: Path, sql: str) -> list[tuple[object, ...]] | None:
    """Rows of ``sql`` on the database read-only, or None when it cannot be read so."""
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True,
                                                timeout=30)) as db:
            return db.execute(sql).fetchall()
    except sqlite3.Error:
        return None


def schema_revision(path: Path) -> str | None:
    """The alembic revision recorded in the database, or None (no table, not a database)."""
    rows = _query(path, "SELECT version_num FROM alembic_version")
    return str(rows[0][0]) if rows else None


def run_count(path: Path) -> int:
    """Runs the database holds (0 when it has no runs table)."""
    rows = _query(path, "SELECT COUNT(*) FROM runs")
    return int(rows[0][0]) if rows else 0  # type: ignore[call-overload]


def is_complete(path: Path) -> bool:
    """Whether ``path`` is an MLflow database at this MLflow's head revision."""
    return path.is_file() and schema_revision(path) == head_revision()


@contextlib.contextmanager
def creation_lock(path: Path) -> Iterator[None]:
    """An exclusive lock on ``.<name>.lock`` beside the database, held for the block."""
    lock = path.parent / f".{path.name}.lock"
    with open(lock, "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_dead_attempts(path: Path) -> None:
    for leftover in path.parent.glob(f".{path.name}.creating-*"):
        pid = leftover.name.rsplit("-", 1)[-1]
        if not pid.isdigit() or not _pid_alive(int(pid)) or int(pid) == os.getpid():
            with contextlib.suppress(OSError):
                leftover.unlink()


def _build_with_mlflow(path: Path, artifact_root: str) -> None:
    """MLflow's own creation (tables, migrations, the Default experiment) at ``path``."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    store = SqlAlchemyStore(f"{SQLITE_PREFIX}{path.resolve()}", artifact_root)
    store.engine.dispose()


def template_dir() -> Path:
    """Where the empty template stores live: ``$XDG_CACHE_HOME/kdspec/mlflow-stores``
    (``~/.cache/kdspec/mlflow-stores``)."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache").expanduser()
    return base / "kdspec" / "mlflow-stores"


def _template() -> tuple[Path, str] | None:
    """An empty store this MLflow built (at its head revision), made once per MLflow version
    under the same lock as any store, and the artifact root it was built with; None when the
    cache folder cannot be used (the caller then builds with MLflow directly)."""
    from mlflow.version import VERSION

    folder = template_dir()
    path = folder / f"empty-mlflow-{VERSION}.db"
    root = str(folder / "template-artifacts")

    def made() -> bool:  # renamed into place only once MLflow had built it whole
        return path.is_file() and schema_revision(path) is not None

    try:
        if made():
            return path, root
        folder.mkdir(parents=True, exist_ok=True)
        with creation_lock(path):
            if not made():
                _remove_dead_attempts(path)
                partial = path.parent / f".{path.name}.creating-{os.getpid()}"
                with contextlib.suppress(FileNotFoundError):
                    partial.unlink()
                _build_with_mlflow(partial, root)
                os.replace(partial, path)
        return path, root
    except (OSError, sqlite3.Error):
        return None


def _from_template(partial: Path, artifact_root: str) -> bool:
    """Copy the template to ``partial`` and point its Default experiment at this store's
    artifact root (the one value MLflow writes that depends on where a store is); False, with
    nothing left at ``partial``, when there is no usable template."""
    template = _template()
    if template is None:
        return False
    path, template_root = template
    try:
        shutil.copyfile(path, partial)
        with contextlib.closing(sqlite3.connect(partial)) as db:
            rows = db.execute("SELECT artifact_location FROM experiments "
                              "WHERE experiment_id = 0").fetchall()
            count = db.execute("SELECT COUNT(*) FROM experiments").fetchone()
            if len(rows) != 1 or count != (1,) or not str(rows[0][0]).startswith(template_root):
                raise sqlite3.DatabaseError("not the template this kdspec makes")
            now = int(time.time() * 1000)
            db.execute("UPDATE experiments SET artifact_location = ?, creation_time = ?, "
                       "last_update_time = ? WHERE experiment_id = 0",
                       (artifact_root + str(rows[0][0])[len(template_root):], now, now))
            db.commit()
        return True
    except (OSError, sqlite3.Error):
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()
        return False


def _create(path: Path, artifact_root: str) -> None:
    """Build the store at a temporary name, then move it into place: a copy of the template
    store (MLflow's migrations take ~3 s per new database; copying takes milliseconds), or,
    without a usable template, MLflow's own creation."""
    partial = path.parent / f".{path.name}.creating-{os.getpid()}"
    with contextlib.suppress(FileNotFoundError):
        partial.unlink()
    if not _from_template(partial, artifact_root):
        _build_with_mlflow(partial, artifact_root)
    with open(partial, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(partial, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def prepare_sqlite_store(uri: str, *, artifact_root: str) -> None:
    """Make sure the database of a sqlite URI exists whole (see the module docstring); a no-op
    for other stores and for a database that is already complete."""
    path = sqlite_path(uri)
    if path is None or is_complete(path):
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with creation_lock(path):
            if is_complete(path):
                return  # another process made it while this one waited
            _remove_dead_attempts(path)
            if path.exists():
                if run_count(path) > 0:
                    return  # a store with results: MLflow says what it needs
                broken = path.parent / f".{path.name}.broken-{time.strftime('%Y%m%d-%H%M%S')}"
                os.replace(path, broken)
            _create(path, artifact_root)
    except OSError as err:
        raise TrackingError(f"cannot create the MLflow store {path}: {err}") from err


def create_in_background(uri: str) -> subprocess.Popen[bytes] | None:
    """Start creating the database of a sqlite URI in a child process when no file is there
    yet; None when there is nothing to do (not sqlite, or a file exists: the main process
    checks it). The child goes through :func:`prepare_sqlite_store` under the same lock, so a
    main process that gets there first simply creates the store itself and the child finds it
    made. The child's failures are not reported: the main process's own attempt reports them."""
    path = sqlite_path(uri)
    if path is None or path.exists():
        return None
    code = ("import sys; from kdspec.tracking.sqlite_store import create_store_main; "
            "create_store_main(sys.argv[1])")
    try:
        return subprocess.Popen([sys.executable, "-c", code, uri], stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    except OSError:
        return None


def create_store_main(uri: str) -> None:
    """The child of :func:`create_in_background`."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    root = local_artifact_root(uri)
    prepare_sqlite_store(uri, artifact_root=str(root) if root else "")
