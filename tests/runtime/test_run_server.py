"""``kdspec run`` against a real ``mlflow server`` on 127.0.0.1, read back over its REST API."""

from __future__ import annotations

import json
import shutil
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kdspec.cli import main
from kdspec.tracking import schema
from tests.mlflow_server import start_server
from tests.runtime.run_helpers import small_plan, write_plan

pytestmark = pytest.mark.integration


def _get(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=10) as response:
        return dict(json.loads(response.read()))


def _post(url: str, payload: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(url, data=json.dumps(payload).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return dict(json.loads(response.read()))


@pytest.fixture
def mlflow_server(blank_store: Path, tmp_path: Path) -> Iterator[str]:
    """A real tracking server with a sqlite backend and proxied local artifacts."""
    shutil.copy(blank_store, tmp_path / "server.db")
    server = start_server(tmp_path)
    try:
        yield server.url
    finally:
        server.stop()


def test_plan_runs_over_http_and_reads_back_through_rest(
        mlflow_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    plan = small_plan(seeds=(0,), temperatures=(2.0, 4.0))
    path = write_plan(plan, tmp_path)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    assert main(["run", str(path), "--tracking-uri", mlflow_server, "--quiet",
                 "--log-dir", str(work / "logs")]) == 0

    api = f"{mlflow_server}/api/2.0/mlflow"
    name = urllib.parse.quote(plan.studies[0].tracking.experiment)
    experiment = _get(f"{api}/experiments/get-by-name?experiment_name={name}")["experiment"]
    found = _post(f"{api}/runs/search", {
        "experiment_ids": [experiment["experiment_id"]],
        "filter": f"tags.`{schema.TAG_KIND}` = '{schema.KIND_RUN}'", "max_results": 100,
    })["runs"]
    tags = [{t["key"]: t["value"] for t in run["data"]["tags"]} for run in found]
    assert sorted(t[schema.TAG_RUN_ID] for t in tags) == sorted(r.id for r in plan.runs)
    assert all(run["info"]["status"] == "FINISHED" for run in found)
    for run, run_tags in zip(found, tags, strict=True):
        metrics = {m["key"] for m in run["data"]["metrics"]}
        assert {schema.METRIC_TEST_ACC, schema.METRIC_TRAIN_LOSS, schema.METRIC_LR} <= metrics
        listed = _get(f"{api}/artifacts/list?run_id={run['info']['run_id']}")
        paths = {f["path"] for f in listed.get("files", [])}
        assert {schema.ARTIFACT_PREDICTIONS, schema.ARTIFACT_CLASS_ACCURACY,
                schema.ARTIFACT_CONFUSION} <= paths, run_tags[schema.TAG_ROLE]
    # Artifacts went through the server into its destination, not into the working folder.
    assert list((tmp_path / "artifacts").rglob("final.pt"))
    assert not (work / "mlartifacts").exists()
