"""One contract for every store the runtime writes to: the tests' in-memory store, MLflow on
sqlite and MLflow behind an ``mlflow server``. What the ownership rules and the writer read
back (statuses, times in milliseconds, lease and epoch tags, precision, latest accuracy,
parents) must be the same on each, or a rule tested in memory would not hold on MLflow."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from kdspec.tracking import schema
from kdspec.tracking.leases import claim_tags, now_ms
from kdspec.tracking.ownership import claim_parent, find_parent, first_made
from kdspec.tracking.run_store import DatasetRecord, RunStore
from kdspec.tracking.store import MlflowStore
from tests.factories import tiny_plan
from tests.mlflow_server import MlflowServer, start_server
from tests.runtime.memory_store import MemoryStore
from tests.runtime.run_helpers import fresh_store


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    running = start_server(tmp_path_factory.mktemp("contract-server"))
    yield running
    running.stop()


@pytest.fixture(params=["memory", "sqlite", pytest.param("server", marks=pytest.mark.integration)])
def store(request: pytest.FixtureRequest, blank_store: Path, tmp_path: Path) -> RunStore:
    if request.param == "memory":
        return MemoryStore()
    if request.param == "sqlite":
        return MlflowStore(fresh_store(blank_store, tmp_path))
    server: MlflowServer = request.getfixturevalue("server")
    return MlflowStore(server.url)


def _ids(*names: str) -> list[str]:
    """Fresh kdspec ids (the server outlives a test: its runs stay)."""
    token = uuid.uuid4().hex[:8]
    return [f"{name}-{token}" for name in names]


def _run(store: RunStore, kdspec_id: str, experiment: str = "contract", **tags: str) -> str:
    return store.create_run(experiment=experiment, parent_id="", run_name=kdspec_id,
                            tags={schema.TAG_RUN_ID: kdspec_id, **tags})


def test_runs_are_found_by_kdspec_id_oldest_first_with_what_the_rules_read(
        store: RunStore) -> None:
    k, other, missing = _ids("k", "other", "missing")
    before = now_ms()
    first = _run(store, k, **claim_tags("node:1:a", before))
    store.log_metrics(first, {schema.METRIC_TEST_ACC: 0.25}, step=1,
                      tags={schema.TAG_LAST_EPOCH: 1})
    store.log_metrics(first, {schema.METRIC_TEST_ACC: 0.5}, step=2,
                      tags={schema.TAG_LAST_EPOCH: 2})
    store.set_tags(first, {schema.TAG_PRECISION: "bf16", schema.TAG_STUDY: "s"})
    store.fail(first, "NaN loss")
    time.sleep(0.01)  # start times in ms: the second run starts later
    second = _run(store, k, experiment="another experiment")
    store.set_tags(second, {schema.TAG_INTERRUPTED: "SIGTERM: stopped in epoch 1"})
    store.finish(second, "KILLED")
    deleted = _run(store, k)
    store.delete_run(deleted)
    _run(store, other)
    found = store.find_runs([k, missing])
    assert found[missing] == []
    old, new = found[k]
    assert (old.mlflow_id, new.mlflow_id) == (first, second)
    assert (old.status, new.status) == ("FAILED", "KILLED")
    assert old.epochs_done == 2 and old.failure == "NaN loss" and old.test_acc == 0.5
    assert store.metric_steps(first, schema.METRIC_TEST_ACC) == [1, 2]
    assert store.metric_steps(first, schema.METRIC_TRAIN_LOSS) == []
    assert old.precision == "bf16" and old.study == "s"
    assert old.lease.owner == "node:1:a" and old.lease.heartbeat_ms == before
    assert new.interrupted.startswith("SIGTERM") and new.epochs_done == 0
    after = now_ms()
    for stored in (old, new):  # milliseconds since the epoch, as MLflow keeps them
        assert before - 5_000 <= stored.start_time <= stored.end_time <= after + 5_000


def test_a_reopened_run_is_running_again_without_its_failure(store: RunStore) -> None:
    [k] = _ids("k")
    mlflow_id = _run(store, k)
    store.fail(mlflow_id, "crashed")
    store.reopen(mlflow_id)
    [stored] = store.find_runs([k])[k]
    assert stored.status == "RUNNING" and stored.failure == ""
    assert schema.TAG_FAILURE not in store.tags(mlflow_id)


def test_params_inputs_and_artifacts_round_trip(store: RunStore, tmp_path: Path) -> None:
    mlflow_id = _run(store, *_ids("k"))
    store.log_params(mlflow_id, {"lr": 0.05, "epochs": 3})
    store.log_input(mlflow_id, DatasetRecord(name="digits", digest="abc", source="sklearn"))
    store.log_bytes(mlflow_id, schema.ARTIFACT_PREDICTIONS, b"npz bytes")
    local = tmp_path / "last.pt"
    local.write_bytes(b"weights")
    store.log_file(mlflow_id, local, schema.ARTIFACT_CHECKPOINT_DIR)
    got = store.download(mlflow_id, schema.ARTIFACT_LAST_CHECKPOINT, tmp_path / "down")
    assert got.read_bytes() == b"weights"
    assert store.download(mlflow_id, schema.ARTIFACT_PREDICTIONS,
                          tmp_path / "down").read_bytes() == b"npz bytes"


def test_parents_race_to_one(store: RunStore) -> None:
    """Two processes each made a parent run of one study without seeing the other's: every
    store lists both, the first made counts, and the process whose parent lost deletes it."""
    plan = tiny_plan(name=_ids("race")[0].replace("-", "_"))
    study = plan.studies[0]
    rival = store.create_parent(study)
    time.sleep(0.01)
    real_create = store.create_parent
    made: list[str] = []

    def create_after_the_rival(*args: object, **kwargs: object) -> str:
        made.append(real_create(*args, **kwargs))  # type: ignore[arg-type]
        return made[-1]

    # This process looked before the rival's parent existed: it creates its own.
    store.parents = lambda s, real=store.parents: [p for p in real(s)  # type: ignore[method-assign]
                                                    if p.mlflow_id != rival] if not made else real(s)
    store.create_parent = create_after_the_rival  # type: ignore[method-assign]
    chosen = claim_parent(store, study, plan_json=plan.to_json(), spec_text="study {}",
                          settle_s=0.0)
    del store.parents, store.create_parent  # type: ignore[attr-defined]
    assert chosen == rival and len(made) == 1
    assert [p.mlflow_id for p in store.parents(study)] == [rival]  # its own was deleted
    assert find_parent(store, study) == rival
    winner = first_made(store.parents(study))
    assert winner is not None and winner.status == "RUNNING"
