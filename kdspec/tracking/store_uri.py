"""What a tracking URI names: an MLflow server (which decides where artifacts go), a sqlite file,
or another database; and where a store that is not a server keeps its artifacts. Plain string
and path work, shared by the client, the sqlite store's creation and the store."""

from __future__ import annotations

from pathlib import Path

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


def is_server_uri(uri: str) -> bool:
    """Whether the store is an MLflow server (which then decides where artifacts go)."""
    return uri.startswith(("http://", "https://", "databricks"))


def local_artifact_root(uri: str) -> Path | None:
    """Where experiments of a non-server store keep artifacts: ``mlartifacts/`` next to a sqlite
    file, or in the working folder for other databases; None for a server."""
    if is_server_uri(uri):
        return None
    path = sqlite_path(uri)
    if path is not None:
        return (path.parent / "mlartifacts").resolve()
    return (Path.cwd() / "mlartifacts").resolve()
