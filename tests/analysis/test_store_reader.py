"""Finding a study's runs in a real sqlite MLflow store, and every way a run can be unusable."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from kdspec.analysis.records import GroupKey
from kdspec.analysis.store_reader import (
    MSG_BAD_KEYS,
    MSG_BAD_LABELS,
    MSG_DUPLICATE,
    MSG_MISSING,
    parse_predictions,
    read_study_records,
)
from kdspec.errors import ReportError
from kdspec.plan import Plan
from kdspec.tracking.client import MSG_NO_STORE
from tests.analysis.conftest import FilledStore, small_study_plan
from tests.analysis.mlflow_store import write_predictions


def test_reads_every_run_of_a_complete_study(complete_store: FilledStore) -> None:
    records = read_study_records(complete_store.plan, complete_store.study,
                                 tracking_uri=complete_store.uri)
    assert records.problems == ()
    assert records.parent_run_id == complete_store.parent_run_id
    assert [r.kdspec_id for r in records.runs] == list(complete_store.study.run_ids)
    first = records.runs[0]
    y_true, y_pred, attributes = complete_store.predictions[first.kdspec_id]
    np.testing.assert_array_equal(first.y_true, y_true)
    np.testing.assert_array_equal(first.y_pred, y_pred)
    np.testing.assert_array_equal(first.attributes["color"], attributes["color"])
    assert len(records.group(GroupKey("distilled", 4.0))) == 3


def test_problems_name_each_run_and_the_rest_is_read(
        messy_store: tuple[str, Plan, dict[str, str]]) -> None:
    uri, plan, ids = messy_store
    study = plan.studies[0]
    records = read_study_records(plan, study, tracking_uri=uri)
    problems = {p.kdspec_id: p for p in records.problems}
    assert problems[ids["missing"]].kind == "missing"
    assert problems[ids["missing"]].reason == MSG_MISSING.format(kdspec_id=ids["missing"])
    assert problems[ids["failed"]].kind == "not_finished"
    assert "FAILED" in problems[ids["failed"]].reason
    corrupt = problems[ids["corrupt"]]
    assert corrupt.kind == "bad_artifact" and "not a readable .npz" in corrupt.reason
    assert corrupt.mlflow_run_id == ids["mlflow:corrupt"]
    assert ids["corrupt"] in corrupt.describe() and ids["mlflow:corrupt"] in corrupt.describe()
    assert problems[ids["other_set"]].kind == "bad_artifact"
    duplicate = problems[ids["duplicate"]]
    assert duplicate.kind == "duplicate" and not duplicate.excluded
    assert duplicate.reason == MSG_DUPLICATE.format(count=2, used=ids["mlflow:duplicate"])
    used = {r.kdspec_id: r for r in records.runs}
    assert used[ids["duplicate"]].mlflow_run_id == ids["mlflow:duplicate"]
    assert used[ids["duplicate"]].y_pred.any()  # the newest run, not the all-zero older one
    # Teachers were found in the other experiment.
    assert len(records.group(GroupKey("teacher"))) == 3
    assert len(records.runs) == len(study.run_ids) - 4


def test_parse_predictions_reasons(tmp_path: Path) -> None:
    only_pred = tmp_path / "a.npz"
    np.savez(only_pred, y_pred=np.zeros(3, dtype=np.int64))
    with pytest.raises(ValueError, match=MSG_BAD_KEYS.format(keys="y_true")):
        parse_predictions(only_pred, 10)
    out_of_range = write_predictions(tmp_path / "b.npz", np.array([0, 1]), np.array([0, 12]))
    with pytest.raises(ValueError) as err:
        parse_predictions(out_of_range, 10)
    assert str(err.value) == MSG_BAD_LABELS.format(key="y_pred", last=9)


def test_a_missing_sqlite_file_is_an_error_not_a_new_store(tmp_path: Path) -> None:
    plan = small_study_plan()
    uri = f"sqlite:///{tmp_path / 'nothing.db'}"
    with pytest.raises(ReportError) as err:
        read_study_records(plan, plan.studies[0], tracking_uri=uri)
    assert str(err.value) == MSG_NO_STORE.format(path=tmp_path / "nothing.db", uri=uri)
    assert not (tmp_path / "nothing.db").exists()


