"""DPD and EOD against fairlearn: binary targets and every one-vs-rest binarisation."""

from __future__ import annotations

import numpy as np
import pytest
from fairlearn.metrics import demographic_parity_difference, equalized_odds_difference

from kdspec.analysis.fairness import MSG_NO_ATTRIBUTE, study_fairness
from kdspec.analysis.fairness_metrics import one_vs_rest_gaps, run_fairness
from kdspec.plan import FairnessSpec
from tests.analysis.synthetic import records_from_predictions, synthetic_predictions
from tests.factories import dataset_spec, tiny_plan


def _binary_sample(rng: np.random.Generator, n: int, groups: int):
    sensitive = rng.integers(0, groups, n)
    y_true = rng.integers(0, 2, n)
    bias = 0.1 * sensitive  # a group-dependent error rate, so the gaps are not zero
    flip = rng.random(n) < 0.2 + bias
    return y_true, np.where(flip, 1 - y_true, y_true), sensitive


@pytest.mark.parametrize("groups", [2, 3])
def test_binary_target_matches_fairlearn(groups: int) -> None:
    rng = np.random.default_rng(groups)
    y_true, y_pred, sensitive = _binary_sample(rng, 2000, groups)
    dpd, eod, dpd_c, eod_c = run_fairness(y_true, y_pred, sensitive, num_classes=2,
                                          multiclass_aggregate="max")
    assert dpd_c is None and eod_c is None
    assert dpd == pytest.approx(demographic_parity_difference(
        y_true, y_pred, sensitive_features=sensitive), abs=1e-12)
    assert eod == pytest.approx(equalized_odds_difference(
        y_true, y_pred, sensitive_features=sensitive), abs=1e-12)
    assert dpd > 0.0 and eod > 0.0


@pytest.mark.parametrize("how", ["max", "mean"])
def test_multiclass_one_vs_rest_matches_fairlearn_per_class(how: str) -> None:
    rng = np.random.default_rng(7)
    n, c = 3000, 5
    sensitive = rng.integers(0, 3, n)
    y_true = rng.integers(0, c, n)
    wrong = rng.random(n) < 0.25 + 0.1 * sensitive
    y_pred = np.where(wrong, rng.integers(0, c, n), y_true)
    dpd, eod, dpd_c, eod_c = run_fairness(y_true, y_pred, sensitive, num_classes=c,
                                          multiclass_aggregate=how)  # type: ignore[arg-type]
    assert dpd_c is not None and eod_c is not None
    for k in range(c):
        t, p = (y_true == k).astype(int), (y_pred == k).astype(int)
        assert dpd_c[k] == pytest.approx(demographic_parity_difference(
            t, p, sensitive_features=sensitive), abs=1e-12)
        assert eod_c[k] == pytest.approx(equalized_odds_difference(
            t, p, sensitive_features=sensitive), abs=1e-12)
    reduce = np.max if how == "max" else np.mean
    assert dpd == pytest.approx(reduce(dpd_c)) and eod == pytest.approx(reduce(eod_c))


def test_a_group_without_positives_is_left_out_of_the_tpr_gap() -> None:
    # Group 1 has no sample of class 1: its TPR is undefined, so the TPR gap is over group 0
    # and 2 only, while the FPR gap still uses all three groups.
    y_true = np.array([1, 1, 0, 0, 0, 0, 1, 1, 0, 0])
    y_pred = np.array([1, 0, 0, 1, 0, 0, 1, 1, 0, 0])
    group = np.array([0, 0, 0, 0, 1, 1, 2, 2, 2, 2])
    _, eod = one_vs_rest_gaps(y_true, y_pred, group, num_classes=2)
    tpr_gap = 1.0 - 0.5  # group 2: 2/2, group 0: 1/2
    fpr_gap = 0.5 - 0.0  # group 0: 1/2, groups 1 and 2: 0
    assert eod[1] == pytest.approx(max(tpr_gap, fpr_gap))


def test_study_fairness_names_runs_without_the_attribute() -> None:
    plan = tiny_plan(dataset=dataset_spec("cifar10", sensitive=("group", "age")),
                     seeds=(0, 1), temperatures=(2.0,),
                     fairness=FairnessSpec(sensitive=("group", "age"),
                                           multiclass_aggregate="mean"))
    study = plan.studies[0]
    records = records_from_predictions(plan, study, synthetic_predictions(plan, study,
                                                                          n_test=300))
    result = study_fairness(records)
    assert result is not None and result.multiclass and result.aggregate == "mean"
    assert {r.attribute for r in result.runs} == {"group"}
    first = records.runs[0]
    assert result.problems[0] == MSG_NO_ATTRIBUTE.format(
        run=f"teacher seed 0 (kdspec id {first.kdspec_id}, MLflow run {first.mlflow_run_id})",
        attribute="age")
    summary = result.summary("group", first.group)
    values = [r.dpd for r in result.runs if r.group == first.group and r.attribute == "group"]
    assert summary.n == 2 and summary.mean("dpd") == pytest.approx(np.mean(values))
    assert summary.sd("dpd") == pytest.approx(np.std(values, ddof=1))
    excess = [r.excess("dpd") for r in result.runs
              if r.group == first.group and r.attribute == "group"]
    assert summary.excess("dpd").excess_mean == pytest.approx(np.mean(excess))


def test_per_class_means_average_the_one_vs_rest_values_over_seeds() -> None:
    plan = tiny_plan(dataset=dataset_spec("cifar10", sensitive=("group",)), seeds=(0, 1, 2),
                     temperatures=(2.0,), fairness=FairnessSpec(sensitive=("group",)))
    study = plan.studies[0]
    records = records_from_predictions(plan, study, synthetic_predictions(plan, study,
                                                                          n_test=400))
    result = study_fairness(records)
    assert result is not None
    key = records.distilled_keys[0]
    means = result.per_class_means("group", key)
    assert means is not None
    runs = [r for r in result.runs if r.group == key]
    dpd = np.stack([r.dpd_per_class for r in runs if r.dpd_per_class is not None])
    eod = np.stack([r.eod_per_class for r in runs if r.eod_per_class is not None])
    assert dpd.shape == eod.shape == (3, 10)
    np.testing.assert_allclose(means[0], dpd.mean(axis=0))
    np.testing.assert_allclose(means[1], eod.mean(axis=0))
