"""The MLflow form of the store the runtime writes runs to (:class:`RunStore`, the contract,
is in :mod:`kdspec.tracking.run_store`).

:class:`MlflowStore` implements it with one
``MlflowClient`` per store (never MLflow's global "active run", so the K runs of a lockstep
group can be open at once), and the fast tests implement it in memory. Runs are found by the
``kdspec.run_id`` tag across every experiment of the store: a teacher trained by another spec
is reused wherever it is.
"""

from __future__ import annotations

import os
import re
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping
from pathlib import Path

from mlflow.entities import Dataset, DatasetInput, InputTag
from mlflow.entities import Run as MlflowRun
from mlflow.exceptions import MlflowException

from kdspec.errors import TrackingError
from kdspec.plan import Study
from kdspec.tracking import schema
from kdspec.tracking.client import (
    active_experiment_ids,
    download,
    log_batch,
    open_client,
    quiet_artifacts,
    search_runs,
    tag_filter,
)
from kdspec.tracking.leases import Lease
from kdspec.tracking.provenance import provenance_tags
from kdspec.tracking.run_layout import parent_params
from kdspec.tracking.run_store import DatasetRecord, StoredParent, StoredRun
from kdspec.tracking.store_uri import is_server_uri, local_artifact_root, sqlite_path

#: Seconds to wait for a tracking server's ``/health`` before giving up.
HEALTH_TIMEOUT_S = 10.0


#: Up to this many kdspec ids are looked up one filtered search each (see ``find_runs``).
PER_ID_SEARCH_LIMIT = 16


