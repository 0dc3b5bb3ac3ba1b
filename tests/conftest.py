"""Settings for the whole suite."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Runs claim their lease and check it after a settle time (kdspec.tracking.leases): 2 s by
# default, for processes on different machines. Every test process is on this one and starts
# its runs in sequence, so a short settle keeps the integration tests quick; the tests of
# concurrent runs set their own.
os.environ.setdefault("KDSPEC_CLAIM_SETTLE", "0.2")


@pytest.fixture(scope="session")
def blank_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty MLflow sqlite file with its schema created once: MLflow's migrations take
    several seconds per new database, so each test copies this file (``fresh_store``)."""
    from mlflow import MlflowClient

    folder = tmp_path_factory.mktemp("blank-store")
    MlflowClient(f"sqlite:///{folder}/mlruns.db").search_experiments(max_results=1)
    return folder / "mlruns.db"
