"""Welch class tests: oracle checks against scipy and hand formulas, planted effects, A/A rates."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from kdspec.analysis.accuracy import study_accuracy
from kdspec.analysis.significance import (
    MSG_TOO_FEW_RUNS,
    adjust_pvalues,
    normalise_class_accuracy,
    study_significance,
    welch_class_tests,
)
from kdspec.plan import AnalysisSpec
from tests.analysis.synthetic import (
    PlantedEffects,
    records_from_predictions,
    synthetic_predictions,
)
from tests.factories import dataset_spec, tiny_plan


def test_each_class_matches_scipy_welch_and_the_hand_ci() -> None:
    rng = np.random.default_rng(0)
    reference = rng.normal(1.0, 0.05, (5, 12))
    distilled = rng.normal(1.02, 0.08, (4, 12))
    out = welch_class_tests(reference, distilled, alpha=0.05, correction="none")
    for c in range(12):
        a, b = reference[:, c], distilled[:, c]
        expected = stats.ttest_ind(b, a, equal_var=False)
        assert out["statistic"][c] == pytest.approx(expected.statistic, rel=1e-12)
        assert out["pvalue"][c] == pytest.approx(expected.pvalue, rel=1e-12)
        va, vb = a.var(ddof=1) / 5, b.var(ddof=1) / 4
        df = (va + vb) ** 2 / (va**2 / 4 + vb**2 / 3)
        half = stats.t.ppf(0.975, df) * np.sqrt(va + vb)
        change = b.mean() - a.mean()
        assert out["mean_change"][c] == pytest.approx(change, abs=1e-15)
        assert out["df"][c] == pytest.approx(df, rel=1e-12)
        assert (out["ci_low"][c], out["ci_high"][c]) == pytest.approx((change - half,
                                                                        change + half))
        assert out["significant"][c] == (expected.pvalue < 0.05)


def test_benjamini_hochberg_matches_a_hand_computation() -> None:
    p = np.array([0.01, 0.04, 0.03, 0.20, np.nan])
    # Sorted valid p: 0.01, 0.03, 0.04, 0.20 (m = 4): p * m / rank = 0.04, 0.06, 0.0533, 0.20;
    # running minimum from the top: 0.04, 0.0533, 0.0533, 0.20.
    expected = np.array([0.04, 0.16 / 3, 0.16 / 3, 0.20, np.nan])
    np.testing.assert_allclose(adjust_pvalues(p, correction="bh"), expected)
    np.testing.assert_allclose(adjust_pvalues(p, correction="bonferroni"),
                               [0.04, 0.16, 0.12, 0.80, np.nan])
    np.testing.assert_array_equal(adjust_pvalues(p, correction="none"), p)


def test_zero_variance_in_both_groups_is_not_testable_and_not_counted() -> None:
    reference = np.array([[1.0, 0.9, 1.0], [1.0, 1.1, 1.2], [1.0, 1.0, 0.8]])
    distilled = np.array([[1.0, 0.5, 1.5], [1.0, 0.6, 1.4], [1.0, 0.55, 1.45]])
    out = welch_class_tests(reference, distilled, alpha=0.05, correction="bonferroni")
    assert out["testable"].tolist() == [False, True, True]
    assert np.isnan(out["pvalue"][0]) and not out["significant"][0]
    assert out["mean_change"][0] == 0.0
    # The family has m = 2: Bonferroni doubles the two valid p-values.
    np.testing.assert_allclose(out["adjusted"][1:], np.minimum(1, 2 * out["pvalue"][1:]))


def test_one_constant_side_is_a_valid_welch_test_without_a_warning() -> None:
    # Every teacher seed has the same value for class 0 (e.g. 100 % accuracy): Welch's t
    # reduces to (mean_D - c) / sqrt(s_D^2 / n_D) with n_D - 1 degrees of freedom.
    reference = np.array([[1.0, 0.2], [1.0, 0.3], [1.0, 0.25]])
    distilled = np.array([[0.9, 0.2], [0.8, 0.4], [0.85, 0.3], [0.95, 0.1]])
    out = welch_class_tests(reference, distilled, alpha=0.05, correction="none")
    d = distilled[:, 0]
    t = (d.mean() - 1.0) / np.sqrt(d.var(ddof=1) / 4)
    assert out["testable"][0]
    assert out["statistic"][0] == pytest.approx(t)
    assert out["df"][0] == pytest.approx(3.0)
    assert out["pvalue"][0] == pytest.approx(2 * stats.t.sf(abs(t), 3))


def test_normalisations() -> None:
    per_class = np.array([[0.5, 0.9]])
    overall = np.array([0.8])
    np.testing.assert_allclose(normalise_class_accuracy(per_class, overall,
                                                        normalization="ratio"), [[0.625, 1.125]])
    np.testing.assert_allclose(normalise_class_accuracy(per_class, overall,
                                                        normalization="difference"),
                               [[-0.3, 0.1]])


def _study(seeds: tuple[int, ...], analysis: AnalysisSpec, effects: PlantedEffects,
           n_test: int = 3000):
    plan = tiny_plan(dataset=dataset_spec("cifar10"), seeds=seeds, temperatures=(2.0, 8.0),
                     analysis=analysis)
    study = plan.studies[0]
    preds = synthetic_predictions(plan, study, n_test=n_test, seed=11, effects=effects)
    return plan, study, preds


@pytest.mark.parametrize("normalization", ["ratio", "difference"])
@pytest.mark.parametrize("correction", ["none", "bh", "bonferroni"])
def test_a_class_distillation_hurts_is_found(normalization: str, correction: str) -> None:
    analysis = AnalysisSpec(normalization=normalization, correction=correction)  # type: ignore[arg-type]
    plan, study, preds = _study((0, 1, 2, 3, 4), analysis, PlantedEffects(hurt_class=3))
    records = records_from_predictions(plan, study, preds)
    result = study_significance(study_accuracy(records), analysis)
    for temperature in study.temperatures:
        test = result.get("nds_vs_ds", temperature)
        assert test is not None and test.significant[3]
        assert test.mean_change[3] < 0 and test.ci_high[3] < 0


def test_a_side_with_fewer_than_two_runs_is_skipped_with_the_reason() -> None:
    plan, study, preds = _study((0, 1, 2), AnalysisSpec(), PlantedEffects())
    only_one_nds = {rid: p for rid, p in preds.items()
                    if plan.run(rid).role != "student" or plan.run(rid).seed == 0}
    records = records_from_predictions(plan, study, only_one_nds)
    result = study_significance(study_accuracy(records), study.analysis)
    skipped = result.get("nds_vs_ds", 2.0)
    assert skipped is not None and skipped.skipped == MSG_TOO_FEW_RUNS.format(
        reference="NDS", n_ref=1, distilled="DS T=2", n_ds=3)
    assert skipped.n_significant == 0
    assert result.counts("nds_vs_ds") == [(2.0, None), (8.0, None)]
    teacher = result.get("teacher_vs_ds", 2.0)
    assert teacher is not None and teacher.skipped is None


def _aa_class_accuracies(rng: np.random.Generator, n_seeds: int, num_classes: int
                         ) -> tuple[np.ndarray, np.ndarray]:
    """Per-class and overall accuracy of ``n_seeds`` models with one true accuracy per class."""
    support = 100
    true_acc = np.linspace(0.5, 0.95, num_classes)
    per_class = rng.binomial(support, true_acc, (n_seeds, num_classes)) / support
    return per_class, per_class.mean(axis=1)


def test_aa_rate_is_near_alpha_uncorrected_and_bonferroni_fwer_is_below_alpha() -> None:
    """A/A: both populations from one distribution; 400 simulations x 200 classes."""
    rng = np.random.default_rng(2024)
    alpha, num_classes, simulations = 0.05, 200, 400
    uncorrected_hits = 0
    family_errors = 0
    for _ in range(simulations):
        a = normalise_class_accuracy(*_aa_class_accuracies(rng, 5, num_classes),
                                     normalization="ratio")
        b = normalise_class_accuracy(*_aa_class_accuracies(rng, 5, num_classes),
                                     normalization="ratio")
        plain = welch_class_tests(a, b, alpha=alpha, correction="none")
        uncorrected_hits += int(plain["significant"].sum())
        bonferroni = welch_class_tests(a, b, alpha=alpha, correction="bonferroni")
        family_errors += int(bonferroni["significant"].any())
    rate = uncorrected_hits / (simulations * num_classes)
    assert 0.035 < rate < 0.065
    assert family_errors / simulations < alpha
