"""Read one study's runs from MLflow into typed records.

Runs are found by the ``kdspec.run_id`` tag over every active experiment of the store (a teacher
may have been trained by another spec, in another experiment), never by run name. Only FINISHED
runs are used; when several FINISHED runs share one kdspec id, the one ``kdspec run`` counts is
taken (:func:`kdspec.tracking.ownership.finished_run`: the newest) and the report says so. A run that is missing, unfinished or whose predictions cannot be read becomes a
:class:`RunProblem` naming it; nothing here raises for one bad run.
"""

from __future__ import annotations

import tempfile
import zipfile
from collections import Counter
from pathlib import Path

import numpy as np
from mlflow.entities import Run as MlflowRun
from mlflow.entities import RunStatus
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from kdspec.analysis.records import (
    ProblemKind,
    RunPredictions,
    RunProblem,
    StoredIndividualOutputs,
    StudyRecords,
)
from kdspec.analysis.study_progress import StudyProgress, blocked_by_teacher, report_state
from kdspec.errors import ReportError
from kdspec.plan import Plan, Run, Study
from kdspec.tracking import schema
from kdspec.tracking.client import (
    StoreMissing,
    active_experiment_ids,
    download,
    open_client,
    search_runs,
    tag_filter,
)
from kdspec.tracking.leases import now_ms
from kdspec.tracking.ownership import RunStateKind, finished_run, first_made, run_state
from kdspec.tracking.run_store import StoredParent
from kdspec.tracking.store import stored_run

MSG_STORE_UNREACHABLE = "cannot read the MLflow store at {uri}: {error}"
MSG_MISSING = "no MLflow run has tag kdspec.run_id = {kdspec_id}"
MSG_NOT_FINISHED = "no FINISHED MLflow run; found {statuses}{failure}"
MSG_DUPLICATE = "{count} FINISHED MLflow runs share this kdspec id; used the newest ({used})"
MSG_NO_ARTIFACT = "predictions.npz cannot be downloaded ({error})"
MSG_BAD_NPZ = "predictions.npz is not a readable .npz file ({error})"
MSG_BAD_KEYS = "predictions.npz lacks {keys}"
MSG_BAD_SHAPES = "predictions.npz: y_true {true_shape} and y_pred {pred_shape} must be equal-length 1-D arrays"
MSG_BAD_DTYPE = "predictions.npz: {key} has dtype {dtype}, expected integers"
MSG_BAD_LABELS = "predictions.npz: {key} has labels outside 0..{last}"
MSG_OTHER_TEST_SET = (
    "its test labels differ from those of the other runs ({n} samples vs {n_ref}); "
    "it cannot be compared with them"
)


def open_store(tracking_uri: str) -> MlflowClient:
    """A client for the store; a sqlite URI must name an existing file (reading never creates
    one)."""
    try:
        return open_client(tracking_uri, create=False)
    except StoreMissing as err:
        raise ReportError(str(err)) from err


def _runs_with_tag(client: MlflowClient, experiment_ids: list[str], tag: str,
                   value: str) -> list[MlflowRun]:
    """Active runs carrying ``tag = value``, newest first (every page)."""
    return search_runs(client, tag_filter({tag: value}), experiment_ids=experiment_ids,
                       order_by=["attributes.start_time DESC"])


def _problem(kind: ProblemKind, run: Run, reason: str, mlflow_run_id: str | None = None
             ) -> RunProblem:
    return RunProblem(kind=kind, kdspec_id=run.id, role=run.role, seed=run.seed,
                      temperature=run.temperature, reason=reason, mlflow_run_id=mlflow_run_id)


def parse_predictions(path: Path, num_classes: int) -> tuple[np.ndarray, np.ndarray,
                                                             dict[str, np.ndarray]]:
    """Load and validate a predictions.npz: ``(y_true, y_pred, attributes)``.

    Raises ValueError with a one-line reason (one of the ``MSG_BAD_*`` messages) when invalid.
    """
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise ValueError(MSG_BAD_NPZ.format(error=err)) from err
    missing = [k for k in (schema.PRED_Y_TRUE, schema.PRED_Y_PRED) if k not in arrays]
    if missing:
        raise ValueError(MSG_BAD_KEYS.format(keys=" and ".join(missing)))
    y_true, y_pred = arrays[schema.PRED_Y_TRUE], arrays[schema.PRED_Y_PRED]
    if y_true.ndim != 1 or y_true.shape != y_pred.shape:
        raise ValueError(MSG_BAD_SHAPES.format(true_shape=y_true.shape, pred_shape=y_pred.shape))
    for key, values in ((schema.PRED_Y_TRUE, y_true), (schema.PRED_Y_PRED, y_pred)):
        if not np.issubdtype(values.dtype, np.integer):
            raise ValueError(MSG_BAD_DTYPE.format(key=key, dtype=values.dtype))
        if values.size and (values.min() < 0 or values.max() >= num_classes):
            raise ValueError(MSG_BAD_LABELS.format(key=key, last=num_classes - 1))
    attributes = {
        key[len(schema.PRED_ATTRIBUTE_PREFIX):]: value
        for key, value in arrays.items()
        if key.startswith(schema.PRED_ATTRIBUTE_PREFIX) and value.shape == y_true.shape
    }
    return y_true.astype(np.int64), y_pred.astype(np.int64), attributes


