"""How kdspec's bookkeeping scales: many processes, many runs, one MLflow server on PostgreSQL.

The models train in a blink (LeNet-5 on 64 digits, one epoch), so what is measured is the
tracking: requests per run, the server's request rate while processes wait on a lease, and the
time from a lease expiring to another process taking the run over. Requests are counted from
the server's own access log (one uvicorn line per request).

1. **Throughput**: a plan of ``--runs`` runs (one study: ``seeds x (2 + temperatures)``),
   driven by ``--processes`` concurrent ``kdspec run --shard i/P`` (a Slurm array's shape):
   wall time, requests per run, every run FINISHED exactly once.
2. **Waiting**: one process claims a teacher and is frozen (SIGSTOP: its lease is no longer
   renewed, as a hung node's); ``--processes`` processes of the same one-teacher plan start and
   wait on it. Measured: the server's requests per second while they wait, and the seconds
   from the lease's expiry (``--lease-timeout``) to the first process resuming it.

    python bench/bench_scale.py                          # 1,008 runs, 32 processes
    python bench/bench_scale.py --runs 240 --processes 8 # a quick look
"""

from __future__ import annotations

import argparse
import math
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.lab_cluster import Cluster, missing, running_cluster  # noqa: E402

REQUEST = re.compile(r"^(\d{4}/\d\d/\d\d \d\d:\d\d:\d\d) .*\"(GET|POST|PATCH|PUT|DELETE) ")
TEMPERATURES = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10)


def spec_text(seeds: int, *, lr: float) -> str:
    temps = ", ".join(str(t) for t in TEMPERATURES)
    return f"""recipe r {{ epochs = 1  batch_size = 64  lr = {lr} }}
study scale {{
  dataset digits {{ train_subset = 64  test_subset = 32 }}
  teacher lenet5 {{ recipe = r }}
  student lenet5 {{ recipe = r  lr = {lr / 2} }}
  distill {{ temperatures = [{temps}]  loss = 0.2 * hard + 0.8 * soft }}
  seeds = {seeds}
  analysis {{ comparisons = [] }}
}}
"""


def requests_between(log: Path, start: float, end: float) -> list[float]:
    """Epoch seconds of every request the server logged in ``[start, end]``."""
    out = []
    for line in log.read_text(errors="replace").splitlines():
        match = REQUEST.match(line)
        if match:
            stamp = time.mktime(time.strptime(match.group(1), "%Y/%m/%d %H:%M:%S"))
            if start - 1 <= stamp <= end + 1:
                out.append(stamp)
    return out


def kdspec(cluster: Cluster, folder: Path, spec: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "kdspec.cli", "run", str(spec), "--tracking-uri",
            cluster.tracking_uri, "--quiet", "--log-dir", str(folder / "logs"), *extra]


def throughput(cluster: Cluster, runs: int, processes: int) -> dict[str, float]:
    seeds = max(1, round(runs / (2 + len(TEMPERATURES))))
    folder = cluster.root / "throughput"
    folder.mkdir()
    spec = folder / "scale.kdspec"
    spec.write_text(spec_text(seeds, lr=0.05))
    total = seeds * (2 + len(TEMPERATURES))
    started = time.time()
    procs = [subprocess.Popen(kdspec(cluster, folder, spec, "--shard", f"{i}/{processes}"),
                              cwd=folder, env=cluster.env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True) for i in range(processes)]
    codes = [p.wait(timeout=7200) for p in procs]
    ended = time.time()
    failed = [p.stderr.read()[-500:] for p, c in zip(procs, codes, strict=True)  # type: ignore[union-attr]
              if c != 0]
    if failed:
        raise SystemExit(f"{len(failed)} process(es) failed: {failed[0]}")
    trained = sum(log.read_text().count(" finished: test_acc")
                  for log in (folder / "logs").glob("*.log"))
    stamps = requests_between(cluster.server_log, started, ended)
    return {"runs": total, "processes": processes, "wall_s": ended - started,
            "trained": trained, "requests": len(stamps), "per_run": len(stamps) / total,
            "peak_per_s": max(Counter(stamps).values()) if stamps else 0.0}


