"""Two processes starting runs of one experiment at once both log the dataset as an input.

MLflow looks the dataset up and inserts it when missing without locking the lookup, so the
second writer can fail on the store's unique key (seen in CI: two ``kdspec run`` on one sqlite
file, "UNIQUE constraint failed: datasets.experiment_id, datasets.name, datasets.digest"). The
race is made deterministic here: just before this process inserts the dataset row, "another
process" (a second sqlite connection to the same file) inserts the same row and commits.
"""

from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path

from sqlalchemy import event

from kdspec.tracking import schema
from kdspec.tracking.run_store import DatasetRecord
from kdspec.tracking.store import MlflowStore
from tests.runtime.run_helpers import fresh_store

DATASET = DatasetRecord(name="fashion_mnist", digest="0123abcd", source="/data/fashion")


def _other_writer_first(store: MlflowStore, db: Path) -> list[str]:
    """Arrange that the next INSERT INTO datasets is preceded by another connection's insert
    of the same (experiment, name, digest); returns the list the hook appends to when fired."""
    engine = store.client._tracking_client.store.engine
    fired: list[str] = []

    def before(conn, cursor, statement, parameters, context, executemany):  # noqa: ANN001
        if fired or not statement.lstrip().upper().startswith("INSERT INTO DATASETS"):
            return
        fired.append(statement)
        other = sqlite3.connect(db)
        experiment_id = other.execute(
            "SELECT experiment_id FROM experiments WHERE name = 'race'").fetchone()[0]
        other.execute(
            "INSERT INTO datasets (dataset_uuid, experiment_id, name, digest, "
            "dataset_source_type, dataset_source) VALUES (?, ?, ?, ?, 'local', ?)",
            (uuid.uuid4().hex, experiment_id, DATASET.name, DATASET.digest, DATASET.source))
        other.commit()
        other.close()

    event.listen(engine, "before_cursor_execute", before)
    return fired


def test_a_dataset_inserted_by_another_process_meanwhile_is_reused(blank_store: Path,
                                                                   tmp_path: Path) -> None:
    uri = fresh_store(blank_store, tmp_path)
    store = MlflowStore(uri)
    run_id = store.create_run(experiment="race", parent_id=None, run_name="r",
                              tags={schema.TAG_RUN_ID: "k"})
    fired = _other_writer_first(store, tmp_path / "mlruns.db")
    store.log_input(run_id, DATASET)
    assert fired, "the other writer's insert never ran: the race was not exercised"
    inputs = store.client.get_run(run_id).inputs.dataset_inputs
    assert [(i.dataset.name, i.dataset.digest) for i in inputs] == [(DATASET.name,
                                                                     DATASET.digest)]
    rows = sqlite3.connect(tmp_path / "mlruns.db").execute(
        "SELECT COUNT(*) FROM datasets WHERE name = ?", (DATASET.name,)).fetchone()[0]
    assert rows == 1
