"""An in-memory :class:`kdspec.tracking.run_store.RunStore`, so the run bookkeeping (reuse,
resume, leases, failures) is tested in the fast suite without an MLflow database.

It keeps what MLflow keeps, as MLflow keeps it (held to the same contract as the sqlite and
server stores by tests/tracking/test_store_contract.py): runs with status, start and end times
in milliseconds, tags, params, metric histories (one point per log, with its time), artifacts
as bytes, and deleted runs out of every search.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from kdspec.plan import Study
from kdspec.tracking import schema
from kdspec.tracking.leases import Lease
from kdspec.tracking.run_layout import parent_params
from kdspec.tracking.run_store import DatasetRecord, StoredParent, StoredRun

_ids = itertools.count(1)


@dataclass
class MemoryRun:
    mlflow_id: str
    experiment: str
    name: str
    status: str = "RUNNING"
    start_time: int = field(default_factory=lambda: time.time_ns() // 1_000_000)
    end_time: int = 0
    tags: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    #: The time (ms) each metric point was logged, parallel to ``metrics``.
    metric_times: dict[str, list[int]] = field(default_factory=dict)
    artifacts: dict[str, bytes] = field(default_factory=dict)
    inputs: list[DatasetRecord] = field(default_factory=list)
    deleted: bool = False


class MemoryStore:
    """Runs in a dict; every method of the RunStore Protocol."""

    def __init__(self, uri: str = "memory://store") -> None:
        self.uri = uri
        self.runs: dict[str, MemoryRun] = {}
        self.calls: list[str] = []

    # -- helpers for the tests ----------------------------------------------------------------
    def live(self) -> list[MemoryRun]:
        return [r for r in self.runs.values() if not r.deleted]

    def nested(self, kdspec_id: str | None = None) -> list[MemoryRun]:
        return [r for r in self.live() if r.tags.get(schema.TAG_KIND) == schema.KIND_RUN
                and (kdspec_id is None or r.tags.get(schema.TAG_RUN_ID) == kdspec_id)]

    def steps(self, mlflow_id: str, metric: str) -> list[int]:
        return [step for step, _ in self.runs[mlflow_id].metrics.get(metric, [])]

    # -- RunStore -----------------------------------------------------------------------------
    def preflight(self) -> None:
        pass

    def find_runs(self, kdspec_ids: Iterable[str]) -> dict[str, list[StoredRun]]:
        self.calls.append("find_runs")
        wanted = set(kdspec_ids)
        result: dict[str, list[StoredRun]] = {k: [] for k in wanted}
        for run in sorted(self.nested(), key=lambda r: r.start_time):
            kid = run.tags.get(schema.TAG_RUN_ID, "")
            if kid in wanted:
                result[kid].append(StoredRun(
                    mlflow_id=run.mlflow_id, kdspec_id=kid, status=run.status,
                    epochs_done=int(run.tags.get(schema.TAG_LAST_EPOCH, "0") or 0),
                    start_time=run.start_time, experiment_id=run.experiment,
                    failure=run.tags.get(schema.TAG_FAILURE, ""), lease=Lease.from_tags(run.tags),
                    end_time=run.end_time, study=run.tags.get(schema.TAG_STUDY, ""),
                    test_acc=(run.metrics[schema.METRIC_TEST_ACC][-1][1]
                              if run.metrics.get(schema.METRIC_TEST_ACC) else None),
                    precision=run.tags.get(schema.TAG_PRECISION, ""),
                    interrupted=run.tags.get(schema.TAG_INTERRUPTED, ""),
                    flags=tuple(v for k, v in sorted(run.tags.items())
                                if k.startswith(schema.TAG_FLAG_PREFIX))))
        return result

    def parents(self, study: Study) -> list[StoredParent]:
        return [StoredParent(r.mlflow_id, r.start_time, r.status) for r in self.live()
                if r.tags.get(schema.TAG_KIND) == schema.KIND_PLAN
                and r.tags.get(schema.TAG_PLAN_HASH) == study.study_hash
                and r.experiment == study.tracking.experiment]

    def create_parent(self, study: Study, *, overrides: tuple[str, ...] = ()) -> str:
        tags = {schema.TAG_KIND: schema.KIND_PLAN, schema.TAG_PLAN_HASH: study.study_hash,
                schema.TAG_STUDY: study.name}
        if overrides:
            tags[schema.TAG_OVERRIDES] = "; ".join(overrides)
        return self._new(study.tracking.experiment, study.name, tags).mlflow_id

    def describe_parent(self, mlflow_id: str, study: Study, *, plan_json: str,
                        spec_text: str | None) -> None:
        run = self.runs[mlflow_id]
        run.params.update({k: str(v) for k, v in parent_params(study).items()})
        run.artifacts[schema.ARTIFACT_PLAN] = plan_json.encode()
        if spec_text is not None:
            run.artifacts[schema.ARTIFACT_SPEC] = spec_text.encode()

    def _new(self, experiment: str, name: str, tags: Mapping[str, str]) -> MemoryRun:
        run = MemoryRun(mlflow_id=f"m{next(_ids)}", experiment=experiment, name=name,
                        tags=dict(tags))
        self.runs[run.mlflow_id] = run
        return run

    def create_run(self, *, experiment: str, parent_id: str, run_name: str,
                   tags: Mapping[str, str]) -> str:
        self.calls.append("create_run")
        return self._new(experiment, run_name, {"mlflow.parentRunId": parent_id,
                                                schema.TAG_KIND: schema.KIND_RUN,
                                                **tags}).mlflow_id

    def reopen(self, mlflow_id: str) -> None:
        self.runs[mlflow_id].status = "RUNNING"
        self.runs[mlflow_id].tags.pop(schema.TAG_FAILURE, None)

    def delete_run(self, mlflow_id: str) -> None:
        self.runs[mlflow_id].deleted = True

    def finish(self, mlflow_id: str, status: str = "FINISHED") -> None:
        self.runs[mlflow_id].status = status
        self.runs[mlflow_id].end_time = time.time_ns() // 1_000_000

    def fail(self, mlflow_id: str, reason: str, *, status: str = "FAILED") -> None:
        self.runs[mlflow_id].tags[schema.TAG_FAILURE] = reason
        self.finish(mlflow_id, status)

    def log_params(self, mlflow_id: str, params: Mapping[str, object]) -> None:
        self.runs[mlflow_id].params.update({k: str(v) for k, v in params.items()})

    def log_metrics(self, mlflow_id: str, metrics: Mapping[str, float], *, step: int,
                    tags: Mapping[str, object] | None = None) -> None:
        run = self.runs[mlflow_id]
        now = time.time_ns() // 1_000_000
        for key, value in metrics.items():
            run.metrics.setdefault(key, []).append((step, float(value)))
            run.metric_times.setdefault(key, []).append(now)
        run.tags.update({k: str(v) for k, v in (tags or {}).items()})

    def set_tags(self, mlflow_id: str, tags: Mapping[str, object]) -> None:
        self.runs[mlflow_id].tags.update({k: str(v) for k, v in tags.items()})

    def tags(self, mlflow_id: str) -> dict[str, str]:
        return dict(self.runs[mlflow_id].tags)

    def metric_steps(self, mlflow_id: str, key: str) -> list[int]:
        return self.steps(mlflow_id, key)

    def log_input(self, mlflow_id: str, dataset: DatasetRecord) -> None:
        self.runs[mlflow_id].inputs.append(dataset)

    def log_file(self, mlflow_id: str, path: Path, artifact_dir: str | None = None) -> None:
        key = f"{artifact_dir}/{path.name}" if artifact_dir else path.name
        self.runs[mlflow_id].artifacts[key] = path.read_bytes()

    def log_bytes(self, mlflow_id: str, artifact_path: str, data: bytes) -> None:
        self.runs[mlflow_id].artifacts[artifact_path] = data

    def download(self, mlflow_id: str, artifact_path: str, dst_dir: Path) -> Path:
        dst_dir.mkdir(parents=True, exist_ok=True)
        target = dst_dir / Path(artifact_path).name
        target.write_bytes(self.runs[mlflow_id].artifacts[artifact_path])
        return target