class MlflowStore:
    """One MLflow store (sqlite or server) as a :class:`RunStore`.

    ``read_only`` (``--dry-run``, ``kdspec status``): a sqlite store that does not exist yet is
    not created; it reads as a store without runs, and nothing may be written to it.
    """

    def __init__(self, uri: str, *, read_only: bool = False):
        self.uri = uri
        self.read_only = read_only
        path = sqlite_path(uri)
        #: A sqlite store that does not exist and must not be created (read-only use).
        self.absent = read_only and path is not None and not path.exists()
        self._experiments: dict[str, str] = {}
        if not self.absent:
            self.client = open_client(uri, create=not read_only)

    # -- checks -------------------------------------------------------------------------------
    def preflight(self) -> None:
        """Raise :class:`TrackingError` unless the store answers and (for a local store) its
        artifact folder is writable; read-only, it only checks that the store answers."""
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
        local store, and tagged so the MLflow UI opens it on the runs table) when missing."""
        if name in self._experiments:
            return self._experiments[name]
        experiment = self.client.get_experiment_by_name(name)
        if experiment is not None:
            exp_id = str(experiment.experiment_id)
            if experiment.tags.get(schema.EXPERIMENT_KIND_TAG) is None:  # made before the tag
                self.client.set_experiment_tag(exp_id, schema.EXPERIMENT_KIND_TAG,
                                               schema.EXPERIMENT_KIND)
        else:
            root = local_artifact_root(self.uri)
            location = None if root is None else (root / experiment_folder(name)).as_uri()
            try:
                exp_id = self.client.create_experiment(
                    name, artifact_location=location,
                    tags={schema.EXPERIMENT_KIND_TAG: schema.EXPERIMENT_KIND})
            except MlflowException:
                # Another process created it between our lookup and create.
                experiment = self.client.get_experiment_by_name(name)
                if experiment is None:
                    raise
                exp_id = str(experiment.experiment_id)
        self._experiments[name] = exp_id
        return exp_id

    def find_runs(self, kdspec_ids: Iterable[str]) -> dict[str, list[StoredRun]]:
        """Every stored run of each kdspec id, in all experiments, oldest first."""
        wanted = set(kdspec_ids)
        result: dict[str, list[StoredRun]] = {k: [] for k in wanted}
        if self.absent or not wanted:
            return result
        tags = {schema.TAG_KIND: schema.KIND_RUN}
        if len(wanted) <= PER_ID_SEARCH_LIMIT and not any("'" in k for k in wanted):
            # A group's refresh (its runs and its teacher): one filtered search per id, so
            # polling costs the same in a store of 100 runs as in one of 100,000.
            experiments = active_experiment_ids(self.client)
            found = [run for kid in sorted(wanted) for run in search_runs(
                self.client, tag_filter({**tags, schema.TAG_RUN_ID: kid}),
                experiment_ids=experiments)]
        else:  # planning a shard: one pass over every kdspec run beats hundreds of searches
            found = search_runs(self.client, tag_filter(tags))
        for run in found:
            stored = stored_run(run)
            if stored.kdspec_id in wanted:
                result[stored.kdspec_id].append(stored)
        for runs in result.values():
            runs.sort(key=lambda r: r.start_time)
        return result

    # -- parent runs (which one counts: kdspec.tracking.ownership.claim_parent) -------------
    def parents(self, study: Study) -> list[StoredParent]:
        """Every parent run of the study (tag ``kdspec.plan_hash``) in its experiment."""
        if self.absent:
            return []
        experiment = self.client.get_experiment_by_name(study.tracking.experiment)
        if experiment is None:
            return []
        found = search_runs(self.client, tag_filter({
            schema.TAG_KIND: schema.KIND_PLAN, schema.TAG_PLAN_HASH: study.study_hash}),
            experiment_ids=[str(experiment.experiment_id)])
        return [StoredParent(str(r.info.run_id), int(r.info.start_time or 0), r.info.status)
                for r in found]

    def create_parent(self, study: Study, *, overrides: tuple[str, ...] = ()) -> str:
        """A new parent run with its tags: kind, plan hash, the ``--set`` overrides (tag
        ``kdspec.overrides``), provenance and a description that says how to get the report."""
        exp_id = self.experiment_id(study.tracking.experiment)
        tags = {schema.TAG_KIND: schema.KIND_PLAN, schema.TAG_LAYOUT: schema.LAYOUT_VERSION,
                schema.TAG_PLAN_HASH: study.study_hash, schema.TAG_STUDY: study.name,
                schema.TAG_NOTE: parent_description(study), **provenance_tags()}
        if overrides:
            tags[schema.TAG_OVERRIDES] = "; ".join(overrides)
        return str(self.client.create_run(exp_id, tags=tags, run_name=study.name).info.run_id)

    def describe_parent(self, mlflow_id: str, study: Study, *, plan_json: str,
                        spec_text: str | None) -> None:
        """The parent's params (:func:`kdspec.tracking.run_layout.parent_params`: data, models,
        grid, method, a variant's settings) and artifacts (the plan JSON and the spec text)."""
        self.log_params(mlflow_id, parent_params(study))
        self.log_bytes(mlflow_id, schema.ARTIFACT_PLAN, plan_json.encode())
        if spec_text is not None:
            self.log_bytes(mlflow_id, schema.ARTIFACT_SPEC, spec_text.encode())

    # -- runs ---------------------------------------------------------------------------------
    def create_run(self, *, experiment: str, parent_id: str, run_name: str,
                   tags: Mapping[str, str]) -> str:
        """A new nested run under ``parent_id``, with the given kdspec tags and provenance."""
        all_tags = {"mlflow.parentRunId": parent_id, schema.TAG_KIND: schema.KIND_RUN,
                    schema.TAG_LAYOUT: schema.LAYOUT_VERSION, **provenance_tags(), **tags}
        run = self.client.create_run(self.experiment_id(experiment), tags=all_tags,
                                     run_name=run_name)
        return str(run.info.run_id)

    def reopen(self, mlflow_id: str) -> None:
        """Mark an ended run RUNNING again, its failure reason removed (a run resumed from its
        checkpoint, a parent run of a study that goes on)."""
        self.client.update_run(mlflow_id, status="RUNNING")
        if schema.TAG_FAILURE in self.tags(mlflow_id):
            self.client.delete_tag(mlflow_id, schema.TAG_FAILURE)

    def delete_run(self, mlflow_id: str) -> None:
        """Delete a run (a claim or a parent run that lost to another process's)."""
        self.client.delete_run(mlflow_id)

    def finish(self, mlflow_id: str, status: str = "FINISHED") -> None:
        self.client.set_terminated(mlflow_id, status=status)

    def fail(self, mlflow_id: str, reason: str, *, status: str = "FAILED") -> None:
        """Record why a run failed (tag ``kdspec.failure``) and mark it FAILED (or KILLED)."""
        self.client.set_tag(mlflow_id, schema.TAG_FAILURE, reason[:4000])
        self.client.set_terminated(mlflow_id, status=status)

    def log_params(self, mlflow_id: str, params: Mapping[str, object]) -> None:
        log_batch(self.client, mlflow_id, params=params)

    def log_metrics(self, mlflow_id: str, metrics: Mapping[str, float], *, step: int,
                    tags: Mapping[str, object] | None = None) -> None:
        """Log ``metrics`` at ``step`` (and ``tags``, if given) in one request."""
        log_batch(self.client, mlflow_id, metrics=metrics, tags=tags, step=step)

    def set_tags(self, mlflow_id: str, tags: Mapping[str, object]) -> None:
        log_batch(self.client, mlflow_id, tags=tags)

    def tags(self, mlflow_id: str) -> dict[str, str]:
        return dict(self.client.get_run(mlflow_id).data.tags)

    def metric_steps(self, mlflow_id: str, key: str) -> list[int]:
        """The steps at which ``key`` was logged, in the order logged (repeats kept)."""
        return [m.step for m in self.client.get_metric_history(mlflow_id, key)]

    def log_input(self, mlflow_id: str, dataset: DatasetRecord) -> None:
        """The dataset a run trained on, as an MLflow input (shown on the run's page).

        MLflow looks the dataset up in the experiment and inserts it when missing, in one
        transaction that does not lock the lookup: two processes starting runs of the same
        experiment at once can both insert it, and the second fails on the store's unique key
        (experiment, name, digest). The row then exists, so the call is made once more and finds
        it; any other error, or the same one twice, is raised."""
        entity = Dataset(name=dataset.name, digest=dataset.digest, source_type="local",
                         source=dataset.source)
        inputs = [DatasetInput(dataset=entity,
                               tags=[InputTag("mlflow.data.context", "training")])]
        try:
            self.client.log_inputs(mlflow_id, datasets=inputs)
        except MlflowException as err:
            if not is_unique_violation(err):
                raise
            self.client.log_inputs(mlflow_id, datasets=inputs)

    def log_file(self, mlflow_id: str, path: Path, artifact_dir: str | None = None) -> None:
        with quiet_artifacts():
            self.client.log_artifact(mlflow_id, str(path), artifact_dir)

    def log_bytes(self, mlflow_id: str, artifact_path: str, data: bytes) -> None:
        """Log ``data`` as the artifact ``artifact_path`` (e.g. ``predictions.npz``)."""
        directory, _, name = artifact_path.rpartition("/")
        with tempfile.TemporaryDirectory(prefix="kdspec-artifact-") as tmp:
            local = Path(tmp) / name
            local.write_bytes(data)
            self.log_file(mlflow_id, local, directory or None)

    def download(self, mlflow_id: str, artifact_path: str, dst_dir: Path) -> Path:
        """Fetch one artifact of a run into ``dst_dir``; returns its local path."""
        return download(self.client, mlflow_id, artifact_path, dst_dir)


