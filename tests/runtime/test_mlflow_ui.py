"""The MLflow UI on a store kdspec wrote, in headless Chromium: the experiment URL kdspec prints
(with MLflow 3's `workflowType=machine_learning`) opens on the runs table, not the GenAI overview,
and a run's page shows its commit, versions and dataset."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from mlflow import MlflowClient

from kdspec.cli import main
from kdspec.tracking import schema
from kdspec.tracking.client import UI_WORKFLOW_QUERY, experiment_url
from tests.chromium import dump_dom, needs_chromium
from tests.mlflow_server import start_server
from tests.runtime.run_helpers import fresh_store, nested_runs, small_plan, write_plan

pytestmark = [pytest.mark.integration, pytest.mark.extended, needs_chromium]


def _rendered(url: str, profile: Path) -> str:
    """The page's DOM after its scripts ran (virtual time waits for pending fetches)."""
    return dump_dom(url, profile, budget_ms=30000, timeout_s=120, window="1600,1200",
                    compositor=False)


def _text(page: str) -> str:
    """The page's visible words, one space apart (numbers and words sit in separate elements)."""
    page = re.sub(r"<(style|script)\b.*?</\1>", " ", page, flags=re.S)
    return " ".join(re.sub(r"<[^>]+>", " ", page).split())


def test_the_ui_shows_the_runs_table_and_each_runs_provenance(blank_store: Path,
                                                              tmp_path: Path) -> None:
    plan = small_plan(seeds=(0,), temperatures=(2.0,))
    study = plan.studies[0]
    path, uri = write_plan(plan, tmp_path), fresh_store(blank_store, tmp_path / "store")
    assert main(["run", str(path), "--tracking-uri", uri, "--quiet",
                 "--log-dir", str(tmp_path / "logs")]) == 0
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(study.tracking.experiment)
    assert experiment is not None
    assert experiment.tags[schema.EXPERIMENT_KIND_TAG] == schema.EXPERIMENT_KIND
    teacher = next(r for r in nested_runs(uri) if r.data.tags[schema.TAG_ROLE] == "teacher")
    tags = teacher.data.tags
    assert tags[f"{schema.TAG_VERSION_PREFIX}torch"] and tags[schema.TAG_HOST]
    [dataset] = teacher.inputs.dataset_inputs
    assert dataset.dataset.name == "digits" and len(dataset.dataset.digest) == 16

    # A server on the same database (its artifact locations are the store's own folders).
    (tmp_path / "server").mkdir()
    shutil.copy(tmp_path / "store" / "mlruns.db", tmp_path / "server" / "server.db")
    server = start_server(tmp_path / "server")
    try:
        runs_page = _rendered(experiment_url(server.url, experiment.experiment_id),
                              tmp_path / "profile-1")
        run_page = _rendered(f"{server.url}/#/experiments/{experiment.experiment_id}/runs/"
                             f"{teacher.info.run_id}?{UI_WORKFLOW_QUERY}", tmp_path / "profile-2")
    finally:
        server.stop()
    # The runs table: the study's parent run, its children folded under it (counted).
    children = nested_runs(uri)
    parents = {run.data.tags["mlflow.parentRunId"] for run in children}
    [parent_id] = parents
    assert client.get_run(parent_id).info.run_name in runs_page
    assert f"{len(children) + 1} matching runs" in _text(runs_page)
    assert "No data available for the selected time range" not in runs_page  # not the overview
    assert tags[f"{schema.TAG_VERSION_PREFIX}torch"] in run_page
    assert dataset.dataset.digest in run_page and "digits" in run_page
    if schema.TAG_GIT_COMMIT in tags:  # "Source: kdspec <commit>"
        assert f"kdspec {tags[schema.TAG_GIT_COMMIT][:7]}" in _text(run_page)