def waiting(cluster: Cluster, processes: int, lease_timeout: float, poll: float
            ) -> dict[str, float]:
    folder = cluster.root / "waiting"
    folder.mkdir()
    spec = folder / "wait.kdspec"
    spec.write_text(spec_text(1, lr=0.07).replace("epochs = 1", "epochs = 3")
                    .replace("train_subset = 64", "train_subset = 1000"))
    common = ("--lease-timeout", str(lease_timeout), "--poll-seconds", str(poll),
              "--only", "teacher")
    holder = subprocess.Popen(kdspec(cluster, folder, spec, *common), cwd=folder,
                              env=cluster.env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
    from mlflow import MlflowClient
    from mlflow.entities import ViewType

    client = MlflowClient(cluster.tracking_uri)

    def teacher_runs() -> list:  # type: ignore[type-arg]
        ids = [e.experiment_id for e in client.search_experiments(view_type=ViewType.ALL)]
        return list(client.search_runs(ids, "tags.`kdspec.role` = 'teacher'"))

    deadline = time.time() + 300
    while not any(r.info.status == "RUNNING" for r in teacher_runs()):
        if time.time() > deadline or holder.poll() is not None:
            raise SystemExit("the holder never claimed the teacher")
        time.sleep(0.2)
    os.kill(holder.pid, signal.SIGSTOP)  # a hung node: the lease is no longer renewed
    [held] = [r for r in teacher_runs() if r.info.status == "RUNNING"]
    heartbeat = int(held.data.tags["kdspec.lease.heartbeat"]) / 1000.0
    expires = heartbeat + lease_timeout
    started = time.time()
    waiters = [subprocess.Popen(kdspec(cluster, folder, spec, *common), cwd=folder,
                                env=cluster.env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True) for _ in range(processes)]
    taken_at = math.nan
    while time.time() < expires + 600:
        claims = [int(r.data.tags.get("kdspec.lease.claimed", "0")) / 1000.0
                  for r in teacher_runs() if r.data.tags.get("kdspec.lease.claimed")]
        newer = [c for c in claims if c > heartbeat + 1]
        if newer:
            taken_at = min(newer)
            break
        time.sleep(0.2)
    wait_window = (started + 15, min(expires, taken_at) - 1)  # after start-up, before expiry
    for p in waiters:
        p.wait(timeout=900)
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    stamps = requests_between(cluster.server_log, *wait_window)
    span = max(wait_window[1] - wait_window[0], 1.0)
    return {"processes": processes, "lease_timeout_s": lease_timeout, "poll_s": poll,
            "waiting_requests_per_s": len(stamps) / span, "window_s": span,
            "takeover_after_expiry_s": taken_at - expires}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=1008)
    parser.add_argument("--processes", type=int, default=32)
    parser.add_argument("--lease-timeout", type=float, default=120.0)
    parser.add_argument("--poll-seconds", type=float, default=30.0)
    parser.add_argument("--workers", type=int, default=4, help="mlflow server workers")
    args = parser.parse_args(argv)
    why = missing(slurm=False)
    if why:
        raise SystemExit(f"cannot bring up PostgreSQL and the server here: {why}")
    print(f"machine: {os.cpu_count()} CPUs; {args.processes} processes; server: "
          f"{args.workers} workers on PostgreSQL", flush=True)
    with running_cluster(REPO, slurm=False, workers=args.workers) as cluster:
        first = throughput(cluster, args.runs, args.processes)
        print(f"throughput: {first['runs']} runs by {first['processes']} processes in "
              f"{first['wall_s']:.0f} s; trained {first['trained']} (each once: "
              f"{first['trained'] == first['runs']}); {first['requests']} requests = "
              f"{first['per_run']:.1f} per run; busiest second {first['peak_per_s']:.0f} "
              "requests", flush=True)
        second = waiting(cluster, args.processes, args.lease_timeout, args.poll_seconds)
        print(f"waiting: {second['processes']} processes waiting on one held run made "
              f"{second['waiting_requests_per_s']:.2f} requests/s over "
              f"{second['window_s']:.0f} s (poll {second['poll_s']:g} s); the run was taken "
              f"over {second['takeover_after_expiry_s']:.1f} s after its lease expired "
              f"(lease timeout {second['lease_timeout_s']:g} s)", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
