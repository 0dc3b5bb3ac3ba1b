"""``kdspec status SPEC``: where a study stands, from the tracking store alone.

It reads the store and nothing else: no dataset is touched, no file is written, a sqlite store
that does not exist is not created (every run is then "not started"). So it runs on a login
node while the sweep trains elsewhere. Per study, each run is:

- **finished**: a FINISHED run exists;
- **running**: RUNNING with a live lease (host, pid, epoch, heartbeat age, when the lease
  expires if its owner stops renewing it);
- **interrupted**: RUNNING with an expired lease ("lease expired N s ago"), RUNNING whose owner
  is gone ("owner gone": it ran on this machine and its process no longer exists), or KILLED
  (by a stop signal: ``kdspec.interrupted`` says which): ``kdspec run`` resumes it (from its
  last checkpoint, when it saved one);
- **failed**: FAILED (the reason from ``kdspec.failure``);
- a finished run that is suspect (``kdspec.flag.*``: at chance, a loss that never fell) is
  listed as flagged, with why;
- **not started**: no run yet.

The ETA is the time the unfinished runs would take one process at the pace of this study's
finished runs (their wall time per epoch, by role and architecture, else by architecture), minus
what the running ones have done; it is printed with how many finished runs it rests on, and
names the kinds of run no finished run measures yet.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from dataclasses import asdict, dataclass, replace
from typing import Literal

from kdspec.commands import spec_selection
from kdspec.plan import Plan, Run, Study
from kdspec.tracking.leases import now_ms
from kdspec.tracking.ownership import DEFAULT_LEASE_TIMEOUT_S, run_state
from kdspec.tracking.run_store import RunStore, StoredRun
from kdspec.tracking.schema import resolve_tracking_uri

State = Literal["finished", "running", "interrupted", "failed", "not started"]
STATES: tuple[State, ...] = ("finished", "running", "interrupted", "failed", "not started")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("spec", metavar="SPEC", help=".kdspec file or plan JSON")
    parser.add_argument("--tracking-uri", default=None,
                        help="MLflow store (default: $MLFLOW_TRACKING_URI, the spec's, or "
                             "sqlite:///mlruns.db)")
    parser.add_argument("--lease-timeout", type=float, default=DEFAULT_LEASE_TIMEOUT_S,
                        metavar="SECONDS", help="heartbeat age after which a RUNNING run counts "
                        f"as interrupted (default {DEFAULT_LEASE_TIMEOUT_S:g})")
    parser.add_argument("--json", action="store_true", help="print the status as JSON")
    spec_selection.add_arguments(parser)


@dataclass(frozen=True)
class RunStatus:
    """One plan run's state, with what the store says about it."""

    kdspec_id: str
    role: str
    arch: str
    seed: int
    temperature: float | None
    state: State
    epoch: int
    epochs: int
    detail: str
    mlflow_id: str
    #: Why a finished run is suspect (at chance, a loss that never fell); empty otherwise.
    flags: tuple[str, ...] = ()


def run_status(run: Run, stored: list[StoredRun], *, at_ms: int, timeout_s: float) -> RunStatus:
    """The state of one run, in ``kdspec status``'s words, from
    :func:`kdspec.tracking.ownership.run_state` (the rule ``kdspec run`` decides by)."""
    def make(state: State, s: StoredRun | None, detail: str = "") -> RunStatus:
        return RunStatus(run.id, run.role, run.arch, run.seed, run.temperature, state,
                         s.epochs_done if s else 0, run.recipe.epochs, detail,
                         s.mlflow_id if s else "")

    decided = run_state(run, stored, at_ms=at_ms, timeout_s=timeout_s)
    if decided.kind == "finished":
        assert decided.stored is not None
        return replace(make("finished", decided.stored), flags=decided.stored.flags)
    if decided.kind == "live":
        holder = decided.stored
        assert holder is not None
        age = holder.lease.age_s(at_ms)
        return make("running", holder, f"on {holder.lease.host} (pid {holder.lease.pid}), "
                                       f"heartbeat {age:.0f} s ago; the lease expires in "
                                       f"{max(0.0, timeout_s - age):.0f} s unless renewed")
    if not stored:
        return make("not started", None)
    newest = stored[-1]
    if decided.kind == "resumable":
        since = f"resumes at epoch {decided.start_epoch + 1}"
    elif newest.epochs_done > run.recipe.epochs:
        since = (f"restarts (its checkpoint of epoch {newest.epochs_done} is past the "
                 f"recipe's {run.recipe.epochs} epochs)")
    else:
        since = "restarts (no checkpoint)"
    if newest.status == "FAILED":
        return make("failed", newest, f"{newest.failure or 'no reason recorded'}; {since}")
    return make("interrupted", newest, f"{why_interrupted(newest, at_ms, timeout_s)}; {since}")


