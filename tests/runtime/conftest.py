"""Fixtures shared by the runtime's integration tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow import MlflowClient

from tests.runtime.run_helpers import sqlite_uri


@pytest.fixture(scope="session")
def blank_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty MLflow sqlite file with its schema created once: MLflow's migrations take
    several seconds per new database, so each test copies this file (``fresh_store``)."""
    folder = tmp_path_factory.mktemp("blank-store")
    MlflowClient(sqlite_uri(folder)).search_experiments(max_results=1)
    return folder / "mlruns.db"
