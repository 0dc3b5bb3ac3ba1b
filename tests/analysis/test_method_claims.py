"""The per-method claims: the class comparison between arms against scipy and a hand-written
Holm, how the family is formed, and simulated blocks (the calibration of
``bench/bench_claims.py --only methods``, sized to a few seconds): with no method doing
anything, no claim and no family is called supported more often than alpha + 2 SE; with one
method changing three classes, its claims are found."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from bench.method_calibration import MethodsTally, block_verdicts, limit, passes
from bench.method_scenarios import MethodsScenario, methods_plan, simulate_block
from kdspec.analysis.accuracy import study_accuracy
from kdspec.analysis.claims import ClaimsResult
from kdspec.analysis.class_change import relabelled_count_test
from kdspec.analysis.method_claims import MSG_FAMILY, method_claims
from kdspec.analysis.method_design import SeedArrays, compare_classes, method_arm, method_groups
from kdspec.analysis.significance import study_significance
from kdspec.analysis.study_analysis import StudyAnalysis
from kdspec.dsl import compile_text

ALPHA = 0.05
ARMS = ("kd", "dkd", "label_smoothing", "random_teacher")
NULL = MethodsScenario("unit null: four arms like KD, KD like the NDS", null=True, seeds=4,
                       methods=ARMS, fairness=False)
PLANTED = MethodsScenario("unit planted: DKD shifts three classes by 2.5 logits", null=False,
                          seeds=4, methods=ARMS, fairness=False, planted_arm="dkd",
                          planted=2.5, model_sd=0.05, model_factor_sd=0.0, pair_sd=0.05,
                          teacher_sd=0.05, seed_factor_sd=0.05, per_class=400)


def _holm(pvalues: np.ndarray) -> np.ndarray:
    """Holm by hand: sorted p_(i) x (m - i + 1), running maximum, capped at 1."""
    order = np.argsort(pvalues)
    out, running = np.empty_like(pvalues), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (pvalues.size - rank) * pvalues[i]))
        out[i] = running
    return out


def _arrays(label: str, seeds: tuple[int, ...], x: np.ndarray) -> SeedArrays:
    n = len(seeds)
    return SeedArrays(label, seeds, x, x, np.full(n, 0.7), np.full(n, 0.5), ())


def test_the_class_comparison_pairs_seeds_and_matches_scipy() -> None:
    rng = np.random.default_rng(3)
    reference = rng.normal(1.0, 0.05, (6, 8))
    arm = reference[1:] + rng.normal(0.0, 0.02, (5, 8))
    arm[:, 2] -= 0.15
    # The arm lacks seed 0; seeds are matched by number, not by position.
    result = compare_classes(_arrays("arm", (1, 2, 3, 4, 5), arm),
                             _arrays("ref", (0, 1, 2, 3, 4, 5), reference),
                             alpha=ALPHA, permutations=99)
    assert result.seeds == (1, 2, 3, 4, 5)
    p = stats.ttest_rel(arm, reference[1:], axis=0).pvalue
    assert result.adjusted == pytest.approx(_holm(p))
    assert result.change == pytest.approx((arm - reference[1:]).mean(axis=0))
    count = relabelled_count_test(reference[1:], arm, alpha=ALPHA, permutations=99)
    assert result.count is not None and result.count.p_value == count.p_value
    assert result.p_value == pytest.approx(min(1.0, 2 * min(_holm(p).min(), count.p_value)))
    up, down = result.changed(ALPHA)
    assert (up, down) == (int(((_holm(p) < ALPHA) & (result.change > 0)).sum()),
                          int(((_holm(p) < ALPHA) & (result.change < 0)).sum()))
    assert down >= 1


def test_a_comparison_with_one_common_seed_has_no_p_value() -> None:
    x = np.ones((2, 4))
    result = compare_classes(_arrays("a", (0, 1), x), _arrays("b", (1, 2), x), alpha=ALPHA,
                             permutations=9)
    assert math.isnan(result.p_value) and result.seeds == (1,)


def _arms(scenario: MethodsScenario, index: int) -> list:
    plan = methods_plan(scenario, permutations=99)
    records = simulate_block(scenario, plan, np.random.default_rng(index))
    arms = []
    for study in plan.studies:
        accuracy = study_accuracy(records[study.name])
        analysis = StudyAnalysis(records[study.name], accuracy,
                                 study_significance(accuracy, study.analysis), (), None,
                                 ClaimsResult((), ALPHA, ""))
        arms.append(method_arm(study, analysis))
    return arms


def test_the_family_is_every_arm_s_claims_and_each_arm_against_the_controls() -> None:
    result = method_claims(_arms(NULL, 0), power=True)
    kinds = [(c.arm, c.kind) for c in result.claims if c.kind != "paper"]
    assert kinds == [("kd", "vs label_smoothing"), ("dkd", "vs label_smoothing"),
                     ("random_teacher", "vs label_smoothing"), ("kd", "vs random_teacher"),
                     ("dkd", "vs random_teacher")]
    tested = [c for c in result.claims if not math.isnan(c.test.p_value)]
    assert result.tested == len(tested) == 13  # 4 arms x 2 paper claims at one T, 5 vs controls
    assert result.family == MSG_FAMILY.format(k=13, arms=4, alpha=ALPHA)
    adjusted = _holm(np.array([c.test.p_value for c in tested]))
    assert [c.test.p_adjusted for c in tested] == pytest.approx(list(adjusted))
    assert all(c.test.claim.startswith(f"[{c.arm}") for c in result.claims)
    # Power at the Holm worst case of the block, alpha / 13 (class tests: half of it).
    worst = (f"level {ALPHA / 13:.2g}", f"level {ALPHA / 13 / 2:.2g}")
    assert all(any(level in c.test.power for level in worst) for c in tested)


def test_method_groups_split_a_block_by_its_other_settings() -> None:
    plan = compile_text("""
recipe r { epochs = 1  batch_size = 64  lr = 0.1 }
study b {
  dataset trifeature { image_size = 32  target = shape  generated_train = 100  generated_test = 100 }
  teacher resnet32 { recipe = r }
  student resnet20 { recipe = r }
  distill { temperatures = [4]  loss = 0.2 * hard + 0.8 * soft }
  seeds = 2
  vary { distill { method = [kd, label_smoothing] }  student { lr = [0.1, 0.05] } }
}
""")
    groups = method_groups(plan.studies)
    assert [dict(k) for k, _ in groups] == [{"student.lr": "0.1"}, {"student.lr": "0.05"}]
    assert all({s.method.name for s in v} == {"kd", "label_smoothing"} for _, v in groups)
    assert method_groups([s for s in plan.studies if s.method.name == "kd"]) == []


def test_a_null_block_keeps_every_claim_and_the_family_at_alpha() -> None:
    tally = MethodsTally()
    for i in range(200):
        tally.add(NULL, block_verdicts(NULL, i, permutations=99))
    assert len(tally.tested) == 13
    assert passes(NULL, tally, ALPHA)
    assert tally.any_supported / tally.replicates <= limit(ALPHA, tally.replicates)


def test_a_planted_method_is_found_and_the_others_stay_null() -> None:
    tally = MethodsTally()
    for i in range(40):
        tally.add(PLANTED, block_verdicts(PLANTED, i, permutations=99))
    assert tally.rate("dkd", "class change") >= 0.8
    assert tally.rate("dkd", "vs label_smoothing") >= 0.8
    assert tally.rate("kd", "class change") <= 0.1
    assert passes(PLANTED, tally, ALPHA)