#: How a unique-key violation reads in MLflow's error, by database: sqlite, PostgreSQL, MySQL
#: (through SQLAlchemy's IntegrityError), and MLflow's own wording over HTTP.
UNIQUE_VIOLATION = re.compile(
    r"UNIQUE constraint failed|duplicate key value|Duplicate entry|IntegrityError"
    r"|RESOURCE_ALREADY_EXISTS", re.IGNORECASE)


def is_unique_violation(err: MlflowException) -> bool:
    """Whether ``err`` is the store refusing a row whose unique key another writer just took."""
    return bool(UNIQUE_VIOLATION.search(str(err))) or err.error_code == "RESOURCE_ALREADY_EXISTS"


def stored_run(run: MlflowRun) -> StoredRun:
    """An MLflow run with a ``kdspec.run_id`` tag as a :class:`StoredRun`."""
    tags = run.data.tags
    return StoredRun(
        mlflow_id=run.info.run_id, kdspec_id=tags.get(schema.TAG_RUN_ID, ""),
        status=run.info.status, epochs_done=int(tags.get(schema.TAG_LAST_EPOCH, "0") or 0),
        start_time=int(run.info.start_time or 0), experiment_id=str(run.info.experiment_id),
        failure=tags.get(schema.TAG_FAILURE, ""), lease=Lease.from_tags(tags),
        end_time=int(run.info.end_time or 0), study=tags.get(schema.TAG_STUDY, ""),
        precision=tags.get(schema.TAG_PRECISION, ""),
        test_acc=run.data.metrics.get(schema.METRIC_TEST_ACC),
        interrupted=tags.get(schema.TAG_INTERRUPTED, ""),
        flags=tuple(v for k, v in sorted(tags.items()) if k.startswith(schema.TAG_FLAG_PREFIX)))


def parent_description(study: Study) -> str:
    """The parent run's description in the MLflow UI: what the study is and how to report it."""
    variant = ("; variant " + ", ".join(f"{k} = {v}" for k, v in study.variant)
               if study.variant else "")
    return (f"kdspec study **{study.name}**: {study.teacher.arch} -> {study.student.arch} on "
            f"{study.dataset.name}, T = {', '.join(f'{t:g}' for t in study.temperatures)}, "
            f"{len(study.seeds)} seeds{variant}. The report (significance, disagreement, "
            f"fairness) is written by `kdspec report SPEC` to reports/<spec name>/{study.name}/report.html "
            f"and logged here under the artifacts `{schema.ARTIFACT_REPORT_DIR}/`; "
            f"`{schema.ARTIFACT_SPEC}` is the spec that made this run."
            + (f"\n\n{study.note}" if study.note else ""))


def experiment_folder(name: str) -> str:
    """A folder name for an experiment: letters, digits, ``-``, ``_`` and ``.`` kept, never
    ``.`` or ``..`` (an experiment named ``..`` would put its runs beside the database)."""
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-.")
    return slug or "experiment"
