"""The MLflow calls both stages make, written once: open a store, page experiments and runs,
search by tag without a cap, download an artifact quietly, and write in MLflow's batch limits.

``kdspec.tracking.store`` (the runtime's writing side) and ``kdspec.analysis.store_reader``
(the report's reading side) both go through these; neither builds its own ``MlflowClient``.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from mlflow.entities import Metric, Param, RunTag, ViewType
from mlflow.entities import Run as MlflowRun
from mlflow.tracking import MlflowClient

from kdspec.errors import TrackingError
from kdspec.tracking.sqlite_store import prepare_sqlite_store
from kdspec.tracking.store_uri import local_artifact_root, sqlite_path

#: Runs or experiments per search request (MLflow's maximum page size for runs is 50,000;
#: 1,000 keeps each answer small). Every page is read: there is no silent cap.
SEARCH_PAGE = 1000
#: MLflow's limits per ``log_batch`` request.
MAX_PARAMS_PER_BATCH = 100
MAX_METRICS_PER_BATCH = 1000
MAX_TAGS_PER_BATCH = 100
PROGRESS_BAR_VARIABLE = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
MSG_NO_STORE = "no MLflow store at {path} (from tracking URI {uri}); run `kdspec run` first"


class StoreMissing(TrackingError):
    """A sqlite store that does not exist was to be read (reading must not create it)."""


#: MLflow 3's UI opens experiments on its GenAI overview unless told the workflow is model training
#: (a URL parameter it then keeps; the ``mlflow.experimentKind`` tag alone does not switch it).
UI_WORKFLOW_QUERY = "workflowType=machine_learning"


def experiment_url(server_url: str, experiment_id: str) -> str:
    """The page of an experiment's runs table in the MLflow UI served at ``server_url``."""
    return f"{server_url.rstrip('/')}/#/experiments/{experiment_id}?{UI_WORKFLOW_QUERY}"


def open_client(uri: str, *, create: bool) -> MlflowClient:
    """A client of the store. ``create``: a missing sqlite database is made first (whole, see
    :mod:`kdspec.tracking.sqlite_store`); without it, a missing database is
    :class:`StoreMissing` (MLflow would create it silently)."""
    path = sqlite_path(uri)
    if path is not None and not path.exists() and not create:
        raise StoreMissing(MSG_NO_STORE.format(path=path, uri=uri))
    try:
        if create:
            root = local_artifact_root(uri)
            prepare_sqlite_store(uri, artifact_root=str(root) if root else "")
        return MlflowClient(tracking_uri=uri)
    except TrackingError:
        raise
    except Exception as err:  # a bad URI or database fails deep inside MLflow/SQLAlchemy
        raise TrackingError(f"cannot open the MLflow store {uri}: {err}") from err


def active_experiment_ids(client: MlflowClient) -> list[str]:
    """Ids of every active experiment of the store (all pages)."""
    ids: list[str] = []
    token: str | None = None
    while True:
        page = client.search_experiments(view_type=ViewType.ACTIVE_ONLY,
                                         max_results=SEARCH_PAGE, page_token=token)
        ids.extend(str(e.experiment_id) for e in page)
        token = page.token
        if not token:
            return ids


def search_runs(client: MlflowClient, filter_string: str, *,
                experiment_ids: Sequence[str] | None = None,
                order_by: Sequence[str] | None = None) -> list[MlflowRun]:
    """Every active run matching ``filter_string`` in ``experiment_ids`` (default: every
    active experiment), all pages read."""
    ids = list(experiment_ids) if experiment_ids is not None else active_experiment_ids(client)
    if not ids:
        return []
    found: list[MlflowRun] = []
    token: str | None = None
    while True:
        page = client.search_runs(ids, filter_string=filter_string,
                                  run_view_type=ViewType.ACTIVE_ONLY, max_results=SEARCH_PAGE,
                                  order_by=list(order_by) if order_by else None,
                                  page_token=token)
        found.extend(page)
        token = page.token
        if not token:
            return found


def tag_filter(tags: Mapping[str, str]) -> str:
    """An MLflow filter string: every tag equal to its value (values may not hold a quote)."""
    for value in tags.values():
        if "'" in value:
            raise ValueError(f"tag value {value!r} holds a quote")
    return " and ".join(f"tags.`{key}` = '{value}'" for key, value in tags.items())


@contextlib.contextmanager
def quiet_artifacts() -> Iterator[None]:
    """MLflow draws a progress bar per artifact transfer; kdspec prints its own lines."""
    previous = os.environ.get(PROGRESS_BAR_VARIABLE)
    os.environ[PROGRESS_BAR_VARIABLE] = "false"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(PROGRESS_BAR_VARIABLE, None)
        else:
            os.environ[PROGRESS_BAR_VARIABLE] = previous


def download(client: MlflowClient, run_id: str, artifact_path: str, dst_dir: Path) -> Path:
    """Fetch one artifact of a run into ``dst_dir`` (created); returns its local path."""
    dst_dir.mkdir(parents=True, exist_ok=True)
    with quiet_artifacts():
        return Path(client.download_artifacts(run_id, artifact_path, str(dst_dir)))


def log_batch(client: MlflowClient, run_id: str, *,
              metrics: Mapping[str, float] | Sequence[Metric] = (),
              params: Mapping[str, object] | None = None,
              tags: Mapping[str, object] | None = None, step: int = 0) -> None:
    """Metrics (a mapping is logged at ``step``, now), params and tags in as few requests as
    MLflow's batch limits allow; the first request carries the tags with the first metrics."""
    now = int(time.time() * 1000)
    metric_list = (list(metrics) if not isinstance(metrics, Mapping)
                   else [Metric(k, float(v), now, step) for k, v in metrics.items()])
    param_list = [Param(k, str(v)) for k, v in (params or {}).items()]
    tag_list = [RunTag(k, str(v)) for k, v in (tags or {}).items()]
    while metric_list or param_list or tag_list:
        client.log_batch(run_id, metrics=metric_list[:MAX_METRICS_PER_BATCH],
                         params=param_list[:MAX_PARAMS_PER_BATCH],
                         tags=tag_list[:MAX_TAGS_PER_BATCH])
        metric_list = metric_list[MAX_METRICS_PER_BATCH:]
        param_list = param_list[MAX_PARAMS_PER_BATCH:]
        tag_list = tag_list[MAX_TAGS_PER_BATCH:]
