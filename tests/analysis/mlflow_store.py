"""Test helper: log runs into a real MLflow store in exactly the layout of kdspec.tracking.schema.

The analysis tests (and bench/bench_report.py) fill a sqlite store with synthetic predictions
through this, the way the runtime would: one parent run per study, one nested run per plan run
with the kdspec tags, and a ``predictions.npz`` artifact.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from mlflow.tracking import MlflowClient

from kdspec.plan import Plan, Run, Study
from kdspec.tracking import schema


def open_client(tmp_dir: Path) -> tuple[MlflowClient, str]:
    """A client on a fresh sqlite store inside ``tmp_dir``, and its tracking URI."""
    uri = f"sqlite:///{tmp_dir / 'mlruns.db'}"
    return MlflowClient(tracking_uri=uri), uri


def experiment_for(client: MlflowClient, name: str, artifact_root: Path | None) -> str:
    """The id of experiment ``name``, created if needed with an explicit artifact location
    under ``artifact_root`` (None: the server's default, e.g. its proxied artifact store)."""
    existing = client.get_experiment_by_name(name)
    if existing is not None:
        return existing.experiment_id
    location = None if artifact_root is None else (artifact_root / name).as_uri()
    return client.create_experiment(name, artifact_location=location)


def log_parent(client: MlflowClient, experiment_id: str, study: Study, plan: Plan) -> str:
    """The study's parent run (tags kind = plan, plan hash, study; artifact plan.json)."""
    parent = client.create_run(experiment_id, run_name=f"{study.name}", tags={
        schema.TAG_KIND: schema.KIND_PLAN, schema.TAG_LAYOUT: schema.LAYOUT_VERSION,
        schema.TAG_PLAN_HASH: study.study_hash, schema.TAG_STUDY: study.name,
    })
    with tempfile.TemporaryDirectory() as tmp:
        plan_path = Path(tmp) / schema.ARTIFACT_PLAN
        plan_path.write_text(plan.to_json())
        client.log_artifact(parent.info.run_id, str(plan_path))
    client.set_terminated(parent.info.run_id)
    return parent.info.run_id


def write_predictions(path: Path, y_true: np.ndarray, y_pred: np.ndarray,
                      attributes: dict[str, np.ndarray] | None = None) -> Path:
    """A predictions.npz with int64 y_true, y_pred and ``attr/<name>`` arrays."""
    arrays = {schema.PRED_Y_TRUE: y_true.astype(np.int64),
              schema.PRED_Y_PRED: y_pred.astype(np.int64)}
    for name, values in (attributes or {}).items():
        arrays[schema.PRED_ATTRIBUTE_PREFIX + name] = values.astype(np.int64)
    np.savez(path, **arrays)  # type: ignore[arg-type]
    return path


def log_plan_run(client: MlflowClient, experiment_id: str, run: Run, *,
                 parent_run_id: str | None, predictions: Path | None,
                 status: str = "FINISHED") -> str:
    """One nested run of a plan run with its kdspec tags and (optionally) its predictions file.

    ``predictions`` is logged as ``predictions.npz`` whatever the local file is called, so a
    test can log a corrupted file under the real name.
    """
    tags = {
        schema.TAG_KIND: schema.KIND_RUN, schema.TAG_LAYOUT: schema.LAYOUT_VERSION,
        schema.TAG_RUN_ID: run.id, schema.TAG_ROLE: run.role, schema.TAG_SEED: str(run.seed),
        schema.TAG_TEMPERATURE: "" if run.temperature is None else f"{run.temperature:g}",
        schema.TAG_TEACHER_RUN_ID: run.teacher_id or "",
    }
    if parent_run_id:
        tags["mlflow.parentRunId"] = parent_run_id
    mlflow_run = client.create_run(experiment_id, run_name=f"{run.role}-{run.seed}", tags=tags)
    run_id = mlflow_run.info.run_id
    if predictions is not None:
        with tempfile.TemporaryDirectory() as tmp:
            target = Path(tmp) / schema.ARTIFACT_PREDICTIONS
            target.write_bytes(predictions.read_bytes())
            client.log_artifact(run_id, str(target))
    client.set_terminated(run_id, status=status)
    return run_id


def log_study(client: MlflowClient, plan: Plan, study: Study, artifact_root: Path | None,
              predictions: dict[str, tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]],
              *, skip: frozenset[str] = frozenset()) -> str:
    """Log a parent run and one FINISHED run per plan run in ``predictions`` (minus ``skip``).

    Returns the parent run id.
    """
    experiment_id = experiment_for(client, study.tracking.experiment, artifact_root)
    parent = log_parent(client, experiment_id, study, plan)
    with tempfile.TemporaryDirectory() as tmp:
        for run_id in study.run_ids:
            if run_id in skip or run_id not in predictions:
                continue
            y_true, y_pred, attributes = predictions[run_id]
            path = write_predictions(Path(tmp) / f"{run_id}.npz", y_true, y_pred, attributes)
            log_plan_run(client, experiment_id, plan.run(run_id), parent_run_id=parent,
                         predictions=path)
    return parent