def parse_individual_outputs(path: Path) -> StoredIndividualOutputs | None:
    """The ``individual/...`` arrays of a predictions.npz, or None when the run stored none.

    Raises ValueError naming what is inconsistent (shapes, pair positions, declaration)."""
    prefix = schema.PRED_INDIVIDUAL_PREFIX
    with np.load(path, allow_pickle=False) as npz:
        if f"{prefix}declaration" not in npz.files:
            return None
        try:
            probabilities = npz[f"{prefix}probabilities"]
            pairs, distances = npz[f"{prefix}pairs"], npz[f"{prefix}distances"]
            indices = npz[f"{prefix}indices"]
            declaration = str(npz[f"{prefix}declaration"])
        except KeyError as err:
            raise ValueError(f"predictions.npz: individual-fairness entry {err} is missing"
                             ) from err
    n = probabilities.shape[0] if probabilities.ndim == 2 else -1
    if (n < 0 or pairs.ndim != 2 or pairs.shape[1:] != (2,)
            or distances.shape != (pairs.shape[0],)):
        raise ValueError(f"predictions.npz: individual-fairness arrays have shapes "
                         f"probabilities {probabilities.shape}, pairs {pairs.shape}, "
                         f"distances {distances.shape} (want [n, C], [P, 2], [P])")
    if indices.shape != (n,):
        raise ValueError(f"predictions.npz: {indices.shape[0] if indices.ndim else 0} "
                         f"individual-fairness indices for {n} sampled images")
    if pairs.size and (pairs.min() < 0 or pairs.max() >= n):
        raise ValueError(f"predictions.npz: individual-fairness pairs point outside the {n} "
                         "sampled images")
    return StoredIndividualOutputs(probabilities.astype(np.float64), pairs.astype(np.int64),
                                   distances.astype(np.float64), declaration,
                                   indices.astype(np.int64))


#: What reading one plan run gave: its predictions (None when unusable), its problems and its
#: state in the store.
RunRead = tuple[RunPredictions | None, list[RunProblem], RunStateKind]


def _read_one(client: MlflowClient, experiment_ids: list[str], run: Run, num_classes: int,
              scratch: Path) -> RunRead:
    """The predictions of one plan run, or the problems that kept it out, and its state."""
    found = _runs_with_tag(client, experiment_ids, schema.TAG_RUN_ID, run.id)
    state = report_state(run_state(run, sorted((stored_run(r) for r in found),
                                               key=lambda s: s.start_time), at_ms=now_ms()))
    if not found:
        return None, [_problem("missing", run, MSG_MISSING.format(kdspec_id=run.id))], state
    finished = [r for r in found if r.info.status == RunStatus.to_string(RunStatus.FINISHED)]
    if not finished:
        statuses = ", ".join(sorted({r.info.status for r in found}))
        failure = found[0].data.tags.get(schema.TAG_FAILURE, "")
        reason = MSG_NOT_FINISHED.format(statuses=statuses,
                                         failure=f" ({failure})" if failure else "")
        return None, [_problem("not_finished", run, reason, found[0].info.run_id)], state
    # The FINISHED run that counts is the one kdspec run counts (the newest).
    counted = finished_run(sorted((stored_run(r) for r in finished), key=lambda s: s.start_time))
    assert counted is not None
    chosen = next(r for r in finished if r.info.run_id == counted.mlflow_id)
    problems: list[RunProblem] = []
    if len(finished) > 1:
        problems.append(_problem("duplicate", run, MSG_DUPLICATE.format(
            count=len(finished), used=chosen.info.run_id), chosen.info.run_id))
    mlflow_id = chosen.info.run_id
    try:
        local = download(client, mlflow_id, schema.ARTIFACT_PREDICTIONS, scratch / mlflow_id)
    except (MlflowException, OSError) as err:
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        problems.append(_problem("bad_artifact", run, MSG_NO_ARTIFACT.format(error=first_line),
                                 mlflow_id))
        return None, problems, state
    try:
        y_true, y_pred, attributes = parse_predictions(Path(local), num_classes)
        individual = parse_individual_outputs(Path(local))
    except ValueError as err:
        problems.append(_problem("bad_artifact", run, str(err), mlflow_id))
        return None, problems, state
    val = chosen.data.metrics.get(schema.METRIC_VAL_ACC)
    flags = tuple((tag.removeprefix(schema.TAG_FLAG_PREFIX), str(value))
                  for tag, value in sorted(chosen.data.tags.items())
                  if tag.startswith(schema.TAG_FLAG_PREFIX) and str(value).strip())
    return RunPredictions(kdspec_id=run.id, mlflow_run_id=mlflow_id, role=run.role,
                          seed=run.seed, temperature=run.temperature, y_true=y_true,
                          y_pred=y_pred, attributes=attributes,
                          val_accuracy=None if val is None else float(val),
                          individual=individual, flags=flags), problems, state


