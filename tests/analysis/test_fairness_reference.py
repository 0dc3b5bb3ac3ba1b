"""The no-group-effect reference of DPD/EOD: what it keeps, what it removes, and that the
excess has no small-sample bias where the raw value has."""

from __future__ import annotations

import numpy as np
import pytest

from kdspec.analysis.fairness_metrics import (
    one_vs_rest_gaps,
    one_vs_rest_gaps_grouped,
    run_fairness,
)
from kdspec.analysis.fairness_reference import fairness_reference, within_class_permutations


def _data(rng: np.random.Generator, n: int, accuracy: float, gap: float = 0.0):
    y_true = rng.integers(0, 5, n)
    group = (rng.random(n) < 0.3 + 0.1 * y_true).astype(np.int64)  # uneven over classes
    right = rng.random(n) < accuracy
    right &= ~((group == 1) & (rng.random(n) < gap))
    y_pred = np.where(right, y_true, (y_true + rng.integers(1, 5, n)) % 5)
    return y_true, y_pred, group


def test_permutations_keep_every_class_group_cell() -> None:
    rng = np.random.default_rng(0)
    y_true, _, group = _data(rng, 500, 0.8)
    shuffled = within_class_permutations(y_true, group, permutations=7)
    for row in shuffled:
        for c in range(5):
            assert np.sort(row[y_true == c]).tolist() == np.sort(group[y_true == c]).tolist()
    assert not all(np.array_equal(row, group) for row in shuffled)


def test_grouped_gaps_equal_the_metric_under_each_grouping() -> None:
    rng = np.random.default_rng(1)
    y_true, y_pred, group = _data(rng, 400, 0.7)
    groupings = np.stack([group, 1 - group, rng.permutation(group)])
    dpd, eod = one_vs_rest_gaps_grouped(y_true, y_pred, groupings, n_groups=2, num_classes=5)
    for row, grouping in enumerate(groupings):
        ref_dpd, ref_eod = one_vs_rest_gaps(y_true, y_pred, grouping, num_classes=5)
        assert dpd[row] == pytest.approx(ref_dpd, nan_ok=True)
        assert eod[row] == pytest.approx(ref_eod, nan_ok=True)


def test_a_constant_predictor_scores_zero_and_has_no_excess() -> None:
    rng = np.random.default_rng(2)
    y_true, _, group = _data(rng, 600, 0.8)
    y_pred = np.zeros_like(y_true)
    dpd, eod, _, _ = run_fairness(y_true, y_pred, group, num_classes=5,
                                  multiclass_aggregate="mean")
    ref = fairness_reference(y_true, y_pred, group, observed=(dpd, eod), num_classes=5,
                             aggregate="mean")
    assert dpd == 0.0 and eod == 0.0
    assert ref.dpd_excess == 0.0 and ref.eod_excess == 0.0 and ref.dpd_p == 1.0


def test_the_excess_removes_the_bias_that_falls_with_accuracy() -> None:
    """No group effect at 50 % and at 90 % accuracy: the raw EOD falls with accuracy (noise
    floor), the excess stays at 0 (within 3 Monte-Carlo SEs of 80 test sets)."""
    rng = np.random.default_rng(3)
    for accuracy in (0.5, 0.9):
        raw, excess = [], []
        for _ in range(80):
            y_true, y_pred, group = _data(rng, 800, accuracy)
            dpd, eod, _, _ = run_fairness(y_true, y_pred, group, num_classes=5,
                                          multiclass_aggregate="mean")
            ref = fairness_reference(y_true, y_pred, group, observed=(dpd, eod),
                                     num_classes=5, aggregate="mean", permutations=100)
            raw.append(eod)
            excess.append(ref.eod_excess)
        assert np.mean(raw) > 0.02
        assert abs(np.mean(excess)) < 3 * np.std(excess) / np.sqrt(80)


def test_a_group_effect_shows_as_excess_and_a_small_p() -> None:
    rng = np.random.default_rng(4)
    y_true, y_pred, group = _data(rng, 3000, 0.85, gap=0.2)
    dpd, eod, _, _ = run_fairness(y_true, y_pred, group, num_classes=5,
                                  multiclass_aggregate="mean")
    ref = fairness_reference(y_true, y_pred, group, observed=(dpd, eod), num_classes=5,
                             aggregate="mean")
    assert ref.eod_excess > 0.1 and ref.eod_p == pytest.approx(1 / 201)
    assert ref.eod_reference == pytest.approx(eod - ref.eod_excess)
