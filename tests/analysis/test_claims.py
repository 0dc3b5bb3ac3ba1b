"""The claims section: each test against a hand-written or scipy oracle, family-wise control,
planted effects found, designs that cannot answer, levelling down flagged."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import stats

from kdspec.analysis.claims import holm, study_claims
from kdspec.analysis.class_change import (
    combined_p,
    paired_class_tests,
    relabelled_count_test,
)
from kdspec.analysis.count_trend import count_trend_test, kendall_s, significant_counts
from kdspec.analysis.significance import adjust_pvalues
from kdspec.analysis.study_analysis import StudyAnalysis, analyse_study
from kdspec.plan import AnalysisSpec, FairnessSpec, Plan
from tests.analysis.synthetic import (
    PlantedEffects,
    predict_with_accuracy,
    records_from_predictions,
    synthetic_predictions,
)
from tests.factories import dataset_spec, tiny_plan

TEMPERATURES = (1.0, 2.0, 4.0, 6.0, 8.0)
NO_BOOTSTRAP = AnalysisSpec(bootstrap=0, permutations=999)


def _plan(seeds: int = 5, temperatures: tuple[float, ...] = TEMPERATURES) -> Plan:
    return tiny_plan(dataset=dataset_spec("cifar10", sensitive=("group",)),
                     seeds=tuple(range(seeds)), temperatures=temperatures,
                     fairness=FairnessSpec(sensitive=("group",)), analysis=NO_BOOTSTRAP)


def _analysis(plan: Plan, predictions: dict) -> StudyAnalysis:
    return analyse_study(records_from_predictions(plan, plan.studies[0], predictions))


def _welch_p(a: np.ndarray, b: np.ndarray) -> float:
    return float(stats.ttest_ind(b, a, equal_var=False).pvalue)


def test_holm_is_the_step_down_by_hand() -> None:
    p = [0.01, 0.04, 0.03, float("nan"), 0.5]
    # sorted 0.01, 0.03, 0.04, 0.5 with m = 4: 0.04, 0.09, 0.09 (monotone), 0.5
    assert holm(p)[:3] == pytest.approx([0.04, 0.09, 0.09])
    assert math.isnan(holm(p)[3]) and holm(p)[4] == pytest.approx(0.5)
    assert np.allclose(adjust_pvalues(np.array([0.2, 0.3]), correction="holm"), [0.4, 0.4])


def test_paired_class_tests_are_scipys_paired_t_with_holm() -> None:
    rng = np.random.default_rng(0)
    reference = rng.normal(1.0, 0.05, (5, 6))
    ds = reference + rng.normal(0.02, 0.03, (5, 6))
    ds[:, 5] = reference[:, 5] + 0.01  # no spread: not testable
    adjusted, testable = paired_class_tests(ds - reference)
    raw = [float(stats.ttest_rel(ds[:, c], reference[:, c]).pvalue) for c in range(5)]
    assert testable.tolist() == [True] * 5 + [False]
    assert adjusted[:5] == pytest.approx(holm(raw))
    assert math.isnan(adjusted[5])


def test_the_relabelled_count_test_is_the_exact_share_over_every_split() -> None:
    rng = np.random.default_rng(1)
    reference = rng.normal(1.0, 0.05, (3, 4))
    ds = rng.normal(1.0, 0.05, (3, 4))
    ds[:, 0] += 0.2
    result = relabelled_count_test(reference, ds, alpha=0.2, permutations=99)
    pool = np.concatenate([reference, ds])

    def count(first: list[int]) -> int:
        second = [i for i in range(6) if i not in first]
        return sum(_welch_p(pool[first, c], pool[second, c]) < 0.2 for c in range(4))

    observed = count([0, 1, 2])
    every = [count(list(f)) for f in itertools.combinations(range(6), 3)]
    assert result.exact and result.splits == 20 and result.count == observed
    assert result.p_value == pytest.approx(np.mean(np.array(every) >= observed))
    assert combined_p(0.02, result.p_value) == pytest.approx(min(1.0, 2 * min(
        0.02, result.p_value)))


def test_significant_counts_match_scipy_welch() -> None:
    rng = np.random.default_rng(2)
    reference = rng.normal(1.0, 0.05, (4, 7))
    ds = rng.normal(1.02, 0.05, (4, 3, 7))
    counts = significant_counts(reference, ds, alpha=0.3)
    by_hand = [sum(_welch_p(reference[:, c], ds[:, k, c]) < 0.3 for c in range(7))
               for k in range(3)]
    assert counts.tolist() == by_hand


def test_the_count_trend_is_exact_over_every_relabelling_of_each_seed() -> None:
    """2 seeds x 3 temperatures: (3!)^2 = 36 relabellings, each scored by hand."""
    rng = np.random.default_rng(3)
    reference = rng.normal(1.0, 0.05, (2, 5))
    ds = reference[:, None, :] + rng.normal(0.0, 0.05, (2, 3, 5))
    ds[:, 2, :3] += 0.3
    ts = np.array([2.0, 4.0, 8.0])
    result = count_trend_test(reference, ds, ts, alpha=0.5, alternative="greater",
                              permutations=99)
    observed = kendall_s(ts, significant_counts(reference, ds, alpha=0.5))
    scores = []
    for first, second in itertools.product(itertools.permutations(range(3)), repeat=2):
        relabelled = np.stack([ds[0, list(first)], ds[1, list(second)]])
        scores.append(kendall_s(ts, significant_counts(reference, relabelled, alpha=0.5)))
    assert result.exact and result.relabellings == 36
    assert result.p_value == pytest.approx(np.mean(np.array(scores) >= observed))
    assert result.tau == pytest.approx(stats.kendalltau(ts, result.counts).statistic)


def test_planted_effects_are_supported_after_holm() -> None:
    plan = _plan(seeds=8)
    # The synthetic DS move from the NDS towards the teacher as T rises and lose group bias
    # with T.
    analysis = _analysis(plan, synthetic_predictions(plan, plan.studies[0], n_test=3000,
                                                     effects=PlantedEffects()))
    verdicts = {c.claim: c for c in analysis.claims.claims}
    assert verdicts["Distillation changes class-level accuracy beyond chance (NDS vs DS)."
                    ].verdict == "supported"
    for metric in ("DPD", "EOD"):
        fairer = verdicts[f"Higher T makes the DS fairer: {metric} over 'group' falls as T "
                          "rises."]
        assert fairer.verdict == "supported" and fairer.p_adjusted >= fairer.p_value
        assert verdicts[f"Distillation improves group fairness: DS {metric} below NDS over "
                        "'group'."].verdict == "supported"
    assert "Holm over the 8 claims" in analysis.claims.family
    for claim in analysis.claims.claims:
        assert claim.assumption and claim.power and claim.seeds_needed


def test_a_planted_rising_count_is_found_by_the_trend_test() -> None:
    """At the k-th of 6 temperatures the DS shift k of 8 classes far: counts 0..5 rise."""
    rng = np.random.default_rng(4)
    reference = rng.normal(1.0, 0.02, (5, 8))
    ds = reference[:, None, :] + rng.normal(0.0, 0.02, (5, 6, 8))
    for k in range(6):
        ds[:, k, :k] += 0.3
    ts = np.array([1.0, 2.0, 3.0, 4.0, 6.0, 8.0])
    result = count_trend_test(reference, ds, ts, alpha=0.05, alternative="greater",
                              permutations=999)
    assert result.tau > 0.9 and result.p_value < 0.01
    falling = count_trend_test(reference, ds, ts, alpha=0.05, alternative="less",
                               permutations=999)
    assert falling.p_value > 0.5


def test_the_fairness_slope_is_the_mean_of_per_seed_slopes_of_the_excess() -> None:
    plan = _plan(seeds=3)
    analysis = _analysis(plan, synthetic_predictions(plan, plan.studies[0], n_test=800))
    fairness = analysis.fairness
    assert fairness is not None
    slopes = []
    for seed in range(3):
        pairs = sorted((r.group.temperature, r.excess("dpd")) for r in fairness.runs
                       if r.seed == seed and r.group.role == "distilled")
        ts, ys = np.array([t for t, _ in pairs]), np.array([y for _, y in pairs])
        slopes.append(float(np.polyfit(ts, ys, 1)[0]))
    claim = next(c for c in analysis.claims.claims if "DPD over 'group' falls" in c.claim)
    assert f"mean slope {100 * np.mean(slopes):+.3f} points" in claim.result
    assert claim.p_value == pytest.approx(float(stats.ttest_1samp(
        slopes, 0.0, alternative="less").pvalue))


def test_bias_without_accuracy_is_the_larger_of_equivalence_and_class_change() -> None:
    plan = _plan(seeds=4, temperatures=(2.0, 4.0))
    analysis = _analysis(plan, synthetic_predictions(plan, plan.studies[0], n_test=2000))
    claim = next(c for c in analysis.claims.claims if c.claim.startswith("Class bias"))
    acc = analysis.accuracy
    rows = []
    for ds in acc.distilled:
        d = ds.overall - acc.nds.overall  # seeds in the same order on both sides
        tost = max(float(stats.ttest_1samp(d, -0.005, alternative="greater").pvalue),
                   float(stats.ttest_1samp(d, 0.005, alternative="less").pvalue))
        x_ds = ds.per_class / ds.overall[:, None]
        x_nds = acc.nds.per_class / acc.nds.overall[:, None]
        change = float(np.nanmin(paired_class_tests(x_ds - x_nds)[0]))
        rows.append(max(tost, change))
    assert claim.p_value == pytest.approx(min(1.0, 2 * min(rows)))


def test_designs_that_cannot_answer_are_inconclusive_and_say_why() -> None:
    plan = _plan(seeds=2, temperatures=(2.0, 4.0))
    analysis = _analysis(plan, synthetic_predictions(plan, plan.studies[0], n_test=500))
    by_claim = {c.claim: c for c in analysis.claims.claims}
    trend = by_claim["#SC rises as T rises (NDS vs DS)."]
    assert trend.verdict == "inconclusive" and "3 temperatures" in trend.detail
    assert by_claim["Higher T makes the DS fairer: EOD over 'group' falls as T rises."
                    ].verdict == "inconclusive"


def test_a_run_missing_its_partner_is_named_not_dropped_silently() -> None:
    plan = _plan(seeds=4)
    study = plan.studies[0]
    predictions = synthetic_predictions(plan, study, n_test=800)
    missing = next(r for r in study.run_ids
                   if plan.run(r).role == "distilled" and plan.run(r).seed == 3)
    del predictions[missing]
    analysis = _analysis(plan, predictions)
    claim = analysis.claims.claims[0]
    assert "seed 3: no DS T=" in claim.detail and "over 3 seeds" in claim.result


def test_fairness_bought_with_accuracy_is_flagged_as_levelling_down() -> None:
    """DS that lose accuracy and never predict some classes: every fairness row says so."""
    plan = _plan(seeds=3, temperatures=(2.0, 4.0, 8.0))
    study = plan.studies[0]
    rng = np.random.default_rng(5)
    predictions = synthetic_predictions(plan, study, n_test=1000)
    for run_id, (y_true, _, attributes) in list(predictions.items()):
        if plan.run(run_id).role == "distilled":
            worse = predict_with_accuracy(y_true, np.full(10, 0.4), rng)
            predictions[run_id] = (y_true, np.where(worse >= 7, 0, worse), attributes)
    analysis = _analysis(plan, predictions)
    rows = [c for c in analysis.claims.claims if "fairness" in c.claim or "fairer" in c.claim]
    assert rows and all(c.flag.startswith("levelling down") for c in rows)
    assert "never predicts 3 of the classes" in rows[0].flag


def test_the_paper_design_is_powered_against_the_papers_effect() -> None:
    from tests.factories import fairness_dataset

    plan = tiny_plan(dataset=fairness_dataset(), seeds=tuple(range(4)),
                     temperatures=(1.0, 2.0, 4.0, 8.0),
                     fairness=FairnessSpec(sensitive=("color",)), analysis=NO_BOOTSTRAP)
    analysis = _analysis(plan, synthetic_predictions(plan, plan.studies[0], n_test=1000))
    eod = next(c for c in analysis.claims.claims if "DS EOD below NDS" in c.claim)
    # Table 2, EOD: DS at T = 1, 2, 4, 8 (1.67, 1.60, 1.32, 1.15) average 1.435, NDS 2.81.
    assert f"for the paper's effect ({1.435 - 2.81:+.3g} points" in eod.power
    assert 0.0 <= eod.power_value <= 1.0


def test_a_a_studies_keep_every_claim_and_the_family_at_alpha() -> None:
    """40 studies where nothing differs between populations: no claim and no family is
    'supported' more often than alpha plus three binomial SEs (0.05 + 0.10); the benchmark
    (bench/bench_claims.py) measures the rates at 1,000 replicates."""
    plan = _plan(seeds=4, temperatures=(1.0, 4.0, 8.0))
    study = plan.studies[0]
    simulations = 40
    any_supported = 0
    per_claim: dict[str, int] = {}
    for seed in range(simulations):
        rng = np.random.default_rng(seed)
        y_true = rng.integers(0, 10, 600)
        group = (rng.random(600) < 0.5).astype(np.int64)
        profile = np.clip(0.75 + rng.normal(0, 0.08, 10), 0.05, 0.97)
        predictions = {}
        for run_id in study.run_ids:
            class_acc = np.clip(profile + rng.normal(0, 0.02, 10), 0.01, 0.995)
            predictions[run_id] = (y_true, predict_with_accuracy(y_true, class_acc, rng),
                                   {"group": group})
        records = records_from_predictions(plan, study, predictions)
        from kdspec.analysis.accuracy import study_accuracy
        from kdspec.analysis.fairness import study_fairness
        from kdspec.analysis.significance import study_significance
        accuracy = study_accuracy(records)
        claims = study_claims(records, accuracy,
                              study_significance(accuracy, study.analysis),
                              study_fairness(records), power=False)
        supported = [c.claim for c in claims.claims if c.verdict == "supported"]
        any_supported += bool(supported)
        for claim in supported:
            per_claim[claim] = per_claim.get(claim, 0) + 1
    limit = 0.05 + 3 * math.sqrt(0.05 * 0.95 / simulations)
    assert any_supported / simulations <= limit
    assert all(count / simulations <= limit for count in per_claim.values()), per_claim
