"""The store the runtime writes runs to, as a contract: the :class:`RunStore` Protocol and the
records it returns. Free of MLflow (the commands that only read plans import it cheaply);
:class:`kdspec.tracking.store.MlflowStore` implements it on MLflow, and the tests hold an
in-memory store to the same contract (tests/tracking/test_store_contract.py).

The Protocol is what the writer, the weights, the executor and the ownership rules need: find
runs by kdspec id, the study's parent runs, create and end runs, log, store and fetch
artifacts. Runs are found by the ``kdspec.run_id`` tag across every experiment of the store: a
teacher trained by another spec is reused wherever it is.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from kdspec.plan import Study
from kdspec.tracking.leases import Lease


@dataclass(frozen=True)
class StoredRun:
    """A stored run carrying a ``kdspec.run_id`` tag."""

    mlflow_id: str
    kdspec_id: str
    status: str  # FINISHED, RUNNING, FAILED, KILLED, SCHEDULED
    epochs_done: int  # from kdspec.last_epoch: epochs whose checkpoint is saved (0: none)
    start_time: int
    experiment_id: str
    failure: str
    lease: Lease = Lease()
    end_time: int = 0
    study: str = ""
    precision: str = ""  # kdspec.precision: what it trained in ("" before that tag existed)
    test_acc: float | None = None  # its latest test accuracy metric (None: not evaluated yet)
    interrupted: str = ""  # kdspec.interrupted: the stop signal that ended it, and where
    #: kdspec.flag.*: why a finished run is suspect (at chance, a loss that never fell).
    flags: tuple[str, ...] = ()


@dataclass(frozen=True)
class StoredParent:
    """A study's parent run (tag ``kdspec.kind = plan``)."""

    mlflow_id: str
    start_time: int
    status: str


@dataclass(frozen=True)
class DatasetRecord:
    """A dataset as a run's input: name, content digest and where it was read from."""

    name: str
    digest: str
    source: str


class RunStore(Protocol):
    """What the runtime needs of a tracking store."""

    uri: str

    def preflight(self) -> None: ...
    def find_runs(self, kdspec_ids: Iterable[str]) -> dict[str, list[StoredRun]]: ...
    def parents(self, study: Study) -> list[StoredParent]: ...
    def create_parent(self, study: Study, *, overrides: tuple[str, ...] = ()) -> str: ...
    def describe_parent(self, mlflow_id: str, study: Study, *, plan_json: str,
                        spec_text: str | None) -> None: ...
    def create_run(self, *, experiment: str, parent_id: str, run_name: str,
                   tags: Mapping[str, str]) -> str: ...
    def reopen(self, mlflow_id: str) -> None: ...
    def delete_run(self, mlflow_id: str) -> None: ...
    def finish(self, mlflow_id: str, status: str = "FINISHED") -> None: ...
    def fail(self, mlflow_id: str, reason: str, *, status: str = "FAILED") -> None: ...
    def log_params(self, mlflow_id: str, params: Mapping[str, object]) -> None: ...
    def log_metrics(self, mlflow_id: str, metrics: Mapping[str, float], *, step: int,
                    tags: Mapping[str, object] | None = None) -> None: ...
    def set_tags(self, mlflow_id: str, tags: Mapping[str, object]) -> None: ...
    def tags(self, mlflow_id: str) -> dict[str, str]: ...
    def metric_steps(self, mlflow_id: str, key: str) -> list[int]: ...
    def log_input(self, mlflow_id: str, dataset: DatasetRecord) -> None: ...
    def log_file(self, mlflow_id: str, path: Path, artifact_dir: str | None = None) -> None: ...
    def log_bytes(self, mlflow_id: str, artifact_path: str, data: bytes) -> None: ...
    def download(self, mlflow_id: str, artifact_path: str, dst_dir: Path) -> Path: ...
