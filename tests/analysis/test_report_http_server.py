"""`kdspec report` against a real `mlflow server` (REST API, proxied artifact store)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from kdspec.cli import main
from tests.analysis.conftest import small_study_plan
from tests.analysis.mlflow_store import log_study
from tests.analysis.synthetic import PlantedEffects, synthetic_predictions
from tests.mlflow_server import start_server

pytestmark = [pytest.mark.integration, pytest.mark.extended]


@pytest.fixture(scope="module")
def server_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = start_server(tmp_path_factory.mktemp("mlflow-server"))
    try:
        yield server.url
    finally:
        server.stop()


def test_report_reads_and_logs_through_the_server(server_uri: str, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    plan = small_study_plan("over-http")
    study = plan.studies[0]
    client = MlflowClient(tracking_uri=server_uri)
    predictions = synthetic_predictions(plan, study, n_test=800,
                                        effects=PlantedEffects(hurt_class=3))
    parent = log_study(client, plan, study, None, predictions)
    plan_json = tmp_path / "plan.json"
    plan_json.write_text(plan.to_json())
    out = tmp_path / "report"
    assert main(["report", str(plan_json), "--tracking-uri", server_uri, "--out",
                 str(out)]) == 0
    assert "12 of 12 runs" in capsys.readouterr().err
    assert (out / "report.html").exists()
    logged = {a.path for a in client.list_artifacts(parent, "report")}
    assert "report/report.html" in logged
    assert "n_sc_T2" in client.get_run(parent).data.metrics
