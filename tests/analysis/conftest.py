"""Shared MLflow stores for the analysis tests (a sqlite store takes ~1 s to create)."""

from __future__ import annotations

import contextlib
import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from kdspec.cli import main
from kdspec.plan import FairnessSpec, Plan, Study
from tests.analysis.mlflow_store import (
    experiment_for,
    log_parent,
    log_plan_run,
    log_study,
    open_client,
    write_predictions,
)
from tests.analysis.synthetic import PlantedEffects, Predictions, synthetic_predictions
from tests.factories import fairness_dataset, tiny_plan

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


@dataclass(frozen=True)
class FilledStore:
    """A sqlite store holding one study's runs, and the plan JSON that describes the study."""

    uri: str
    root: Path
    plan: Plan
    study: Study
    plan_json: Path
    predictions: Predictions
    parent_run_id: str


def small_study_plan(name: str = "e2e") -> Plan:
    """A 10-class study (Trifeature shapes at 32 px): 3 seeds, T in {2, 4}, fairness over
    'color' (the synthetic predictions make it a binary group)."""
    return tiny_plan(name=name, dataset=fairness_dataset(),
                     teacher_arch="resnet56", student_arch="resnet20", seeds=(0, 1, 2),
                     temperatures=(2.0, 4.0),
                     fairness=FairnessSpec(sensitive=("color",), multiclass_aggregate="max"))


@pytest.fixture(scope="session")
def complete_store(tmp_path_factory: pytest.TempPathFactory) -> FilledStore:
    """Every run of the study FINISHED, with a planted hurt class (3, 'circle')."""
    root = tmp_path_factory.mktemp("complete-store")
    plan = small_study_plan()
    study = plan.studies[0]
    client, uri = open_client(root)
    predictions = synthetic_predictions(plan, study, n_test=2000,
                                        effects=PlantedEffects(hurt_class=3))
    parent = log_study(client, plan, study, root / "artifacts", predictions)
    plan_json = root / "plan.json"
    plan_json.write_text(plan.to_json())
    return FilledStore(uri, root, plan, study, plan_json, predictions, parent)


@pytest.fixture(scope="session")
def messy_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Plan, dict[str, str]]:
    """Teachers in another experiment; one DS missing, one FAILED, one corrupted, one with
    another test set; an NDS with two FINISHED runs. Returns (uri, plan, names -> ids)."""
    root = tmp_path_factory.mktemp("messy-store")
    plan = small_study_plan("messy")
    study = plan.studies[0]
    client, uri = open_client(root)
    predictions = synthetic_predictions(plan, study, n_test=600)
    own = experiment_for(client, study.tracking.experiment, root / "art")
    other = experiment_for(client, "another-spec", root / "art")
    parent = log_parent(client, own, study, plan)

    def run_of(role: str, seed: int, temperature: float | None = None) -> str:
        return next(r.id for r in plan.runs_of(study, role, temperature)  # type: ignore[arg-type]
                    if r.seed == seed)

    ids = {"missing": run_of("distilled", 2, 4.0), "failed": run_of("distilled", 1, 4.0),
           "corrupt": run_of("distilled", 1, 2.0), "other_set": run_of("distilled", 0, 4.0),
           "duplicate": run_of("student", 1)}
    mlflow_ids: dict[str, str] = {}
    for run_id in study.run_ids:
        run = plan.run(run_id)
        y_true, y_pred, attrs = predictions[run_id]
        path = root / f"{run_id}.npz"
        if run_id == ids["missing"]:
            continue
        if run_id == ids["corrupt"]:
            path.write_bytes(b"this is not a zip file")
        elif run_id == ids["other_set"]:
            write_predictions(path, y_true[:500], y_pred[:500], {})
        else:
            write_predictions(path, y_true, y_pred, attrs)
        if run_id == ids["duplicate"]:
            older = root / "older.npz"
            write_predictions(older, y_true, np.zeros_like(y_pred), attrs)
            log_plan_run(client, own, run, parent_run_id=parent, predictions=older)
        experiment = other if run.role == "teacher" else own
        status = "FAILED" if run_id == ids["failed"] else "FINISHED"
        mlflow_ids[run_id] = log_plan_run(client, experiment, run, parent_run_id=parent,
                                          predictions=path, status=status)
    ids.update({f"mlflow:{k}": mlflow_ids.get(v, "") for k, v in list(ids.items())})
    return uri, plan, ids


@pytest.fixture(scope="session")
def complete_report(complete_store: FilledStore, tmp_path_factory: pytest.TempPathFactory
                    ) -> tuple[Path, int, str, str]:
    """Run `kdspec report` once for the module: (out dir, exit code, stdout, stderr)."""
    out = tmp_path_factory.mktemp("complete-report")
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = main(["report", str(complete_store.plan_json), "--tracking-uri",
                     complete_store.uri, "--out", str(out)])
    return out, code, stdout.getvalue(), stderr.getvalue()
