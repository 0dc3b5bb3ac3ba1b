"""`kdspec report` against a real `mlflow server` (REST API, proxied artifact store)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from kdspec.cli import main
from tests.analysis.conftest import small_study_plan
from tests.analysis.mlflow_store import log_study
from tests.analysis.synthetic import PlantedEffects, synthetic_predictions

pytestmark = pytest.mark.integration
SERVER_START_TIMEOUT_S = 90


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def server_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("mlflow-server")
    port = _free_port()
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true",
           "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    command = [sys.executable, "-m", "mlflow", "server",
               "--backend-store-uri", f"sqlite:///{root / 'server.db'}",
               "--artifacts-destination", (root / "artifacts").as_uri(),
               "--host", "127.0.0.1", "--port", str(port)]
    log = (root / "server.log").open("w")
    server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while True:
            try:
                with urllib.request.urlopen(f"{uri}/health", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"mlflow server did not start: {(root / 'server.log').read_text()}")
            time.sleep(0.5)
        yield uri
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


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
