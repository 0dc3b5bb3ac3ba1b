"""A real ``mlflow server`` for tests: started on 127.0.0.1 with a sqlite backend and proxied
local artifacts, waited for on ``/health``, stopped with SIGTERM (one process, job execution
off). Used by the run, report and lost-server tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

HEALTH_TIMEOUT_S = 90.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class MlflowServer:
    """A running server: its URL, backend database, artifact folder and process."""

    url: str
    port: int
    database: Path
    artifacts: Path
    process: subprocess.Popen[bytes]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_server(folder: Path, *, port: int | None = None) -> MlflowServer:
    """Start a server whose backend is ``folder/server.db`` and artifacts ``folder/artifacts``
    (reused when they exist, so a stopped server can be started again on the same data)."""
    folder.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    database, artifacts = folder / "server.db", folder / "artifacts"
    env = dict(os.environ, MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false",
               MLFLOW_DISABLE_TELEMETRY="true")
    log = (folder / f"server-{port}.log").open("ab")
    process = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri",
         f"sqlite:///{database}", "--artifacts-destination", artifacts.as_uri(),
         "--host", "127.0.0.1", "--port", str(port)],
        cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT)
    log.close()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + HEALTH_TIMEOUT_S
    while True:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2):
                return MlflowServer(url, port, database, artifacts, process)
        except (urllib.error.URLError, OSError):
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError(f"mlflow server did not answer /health (rc "
                                   f"{process.poll()}): {folder}") from None
            time.sleep(0.3)
