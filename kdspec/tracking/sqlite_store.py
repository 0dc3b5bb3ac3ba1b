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

A file at the real path whose schema is not MLflow's current head and that holds no runs is a
half-created store (from before this existed, or made by plain MLflow): it is moved aside to
``.<name>.broken-<time>`` and created again. One that holds runs is never touched; MLflow then
says what it needs (usually ``mlflow db upgrade``). Leftover ``.creating-*`` files of dead
processes are removed.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

from kdspec.errors import TrackingError

SQLITE_PREFIX = "sqlite:///"


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI (relative to the working folder unless
    absolute), or None for any other store (and for an in-memory database)."""
    if not uri.startswith(SQLITE_PREFIX):
        return None
    rest = uri.removeprefix(SQLITE_PREFIX).split("?", 1)[0]
    if rest in ("", ":memory:"):
        return None
    return Path(rest)


def head_revision() -> str:
    """The schema revision this MLflow creates (the single head of its migrations)."""
    from mlflow.store.db.utils import _get_latest_schema_revision

    return str(_get_latest_schema_revision())


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


def _create(path: Path, artifact_root: str) -> None:
    """Build the store at a temporary name with MLflow's own code, then move it into place."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    partial = path.parent / f".{path.name}.creating-{os.getpid()}"
    with contextlib.suppress(FileNotFoundError):
        partial.unlink()
    store = SqlAlchemyStore(f"{SQLITE_PREFIX}{partial.resolve()}", artifact_root)
    store.engine.dispose()
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
