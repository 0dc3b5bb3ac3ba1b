"""Helpers of the ``kdspec run`` integration tests: tiny plans on disk and reading a store back."""

from __future__ import annotations

import os
import shutil
import sqlite3
import sys
from pathlib import Path

from mlflow import MlflowClient
from mlflow.entities import Run as MlflowRun
from mlflow.entities import ViewType

from kdspec.plan import Plan
from kdspec.tracking import schema
from tests.factories import dataset_spec, tiny_plan, tiny_recipe

REPO = Path(__file__).resolve().parents[2]


def small_plan(**overrides: object) -> Plan:
    """Digits (640 training images: 5 batches), LeNet-5 teacher and student, 1 epoch,
    2 seeds x 2 temperatures: 8 runs."""
    fields: dict[str, object] = dict(
        dataset=dataset_spec("digits", train_subset=640),
        teacher_arch="lenet5", student_arch="lenet5", temperatures=(2.0, 4.0), seeds=(0, 1),
        teacher_recipe=tiny_recipe(epochs=1, batch_size=128),
        student_recipe=tiny_recipe(epochs=1, batch_size=128),
    )
    fields.update(overrides)
    return tiny_plan(**fields)  # type: ignore[arg-type]


def write_plan(plan: Plan, folder: Path) -> Path:
    path = folder / "plan.json"
    path.write_text(plan.to_json())
    return path


def sqlite_uri(folder: Path) -> str:
    return f"sqlite:///{folder}/mlruns.db"


def fresh_store(blank: Path, folder: Path) -> str:
    """A copy of the ``blank_store`` fixture's database in ``folder``; returns its URI."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(blank, folder / "mlruns.db")
    return sqlite_uri(folder)


def nested_runs(uri: str) -> list[MlflowRun]:
    """Every run with ``kdspec.kind = run`` in every experiment of the store."""
    client = MlflowClient(uri)
    ids = [e.experiment_id for e in client.search_experiments(view_type=ViewType.ALL)]
    return list(client.search_runs(ids, f"tags.`{schema.TAG_KIND}` = '{schema.KIND_RUN}'",
                                   run_view_type=ViewType.ALL, max_results=1000))


def finished_by_kdspec_id(runs: list[MlflowRun]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for run in runs:
        if run.info.status == "FINISHED":
            out.setdefault(run.data.tags[schema.TAG_RUN_ID], []).append(run.info.run_id)
    return out


def sqlite_states(db: Path) -> list[tuple[str, str, int]]:
    """(status, kdspec id, last epoch) of every nested run, read with plain sqlite3 so a test can
    poll a store another process is writing."""
    if not db.exists():
        return []
    query = """
        SELECT r.status, k.value, COALESCE(e.value, '0') FROM runs r
        JOIN tags t ON t.run_uuid = r.run_uuid AND t.key = ? AND t.value = ?
        JOIN tags k ON k.run_uuid = r.run_uuid AND k.key = ?
        LEFT JOIN tags e ON e.run_uuid = r.run_uuid AND e.key = ?
    """
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as con:
            rows = con.execute(query, (schema.TAG_KIND, schema.KIND_RUN, schema.TAG_RUN_ID,
                                       schema.TAG_LAST_EPOCH)).fetchall()
    except sqlite3.OperationalError:  # tables not created yet
        return []
    return [(status, kid, int(epoch or 0)) for status, kid, epoch in rows]


def subprocess_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(MLFLOW_DISABLE_TELEMETRY="true", PYTHONUNBUFFERED="1",
               PYTHONPATH=os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]))
    env.pop("MLFLOW_TRACKING_URI", None)
    return env


def kdspec_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "kdspec.cli", "run", *args]
