"""Writing runs to MLflow and finding them again, in the layout of :mod:`kdspec.tracking_schema`.

Everything goes through one ``MlflowClient`` per store (never MLflow's global "active run"), so
the K runs of a lockstep group can be open at once. Runs are found by the ``kdspec.run_id`` tag
across every experiment of the store: a teacher trained by another spec is reused wherever it is.
"""

from __future__ import annotations

import os
import re
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag, ViewType
from mlflow.entities import Run as MlflowRun
from mlflow.exceptions import MlflowException

from kdspec import tracking_schema as schema
from kdspec.errors import TrackingError
from kdspec.plan import Study
from kdspec.tracking.sqlite_store import prepare_sqlite_store, sqlite_path

#: Local artifact folder, created next to the sqlite file (the working folder by default).
LOCAL_ARTIFACT_DIR = "mlartifacts"
#: Seconds to wait for a tracking server's ``/health`` before giving up.
HEALTH_TIMEOUT_S = 10.0
SEARCH_PAGE = 1000


def is_server_uri(uri: str) -> bool:
    """Whether the store is an MLflow server (which then decides where artifacts go)."""
    return uri.startswith(("http://", "https://", "databricks"))


def local_artifact_root(uri: str) -> Path | None:
    """Where experiments of a non-server store keep artifacts: ``mlartifacts/`` next to a sqlite
    file, or in the working folder for other databases; None for a server."""
    if is_server_uri(uri):
        return None
    if uri.startswith("sqlite:///"):
        db_path = Path(uri.removeprefix("sqlite:///"))
        return (db_path.parent / LOCAL_ARTIFACT_DIR).resolve()
    return (Path.cwd() / LOCAL_ARTIFACT_DIR).resolve()


@dataclass(frozen=True)
class StoredRun:
    """An MLflow run carrying a ``kdspec.run_id`` tag."""

    mlflow_id: str
    kdspec_id: str
    status: str  # FINISHED, RUNNING, FAILED, KILLED, SCHEDULED
    epochs_done: int  # from kdspec.last_epoch: epochs whose checkpoint is saved (0: none)
    start_time: int
    experiment_id: str
    failure: str