def _drop_other_test_sets(runs: list[RunPredictions], plan: Plan
                          ) -> tuple[list[RunPredictions], list[RunProblem]]:
    """Keep the runs whose y_true is the most common one; the others are problems."""
    if not runs:
        return runs, []
    fingerprints = [r.y_true.tobytes() for r in runs]
    reference, _ = Counter(fingerprints).most_common(1)[0]
    n_ref = len(reference) // 8
    kept = [r for r, f in zip(runs, fingerprints, strict=True) if f == reference]
    problems = [
        _problem("bad_artifact", plan.run(r.kdspec_id),
                 MSG_OTHER_TEST_SET.format(n=r.y_true.size, n_ref=n_ref), r.mlflow_run_id)
        for r, f in zip(runs, fingerprints, strict=True) if f != reference
    ]
    return kept, problems


def _teachers_read(study: Study, plan: Plan, done: dict[str, RunRead]) -> list[str]:
    """The teachers of the study's runs whose state was read (every teacher is one of its runs,
    except a teacher shared from another study of the plan that was read for it)."""
    return [t for t in {plan.run(r).teacher_id for r in study.run_ids} if t and t in done]


def _counted_parent(parents: list[MlflowRun]) -> str | None:
    """The study's parent run that ``kdspec run`` writes under (the first made)."""
    counted = first_made([StoredParent(str(r.info.run_id), int(r.info.start_time or 0),
                                       r.info.status) for r in parents])
    return None if counted is None else counted.mlflow_id


def read_study_records(plan: Plan, study: Study, *, tracking_uri: str,
                       already_read: dict[str, RunRead] | None = None) -> StudyRecords:
    """Find and read every run of ``study``; problems are recorded, not raised.

    ``already_read`` (kdspec id -> what reading it gave, for this ``tracking_uri``) is used and
    filled, so that a run shared by several studies of one plan (a common teacher) is searched
    and downloaded once. Raises ReportError only when the store cannot be opened or searched.
    """
    done = {} if already_read is None else already_read
    client = open_store(tracking_uri)
    try:
        experiment_ids = active_experiment_ids(client)
        parents = search_runs(client, tag_filter({schema.TAG_KIND: schema.KIND_PLAN,
                                                  schema.TAG_PLAN_HASH: study.study_hash}),
                              experiment_ids=experiment_ids,
                              order_by=["attributes.start_time DESC"])
    except MlflowException as err:
        raise ReportError(MSG_STORE_UNREACHABLE.format(uri=tracking_uri, error=err)) from err
    runs: list[RunPredictions] = []
    problems: list[RunProblem] = []
    states: dict[str, RunStateKind] = {}
    with tempfile.TemporaryDirectory(prefix="kdspec-report-") as tmp:
        for run_id in study.run_ids:
            if run_id not in done:
                try:
                    done[run_id] = _read_one(client, experiment_ids, plan.run(run_id),
                                             study.dataset.num_classes, Path(tmp))
                except MlflowException as err:
                    raise ReportError(MSG_STORE_UNREACHABLE.format(uri=tracking_uri,
                                                                   error=err)) from err
            record, run_problems, states[run_id] = done[run_id]
            problems.extend(run_problems)
            if record is not None:
                runs.append(record)
    runs, other_sets = _drop_other_test_sets(runs, plan)
    kinds = blocked_by_teacher({**{t: done[t][2] for t in _teachers_read(study, plan, done)},
                                **states}, plan, study.run_ids)
    unusable = kinds.count("finished") - len(runs)
    return StudyRecords(study=study, runs=tuple(runs), problems=tuple(problems + other_sets),
                        parent_run_id=_counted_parent(parents),
                        tracking_uri=tracking_uri,
                        progress=StudyProgress.of(kinds, unusable=unusable),
                        overrides=plan.overrides)
