"""The MLflow store wrapper on a real sqlite store: URI precedence, preflight errors, parent
get-or-create, lookups by kdspec id across experiments."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from kdspec.errors import TrackingError
from kdspec.tracking import schema
from kdspec.tracking.ownership import claim_parent, finished_run
from kdspec.tracking.store import MlflowStore
from kdspec.tracking.store_uri import local_artifact_root
from tests.factories import tiny_plan
from tests.runtime.run_helpers import fresh_store


@pytest.fixture
def store(blank_store: Path, tmp_path: Path) -> MlflowStore:
    return MlflowStore(fresh_store(blank_store, tmp_path))


def test_local_artifacts_live_next_to_the_sqlite_file(tmp_path: Path) -> None:
    assert local_artifact_root(f"sqlite:///{tmp_path}/x/m.db") == tmp_path / "x" / "mlartifacts"
    assert local_artifact_root("http://127.0.0.1:5000") is None


def test_unreachable_server_is_one_clear_error() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(TrackingError, match=f"cannot reach the MLflow tracking server at "
                                            f"http://127.0.0.1:{port}"):
        MlflowStore(f"http://127.0.0.1:{port}").preflight()


def test_unwritable_artifact_folder_is_one_clear_error(blank_store: Path, tmp_path: Path) -> None:
    uri = fresh_store(blank_store, tmp_path)
    (tmp_path / "mlartifacts").write_text("a file where the folder should be")
    with pytest.raises(TrackingError, match="artifact folder .* is not writable"):
        MlflowStore(uri).preflight()


def test_experiment_gets_an_explicit_artifact_location(store: MlflowStore,
                                                       tmp_path: Path) -> None:
    exp_id = store.experiment_id("my study/1")
    assert store.experiment_id("my study/1") == exp_id
    location = store.client.get_experiment(exp_id).artifact_location
    assert location == (tmp_path / "mlartifacts" / "my-study-1").as_uri()


def test_parent_run_is_created_once_and_reopened(store: MlflowStore) -> None:
    plan = tiny_plan()
    study = plan.studies[0]
    first = claim_parent(store, study, plan_json=plan.to_json(), spec_text="study {}",
                         settle_s=0.0)
    store.finish(first)
    assert claim_parent(store, study, plan_json=plan.to_json(), spec_text=None,
                        settle_s=0.0) == first
    run = store.client.get_run(first)
    assert run.info.status == "RUNNING"
    assert run.data.tags[schema.TAG_PLAN_HASH] == study.study_hash
    names = {a.path for a in store.client.list_artifacts(first)}
    assert names == {schema.ARTIFACT_PLAN, schema.ARTIFACT_SPEC}


def test_runs_are_found_by_kdspec_id_in_any_experiment(store: MlflowStore) -> None:
    plan = tiny_plan()
    study = plan.studies[0]
    parent = claim_parent(store, study, plan_json=plan.to_json(), spec_text=None, settle_s=0.0)
    kid = plan.runs[0].id
    a = store.create_run(experiment="elsewhere", parent_id=parent, run_name="a",
                         tags={schema.TAG_RUN_ID: kid, schema.TAG_LAST_EPOCH: "2"})
    store.fail(a, "NaN")
    b = store.create_run(experiment=study.tracking.experiment, parent_id=parent, run_name="b",
                         tags={schema.TAG_RUN_ID: kid})
    store.finish(b)
    found = store.find_runs([kid, "other"])
    assert found["other"] == []
    assert [(r.mlflow_id, r.status) for r in found[kid]] == [(a, "FAILED"), (b, "FINISHED")]
    assert found[kid][0].epochs_done == 2 and found[kid][0].failure == "NaN"
    assert store.find_runs([kid]) == {kid: found[kid]}  # one id: filtered by the store
    assert finished_run(found[kid]) == found[kid][1]
    store.reopen(a)
    assert schema.TAG_FAILURE not in store.client.get_run(a).data.tags