class TrackingStore:
    """One MLflow store: experiments, parent and nested runs, metrics and artifacts.

    ``read_only`` (``--dry-run``): a sqlite store that does not exist yet is not created; it
    reads as a store without runs, and nothing may be written to it.
    """

    def __init__(self, uri: str, *, read_only: bool = False):
        self.uri = uri
        self.read_only = read_only
        path = sqlite_path(uri)
        #: A sqlite store that does not exist and must not be created (read-only use).
        self.absent = read_only and path is not None and not path.exists()
        self._experiments: dict[str, str] = {}
        if self.absent:
            return
        try:
            if not read_only:
                root = local_artifact_root(uri)
                prepare_sqlite_store(uri, artifact_root=str(root) if root else "")
            self.client = MlflowClient(tracking_uri=uri)
        except TrackingError:
            raise
        except Exception as err:  # a bad URI or database fails deep inside MLflow/SQLAlchemy
            raise TrackingError(f"cannot open the MLflow store {uri}: {err}") from err

    # -- checks -------------------------------------------------------------------------------
    def preflight(self) -> None:
        """Raise :class:`TrackingError` unless the store answers and (for a local store) its
        artifact folder is writable. Called before any training starts; read-only, it only
        checks that the store answers (and writes no probe)."""
        if self.absent:
            return
        if is_server_uri(self.uri) and self.uri.startswith("http"):
            url = self.uri.rstrip("/") + "/health"
            try:
                with urllib.request.urlopen(url, timeout=HEALTH_TIMEOUT_S) as response:
                    response.read()
            except (urllib.error.URLError, OSError) as err:
                raise TrackingError(
                    f"cannot reach the MLflow tracking server at {self.uri} ({err}); start it "
                    "or pass another --tracking-uri"
                ) from err
        try:
            self.client.search_experiments(max_results=1)
        except (MlflowException, OSError) as err:
            raise TrackingError(f"cannot open the MLflow store {self.uri}: {err}") from err
        root = local_artifact_root(self.uri)
        if root is not None and not self.read_only:
            try:
                root.mkdir(parents=True, exist_ok=True)
                probe = root / f".kdspec-write-probe-{os.getpid()}"
                probe.write_bytes(b"ok")
                probe.unlink()
            except OSError as err:
                raise TrackingError(
                    f"the MLflow artifact folder {root} is not writable ({err})"
                ) from err

    # -- experiments and lookups --------------------------------------------------------------
    def experiment_id(self, name: str) -> str:
        """The id of the experiment ``name``, created (with an explicit artifact location for a
        local store) when missing."""
        if name in self._experiments:
            return self._experiments[name]
        experiment = self.client.get_experiment_by_name(name)
        if experiment is not None:
            exp_id = str(experiment.experiment_id)
        else:
            root = local_artifact_root(self.uri)
            location = None if root is None else (root / _slug(name)).as_uri()
            try:
                exp_id = self.client.create_experiment(name, artifact_location=location)
            except MlflowException:
                # Another process created it between our lookup and create.
                experiment = self.client.get_experiment_by_name(name)
                if experiment is None:
                    raise
                exp_id = str(experiment.experiment_id)
        self._experiments[name] = exp_id
        return exp_id

    def _all_experiment_ids(self) -> list[str]:
        ids: list[str] = []
        token = None
        while True:
            page = self.client.search_experiments(view_type=ViewType.ACTIVE_ONLY,
                                                  max_results=SEARCH_PAGE, page_token=token)
            ids.extend(str(e.experiment_id) for e in page)
            token = page.token
            if not token:
                return ids

    def _search(self, filter_string: str,
                experiment_ids: list[str] | None = None) -> list[MlflowRun]:
        ids = experiment_ids if experiment_ids is not None else self._all_experiment_ids()
        if not ids:
            return []
        found: list[MlflowRun] = []
        token = None
        while True:
            page = self.client.search_runs(ids, filter_string=filter_string,
                                           run_view_type=ViewType.ACTIVE_ONLY,
                                           max_results=SEARCH_PAGE, page_token=token)
            found.extend(page)
            token = page.token
            if not token:
                return found

    def find_runs(self, kdspec_ids: Iterable[str]) -> dict[str, list[StoredRun]]:
        """Every stored run of each kdspec id, in all experiments, oldest first."""
        wanted = set(kdspec_ids)
        result: dict[str, list[StoredRun]] = {k: [] for k in wanted}
        if self.absent:
            return result
        filter_string = f"tags.`{schema.TAG_KIND}` = '{schema.KIND_RUN}'"
        if len(wanted) == 1 and "'" not in (only := next(iter(wanted))):
            # One id (a teacher looked up per group): let the store filter, not this process.
            filter_string += f" and tags.`{schema.TAG_RUN_ID}` = '{only}'"
        for run in self._search(filter_string):
            tags = run.data.tags
            kid = tags.get(schema.TAG_RUN_ID)
            if kid not in wanted:
                continue
            result[kid].append(StoredRun(
                mlflow_id=run.info.run_id, kdspec_id=kid, status=run.info.status,
                epochs_done=int(tags.get(schema.TAG_LAST_EPOCH, "0") or 0),
                start_time=int(run.info.start_time or 0),
                experiment_id=str(run.info.experiment_id),
                failure=tags.get(schema.TAG_FAILURE, ""),
            ))
        for runs in result.values():
            runs.sort(key=lambda r: r.start_time)
        return result

    # -- runs ---------------------------------------------------------------------------------
    def parent_run(self, study: Study, *, plan_json: str, spec_text: str | None) -> str:
        """The study's parent run (found by ``kdspec.plan_hash``, oldest first, reopened if it
        had ended), or a new one with the plan JSON and spec text as artifacts."""
        exp_id = self.experiment_id(study.tracking.experiment)
        existing = self._oldest_parent(study, exp_id)
        if existing is not None:
            if existing.info.status != "RUNNING":
                self.client.update_run(existing.info.run_id, status="RUNNING")
                if schema.TAG_FAILURE in existing.data.tags:
                    self.client.delete_tag(existing.info.run_id, schema.TAG_FAILURE)
            return str(existing.info.run_id)
        tags = {schema.TAG_KIND: schema.KIND_PLAN, schema.TAG_LAYOUT: schema.LAYOUT_VERSION,
                schema.TAG_PLAN_HASH: study.study_hash, schema.TAG_STUDY: study.name}
        run = self.client.create_run(exp_id, tags=tags, run_name=study.name)
        run_id = str(run.info.run_id)
        # Two shards starting together may both have created one: the oldest wins, the other
        # is deleted before any nested run refers to it.
        winner = self._oldest_parent(study, exp_id)
        if winner is not None and winner.info.run_id != run_id:
            self.client.delete_run(run_id)
            return str(winner.info.run_id)
        self.log_params(run_id, {
            "dataset": study.dataset.name, "teacher_arch": study.teacher.arch,
            "student_arch": study.student.arch,
            "temperatures": ",".join(f"{t:g}" for t in study.temperatures),
            "seeds": ",".join(str(s) for s in study.seeds),
            "hard_weight": study.loss.hard_weight, "soft_weight": study.loss.soft_weight,
            "precision": study.runtime.precision,
        })
        self.log_text(run_id, schema.ARTIFACT_PLAN, plan_json)
        if spec_text is not None:
            self.log_text(run_id, schema.ARTIFACT_SPEC, spec_text)
        return run_id

    def _oldest_parent(self, study: Study, experiment_id: str) -> MlflowRun | None:
        found = self._search(
            f"tags.`{schema.TAG_KIND}` = '{schema.KIND_PLAN}' and "
            f"tags.`{schema.TAG_PLAN_HASH}` = '{study.study_hash}'", [experiment_id])
        return min(found, key=lambda r: (r.info.start_time or 0, r.info.run_id), default=None)

    def create_run(self, *, experiment: str, parent_id: str, run_name: str,
                   tags: Mapping[str, str]) -> str:
        """A new nested run under ``parent_id``, with the given kdspec tags."""
        all_tags = {"mlflow.parentRunId": parent_id, schema.TAG_KIND: schema.KIND_RUN,
                    schema.TAG_LAYOUT: schema.LAYOUT_VERSION, **tags}
        run = self.client.create_run(self.experiment_id(experiment), tags=all_tags,
                                     run_name=run_name)
        return str(run.info.run_id)

    def reopen(self, mlflow_id: str) -> None:
        """Mark a killed or failed run RUNNING again (it resumes from its checkpoint)."""
        self.client.update_run(mlflow_id, status="RUNNING")
        if schema.TAG_FAILURE in self.client.get_run(mlflow_id).data.tags:
            self.client.delete_tag(mlflow_id, schema.TAG_FAILURE)

    def finish(self, mlflow_id: str, status: str = "FINISHED") -> None:
        self.client.set_terminated(mlflow_id, status=status)

    def fail(self, mlflow_id: str, reason: str, *, status: str = "FAILED") -> None:
        """Record why a run failed (tag ``kdspec.failure``) and mark it FAILED (or KILLED)."""
        self.client.set_tag(mlflow_id, schema.TAG_FAILURE, reason[:4000])
        self.client.set_terminated(mlflow_id, status=status)

    def existing_parent(self, study: Study) -> str | None:
        """The study's parent run if one exists (never creates it)."""
        if self.absent:
            return None
        experiment = self.client.get_experiment_by_name(study.tracking.experiment)
        if experiment is None:
            return None
        found = self._oldest_parent(study, str(experiment.experiment_id))
        return None if found is None else str(found.info.run_id)

    def log_params(self, mlflow_id: str, params: Mapping[str, object]) -> None:
        items = [Param(k, str(v)) for k, v in params.items()]
        for start in range(0, len(items), 100):  # MLflow takes at most 100 params per batch
            self.client.log_batch(mlflow_id, params=items[start:start + 100])

    def log_metrics(self, mlflow_id: str, metrics: Mapping[str, float], *, step: int,
                    tags: Mapping[str, object] | None = None) -> None:
        """Log ``metrics`` at ``step`` (and ``tags``, if given) in one request."""
        now = int(time.time() * 1000)
        self.client.log_batch(mlflow_id,
                              metrics=[Metric(k, float(v), now, step) for k, v in metrics.items()],
                              tags=[RunTag(k, str(v)) for k, v in (tags or {}).items()])

    def set_tags(self, mlflow_id: str, tags: Mapping[str, object]) -> None:
        self.client.log_batch(mlflow_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def log_file(self, mlflow_id: str, path: Path, artifact_dir: str | None = None) -> None:
        self.client.log_artifact(mlflow_id, str(path), artifact_dir)

    def log_bytes(self, mlflow_id: str, artifact_path: str, data: bytes) -> None:
        """Log ``data`` as the artifact ``artifact_path`` (e.g. ``predictions.npz``)."""
        directory, _, name = artifact_path.rpartition("/")
        with tempfile.TemporaryDirectory(prefix="kdspec-artifact-") as tmp:
            local = Path(tmp) / name
            local.write_bytes(data)
            self.client.log_artifact(mlflow_id, str(local), directory or None)

    def log_text(self, mlflow_id: str, artifact_path: str, text: str) -> None:
        self.log_bytes(mlflow_id, artifact_path, text.encode())

    def download(self, mlflow_id: str, artifact_path: str, dst_dir: Path) -> Path:
        """Fetch one artifact of a run into ``dst_dir``; returns its local path."""
        dst_dir.mkdir(parents=True, exist_ok=True)
        return Path(self.client.download_artifacts(mlflow_id, artifact_path, str(dst_dir)))

    def finished_runs_of_study(self, kdspec_ids: Iterable[str]) -> bool:
        """Whether every given kdspec id has a FINISHED run in the store."""
        found = self.find_runs(kdspec_ids)
        return all(any(r.status == "FINISHED" for r in runs) for runs in found.values())


def _slug(name: str) -> str:
    """A folder name for an experiment: letters, digits, ``-``, ``_`` and ``.`` kept, never
    ``.`` or ``..`` (an experiment named ``..`` would put its runs beside the database)."""
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-.")
    return slug or "experiment"
