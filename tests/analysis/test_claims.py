"""The claims section: hand-computed oracles, planted effects found, and A/A data rejected at
no more than about alpha."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from kdspec.analysis.claims import (
    beyond_chance,
    binomial_excess,
    count_trend,
    fairer_than_nds,
    fairness_trend,
    kendall_trend,
    study_claims,
)
from kdspec.analysis.study_analysis import StudyAnalysis, analyse_study
from kdspec.plan import AnalysisSpec, FairnessSpec, Plan, Study
from tests.analysis.synthetic import (
    PlantedEffects,
    predict_with_accuracy,
    records_from_predictions,
    synthetic_predictions,
)
from tests.factories import dataset_spec, tiny_plan

TEMPERATURES = (1.0, 2.0, 4.0, 6.0, 8.0)
NO_BOOTSTRAP = AnalysisSpec(bootstrap=0)


def _plan(seeds: int = 5) -> Plan:
    return tiny_plan(dataset=dataset_spec("cifar10", sensitive=("group",)),
                     seeds=tuple(range(seeds)), temperatures=TEMPERATURES,
                     fairness=FairnessSpec(sensitive=("group",)), analysis=NO_BOOTSTRAP)


def _analysis(plan: Plan, predictions: dict) -> StudyAnalysis:
    study = plan.studies[0]
    return analyse_study(records_from_predictions(plan, study, predictions))


def null_predictions(plan: Plan, study: Study, *, seed: int, n_test: int = 800) -> dict:
    """A/A data: every run of every population drawn from one class profile and one group gap,
    so no claim is true."""
    rng = np.random.default_rng(seed)
    c = study.dataset.num_classes
    y_true = rng.integers(0, c, n_test)
    group = (rng.random(n_test) < 0.5).astype(np.int64)
    profile = np.clip(0.75 + rng.normal(0, 0.08, c), 0.05, 0.97)
    out = {}
    for run_id in study.run_ids:
        class_acc = np.clip(profile + rng.normal(0, 0.01, c), 0.01, 0.995)
        y_pred = predict_with_accuracy(y_true, class_acc, rng)
        unfair = (group == 1) & (y_pred == y_true) & (rng.random(n_test) < 0.1)
        out[run_id] = (y_true, np.where(unfair, 0, y_pred), {"group": group})
    return out


def test_binomial_excess_is_the_upper_tail_by_hand() -> None:
    plan = _plan()
    analysis = _analysis(plan, synthetic_predictions(plan, plan.studies[0], n_test=800))
    test = next(t for t in analysis.significance.tests if t.comparison == "nds_vs_ds")
    k, m, a = test.n_significant, test.n_testable, test.alpha
    by_hand = sum(math.comb(m, j) * a**j * (1 - a) ** (m - j) for j in range(k, m + 1))
    assert binomial_excess(test) == pytest.approx(by_hand, rel=1e-9)
    # The combined p is Bonferroni over the temperatures that ran.
    tests = [t for t in analysis.significance.tests if t.comparison == "nds_vs_ds"]
    claim = beyond_chance(analysis)
    assert claim.p_value == pytest.approx(min(1.0, len(tests) * min(
        binomial_excess(t) for t in tests)))


def test_kendall_trend_is_exact_for_a_few_temperatures() -> None:
    ts = np.array([1.0, 2.0, 4.0, 8.0])
    # A strictly rising count: only the identity pairing of 4! = 24 has tau = 1.
    tau, p = kendall_trend(ts, np.array([0.0, 1.0, 3.0, 5.0]), alternative="greater")
    assert tau == 1.0 and p == pytest.approx(1 / 24)
    tau, p = kendall_trend(ts, np.array([5.0, 3.0, 1.0, 0.0]), alternative="less")
    assert tau == -1.0 and p == pytest.approx(1 / 24)
    # Every value equal: no trend, p = 1.
    assert kendall_trend(ts, np.zeros(4), alternative="greater")[1] == 1.0


@pytest.mark.parametrize("values", [[0, 2, 1, 3, 3, 5], [4, 4, 0, 1, 0, 2, 2],
                                    [1, 0, 2, 2, 5, 3, 7, 6, 9]])
def test_kendall_trend_equals_scipys_permutation_test(values: list[int]) -> None:
    """The oracle: scipy.stats.permutation_test of Kendall's tau over pairings (exact for up
    to 7 values; for 9, both are Monte Carlo estimates of one p)."""
    ts = np.arange(1.0, len(values) + 1)
    x = np.array(values, dtype=float)
    tau, p = kendall_trend(ts, x, alternative="greater")
    reference = stats.permutation_test(
        (x,), lambda v: stats.kendalltau(ts, v).statistic, permutation_type="pairings",
        alternative="greater", n_resamples=9_999, random_state=1)
    assert tau == pytest.approx(stats.kendalltau(ts, x).statistic)
    assert p == pytest.approx(reference.pvalue, abs=0 if len(values) <= 7 else 0.02)


def test_fairness_slope_is_the_mean_of_per_seed_least_squares_slopes() -> None:
    plan = _plan(seeds=3)
    analysis = _analysis(plan, synthetic_predictions(plan, plan.studies[0], n_test=800))
    fairness = analysis.fairness
    assert fairness is not None
    slopes = []
    for seed in range(3):
        pairs = sorted((r.group.temperature, r.dpd) for r in fairness.runs
                       if r.seed == seed and r.group.role == "distilled")
        ts, ys = np.array([t for t, _ in pairs]), np.array([y for _, y in pairs])
        slopes.append(float(np.sum((ts - ts.mean()) * (ys - ys.mean()))
                            / np.sum((ts - ts.mean()) ** 2)))
    claim = fairness_trend(analysis, "group", "dpd")
    assert f"mean slope {100 * np.mean(slopes):+.3f} points" in claim.result
    assert claim.p_value == pytest.approx(float(stats.ttest_1samp(
        slopes, 0.0, alternative="less").pvalue))


def test_planted_effects_are_supported() -> None:
    plan = _plan(seeds=5)
    # The synthetic DS move from the NDS towards the teacher as T rises (#SC up, #TC down)
    # and lose group bias with T.
    analysis = _analysis(plan, synthetic_predictions(plan, plan.studies[0], n_test=3000,
                                                     effects=PlantedEffects()))
    verdicts = {c.claim: c.verdict for c in study_claims(analysis)}
    assert verdicts["Distillation changes class-level accuracy beyond chance (NDS vs DS)."] \
        == "supported"
    assert verdicts["#SC rises as T rises (NDS vs DS)."] == "supported"
    assert verdicts["#TC falls as T rises (teacher vs DS)."] == "supported"
    assert verdicts["Distillation improves group fairness: DS DPD below NDS over 'group'."] \
        == "supported"
    assert verdicts["Higher T makes the DS fairer: DPD over 'group' falls as T rises."] \
        == "supported"


def test_a_design_that_cannot_answer_is_inconclusive() -> None:
    plan = tiny_plan(dataset=dataset_spec("cifar10", sensitive=("group",)), seeds=(0, 1),
                     temperatures=(2.0, 4.0), fairness=FairnessSpec(sensitive=("group",)),
                     analysis=NO_BOOTSTRAP)
    analysis = _analysis(plan, synthetic_predictions(plan, plan.studies[0], n_test=500))
    assert count_trend(analysis, "nds_vs_ds").verdict == "inconclusive"
    assert fairness_trend(analysis, "group", "eod").verdict == "inconclusive"
    assert fairer_than_nds(analysis, "group", "dpd").verdict != "inconclusive"


def test_a_a_data_is_rejected_at_about_alpha_at_most() -> None:
    """120 studies where nothing differs: each claim 'supported' in no more than alpha plus
    three binomial standard errors of the simulations (0.05 + 0.06)."""
    plan = _plan(seeds=4)
    study = plan.studies[0]
    simulations = 120
    supported: dict[str, int] = {}
    for seed in range(simulations):
        analysis = _analysis(plan, null_predictions(plan, study, seed=seed))
        for claim in study_claims(analysis):
            supported[claim.claim] = supported.get(claim.claim, 0) + (
                claim.verdict == "supported")
    limit = 0.05 + 3 * math.sqrt(0.05 * 0.95 / simulations)
    rates = {claim: count / simulations for claim, count in supported.items()}
    assert len(rates) == 8
    assert all(rate <= limit for rate in rates.values()), rates
