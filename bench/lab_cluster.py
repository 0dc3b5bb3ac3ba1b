"""A real lab cluster on this machine, for the cluster tests and the scale benchmark:
PostgreSQL, an ``mlflow server`` on it with proxied artifacts (its access log counts the
requests), and optionally munge and a one-node Slurm (slurmctld + slurmd), each started by hand
(nothing written to /etc: Slurm reads ``$SLURM_CONF``; no systemd), torn down at the end. Needs
root and the Debian packages postgresql, slurm-wlm, slurm-client and munge (``make
test-cluster`` installs them), and psycopg2 in the environment.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

PG_BIN = Path("/usr/lib/postgresql")
NEEDED = ("slurmctld", "slurmd", "sbatch", "squeue", "scancel", "munged", "runuser", "unshare")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def missing(*, slurm: bool = True) -> str:
    """Why the cluster (``slurm=False``: PostgreSQL and the server only) cannot be brought up
    here ('' when it can)."""
    if os.geteuid() != 0:
        return "needs root (daemons run as postgres and munge)"
    absent = [tool for tool in (NEEDED if slurm else ("runuser",))
              if shutil.which(tool) is None]
    if not _pg_bin():
        absent.append("postgresql")
    if absent:
        return (f"missing {', '.join(absent)}: apt-get install postgresql slurm-wlm "
                "slurm-client munge (make test-cluster does)")
    try:
        import psycopg2  # noqa: F401
    except ImportError:
        return "psycopg2 is not installed (pip install psycopg2-binary)"
    return ""


def _pg_bin() -> Path | None:
    versions = sorted(PG_BIN.glob("*/bin/pg_ctl")) if PG_BIN.exists() else []
    return versions[-1].parent if versions else None


def _run(*args: str, user: str | None = None, env: dict[str, str] | None = None,
         check: bool = True) -> subprocess.CompletedProcess[str]:
    command = (["runuser", "-u", user, "--"] if user else []) + list(args)
    return subprocess.run(command, capture_output=True, text=True, check=check, env=env,
                          timeout=120)


def _wait_for(what: str, ready: object, timeout_s: float = 90.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not ready():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not come up in {timeout_s:.0f} s")
        time.sleep(0.3)


@dataclass
class Cluster:
    """The running cluster: where things are and how to reach them."""

    root: Path
    tracking_uri: str
    slurm_conf: Path | None
    env: dict[str, str]  # what a client needs: SLURM_CONF, PATH, PYTHONPATH, no MLflow URI

    @property
    def server_log(self) -> Path:
        """The mlflow server's log: one uvicorn access line per request."""
        return self.root / "mlflow-server.log"

    def slurm(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(list(args), capture_output=True, text=True, env=self.env,
                              check=check, timeout=60)

    def jobs(self) -> list[str]:
        """``jobid state`` of every job Slurm still knows as pending or running."""
        out = self.slurm("squeue", "-h", "-o", "%i %T").stdout
        return [line for line in out.splitlines() if line.strip()]

    def wait_idle(self, timeout_s: float = 600.0) -> None:
        _wait_for("every Slurm job to end", lambda: not self.jobs(), timeout_s)


@contextlib.contextmanager
def running_cluster(repo: Path, *, slurm: bool = True, workers: int = 4) -> Iterator[Cluster]:
    """Bring the cluster up in a fresh folder under /tmp (world-executable: postgres and munge
    must reach their folders), yield it, tear it down whatever happened. ``slurm=False``: only
    PostgreSQL and the server (``workers`` uvicorn processes)."""
    root = Path(tempfile.mkdtemp(prefix="kdspec-cluster-", dir="/tmp"))
    root.chmod(0o755)
    stops: list[object] = []
    try:
        pg_port = free_port()
        tracking_uri = _start_postgres_and_mlflow(root, pg_port, stops, workers=workers)
        slurm_conf = _start_slurm(root, _start_munge(root, stops), stops) if slurm else None
        env = dict(os.environ, MLFLOW_DISABLE_TELEMETRY="true",
                   PYTHONUNBUFFERED="1",
                   PYTHONPATH=os.pathsep.join([str(repo), os.environ.get("PYTHONPATH", "")]),
                   PATH=os.pathsep.join([str(Path(sys.executable).parent),
                                         os.environ.get("PATH", "")]))
        if slurm_conf is not None:
            env["SLURM_CONF"] = str(slurm_conf)
        env.pop("MLFLOW_TRACKING_URI", None)
        yield Cluster(root, tracking_uri, slurm_conf, env)
    finally:
        for stop in reversed(stops):
            with contextlib.suppress(Exception):
                stop()  # type: ignore[operator]
        shutil.rmtree(root, ignore_errors=True)


def _start_postgres_and_mlflow(root: Path, port: int, stops: list[object], *,
                               workers: int) -> str:
    bin_dir = _pg_bin()
    assert bin_dir is not None
    data, sockets = root / "pg" / "data", root / "pgsock"
    for folder in (data, sockets):
        folder.mkdir(parents=True)
        shutil.chown(folder, "postgres", "postgres")
    (root / "pg").chmod(0o755)
    shutil.chown(root / "pg", "postgres", "postgres")
    password = root / "pg" / "pw"
    password.write_text("kdspec\n")
    shutil.chown(password, "postgres", "postgres")
    _run(str(bin_dir / "initdb"), "-D", str(data), "-A", "scram-sha-256", "-U", "postgres",
         f"--pwfile={password}", user="postgres")
    _run(str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(root / "pg" / "log"), "-w", "-o",
         f"-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories={sockets} "
         "-c max_connections=200", "start", user="postgres")
    stops.append(lambda: _run(str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate",
                              "stop", user="postgres", check=False))
    psql = {**os.environ, "PGPASSWORD": "kdspec"}
    for sql in ("CREATE USER mlflow WITH PASSWORD 'mlflow';",
                "CREATE DATABASE mlflow OWNER mlflow;"):
        _run(str(bin_dir / "psql"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres",
             "-c", sql, env=psql)
    http_port = free_port()
    log = (root / "mlflow-server.log").open("ab")
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri",
         f"postgresql+psycopg2://mlflow:mlflow@127.0.0.1:{port}/mlflow",
         "--artifacts-destination", (root / "artifacts").as_uri(), "--host", "127.0.0.1",
         "--port", str(http_port), "--workers", str(workers)],
        env=dict(os.environ, MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false",
                 MLFLOW_DISABLE_TELEMETRY="true"),
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    log.close()
    def stop_server() -> None:  # SIGTERM did not end it within 10 s (the setup note)
        os.killpg(server.pid, signal.SIGKILL)
        server.wait(timeout=30)

    stops.append(stop_server)
    url = f"http://127.0.0.1:{http_port}"

    def healthy() -> bool:
        if server.poll() is not None:
            raise RuntimeError(f"mlflow server died: {(root / 'mlflow-server.log').read_text()}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2):
                return True
        except (urllib.error.URLError, OSError):
            return False

    _wait_for("the mlflow server on PostgreSQL", healthy, timeout_s=120)
    return url


def _start_munge(root: Path, stops: list[object]) -> Path:
    folder = root / "munge"
    folder.mkdir()
    folder.chmod(0o755)
    shutil.chown(folder, "munge", "munge")
    socket_path = folder / "munge.socket.2"
    _run("/usr/sbin/munged", f"--socket={socket_path}", f"--log-file={folder / 'log'}",
         f"--pid-file={folder / 'pid'}", f"--seed-file={folder / 'seed'}", user="munge")
    stops.append(lambda: os.kill(int((folder / "pid").read_text()), signal.SIGTERM))
    _wait_for("munged", socket_path.exists, timeout_s=20)
    return socket_path


def _start_slurm(root: Path, munge_socket: Path, stops: list[object]) -> Path:
    folder = root / "slurm"
    (folder / "state").mkdir(parents=True)
    (folder / "spool").mkdir()
    host = socket.gethostname().split(".")[0]
    conf = folder / "slurm.conf"
    conf.write_text("\n".join([
        "ClusterName=kdspec-test", f"SlurmctldHost={host}(127.0.0.1)", "SlurmUser=root",
        "AuthType=auth/munge", "CredType=cred/munge", f"AuthInfo=socket={munge_socket}",
        "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none",
        "SelectType=select/cons_tres", "SelectTypeParameters=CR_CPU",
        "AccountingStorageType=accounting_storage/none", "JobAcctGatherType=jobacct_gather/none",
        "MpiDefault=none", "MinJobAge=3600", "ReturnToService=2", "KillWait=30",
        f"SlurmctldPort={free_port()}", f"SlurmdPort={free_port()}",
        f"StateSaveLocation={folder / 'state'}", f"SlurmdSpoolDir={folder / 'spool'}",
        f"SlurmctldPidFile={folder / 'slurmctld.pid'}", f"SlurmdPidFile={folder / 'slurmd.pid'}",
        f"SlurmctldLogFile={folder / 'slurmctld.log'}", f"SlurmdLogFile={folder / 'slurmd.log'}",
        f"NodeName={host} NodeAddr=127.0.0.1 CPUs={os.cpu_count() or 2} RealMemory=4000",
        f"PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP "
        "OverSubscribe=FORCE:4",
    ]) + "\n")
    env = dict(os.environ, SLURM_CONF=str(conf))
    _run("slurmctld", "-f", str(conf), "-i", env=env)
    stops.append(lambda: os.kill(int((folder / "slurmctld.pid").read_text()), signal.SIGKILL))
    _run("slurmd", "-f", str(conf), env=env)
    stops.append(lambda: os.kill(int((folder / "slurmd.pid").read_text()), signal.SIGKILL))

    def idle() -> bool:
        out = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True,
                             env=env, check=False).stdout
        return "idle" in out

    _wait_for("the Slurm node", idle, timeout_s=60)
    return conf