def why_interrupted(stored: StoredRun, at_ms: int, timeout_s: float) -> str:
    """The words for a run that is not finished, not failed and not live."""
    lease = stored.lease
    if stored.status == "RUNNING" and lease.owner_dead():
        return f"owner gone (pid {lease.pid} no longer exists on this machine)"
    if stored.status == "RUNNING" and lease.heartbeat_ms:
        expired = lease.age_s(at_ms) - timeout_s
        return (f"lease expired {expired:.0f} s ago ({lease.host} pid {lease.pid} stopped "
                "renewing it)")
    if stored.status == "RUNNING":
        return "RUNNING without a lease (a run from before leases)"
    if stored.interrupted:
        return f"killed: {stored.interrupted.split(':')[0]}"
    return stored.status.lower()


def seconds_per_epoch(stored: dict[str, list[StoredRun]], plan: Plan) -> dict[str, float]:
    """Mean wall seconds per epoch of the finished runs, by role and architecture
    (``"distilled lenet5"``) and by architecture alone (``"lenet5"``; a run of a lockstep
    group measures the group's pace)."""
    per_kind: dict[str, list[float]] = {}
    for kid, runs in stored.items():
        done = [s for s in runs if s.status == "FINISHED" and s.end_time > s.start_time]
        if done:
            run = plan.run(kid)
            if run.recipe.epochs == 0:  # evaluated only: no training pace to measure
                continue
            pace = (done[-1].end_time - done[-1].start_time) / 1000.0 / run.recipe.epochs
            per_kind.setdefault(f"{run.role} {run.arch}", []).append(pace)
            per_kind.setdefault(run.arch, []).append(pace)
    return {kind: sum(v) / len(v) for kind, v in per_kind.items()}


def study_status(plan: Plan, study: Study, store: RunStore, *, timeout_s: float) -> dict:
    """The study's runs, counts and ETA, as a JSON-ready dict."""
    from kdspec.runtime.scheduling import lockstep_key  # the runtime only when status runs

    stored = store.find_runs(study.run_ids)
    at = now_ms()
    runs = [run_status(plan.run(rid), stored[rid], at_ms=at, timeout_s=timeout_s)
            for rid in study.run_ids]
    pace = seconds_per_epoch(stored, plan)
    # The distilled students of one seed train in lockstep: a group takes as long as one run.
    left: dict[tuple[str, ...], float] = {}
    unmeasured: set[str] = set()
    for r in runs:
        if r.state == "finished" or r.epochs == 0:  # evaluated only: seconds, not epochs
            continue
        per_epoch = pace.get(f"{r.role} {r.arch}", pace.get(r.arch))
        if per_epoch is None:
            unmeasured.add(f"{r.role} {r.arch}")
            continue
        key = lockstep_key(plan.run(r.kdspec_id)) if r.role == "distilled" else (r.kdspec_id,)
        todo = per_epoch * (r.epochs - (r.epoch if r.state != "not started" else 0))
        left[key] = max(left.get(key, 0.0), todo)
    remaining = sum(left.values())
    counts = Counter(r.state for r in runs)
    return {"study": study.name, "experiment": study.tracking.experiment, "uri": store.uri,
            "counts": {state: counts.get(state, 0) for state in STATES},
            "eta_seconds": remaining if not unmeasured else None,
            "eta_unmeasured": sorted(unmeasured),
            "eta_from_finished_runs": sum(1 for r in runs if r.state == "finished"),
            "runs": [asdict(r) for r in runs]}


def render(status: dict) -> str:
    from kdspec.runtime.progress import format_duration

    counts = status["counts"]
    eta = (f"ETA unknown (no finished run measures {', '.join(status['eta_unmeasured'])} yet)"
           if status["eta_seconds"] is None else
           f"ETA {format_duration(status['eta_seconds'])} for one process (from "
           f"{status['eta_from_finished_runs']} finished runs)")
    flagged = [r for r in status["runs"] if r["flags"]]
    lines = [f"study {status['study']} ({status['uri']}): {len(status['runs'])} runs: "
             + ", ".join(f"{counts[s]} {s}" for s in STATES)
             + (f" ({len(flagged)} of them flagged)" if flagged else "") + f"; {eta}"]
    for r in status["runs"]:
        t = "" if r["temperature"] is None else f" T={r['temperature']:g}"
        what = f"{r['role']} {r['arch']}{t} seed {r['seed']} ({r['kdspec_id']})"
        if r["state"] in ("running", "interrupted", "failed"):
            lines.append(f"  {r['state']}: {what}, epoch {r['epoch']}/{r['epochs']}: "
                         f"{r['detail']}")
        elif r["flags"]:
            lines.append(f"  finished, flagged: {what}: {'; '.join(r['flags'])}")
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace) -> int:
    from kdspec.tracking.reachability import bound_http_retries

    bound_http_retries()
    plan = spec_selection.load(args)
    from kdspec.tracking.store import MlflowStore  # MLflow only when status runs

    stores: dict[str, MlflowStore] = {}
    statuses = []
    for study in plan.studies:
        uri = resolve_tracking_uri(args.tracking_uri, study)
        store = stores.setdefault(uri, MlflowStore(uri, read_only=True))
        statuses.append(study_status(plan, study, store, timeout_s=args.lease_timeout))
    if args.json:
        sys.stdout.write(json.dumps({"studies": statuses}, indent=2) + "\n")
    else:
        sys.stdout.write("".join(render(s) for s in statuses))
    return 0
