"""The fairness floor, counts and bootstrap intervals: oracles and a coverage simulation."""

from __future__ import annotations

import numpy as np
import pytest
from fairlearn.metrics import demographic_parity_difference, equalized_odds_difference

from kdspec.analysis.fairness_evidence import (
    bootstrap_fairness,
    seed_interval,
    split_fairness,
)
from kdspec.analysis.fairness_metrics import run_fairness, run_fairness_weighted


def _multiclass(rng: np.random.Generator, n: int, classes: int = 5, groups: int = 3):
    sensitive = rng.integers(0, groups, n)
    # Groups spread unevenly over the classes: the labels alone have a DPD above 0.
    y_true = np.where(rng.random(n) < 0.15 * sensitive, 0, rng.integers(0, classes, n))
    wrong = rng.random(n) < 0.2
    y_pred = np.where(wrong, rng.integers(0, classes, n), y_true)
    return y_true, y_pred, sensitive


def test_the_floor_is_the_metric_of_a_perfect_classifier() -> None:
    y_true, _, sensitive = _multiclass(np.random.default_rng(0), 3000)
    split = split_fairness(y_true, sensitive, attribute="a", num_classes=5, aggregate="mean")
    dpd, eod, _, _ = run_fairness(y_true, y_true, sensitive, num_classes=5,
                                  multiclass_aggregate="mean")
    assert (split.perfect_dpd, split.perfect_eod) == (dpd, eod)
    assert split.perfect_dpd > 0.02 and split.perfect_eod == 0.0


def test_group_sizes_and_cell_positives_count_the_test_set() -> None:
    y_true, _, sensitive = _multiclass(np.random.default_rng(1), 2000)
    split = split_fairness(y_true, sensitive, attribute="a", num_classes=5, aggregate="max")
    assert split.groups == (0, 1, 2)
    assert split.group_sizes == tuple(int((sensitive == g).sum()) for g in range(3))
    expected = np.array([[int(((sensitive == g) & (y_true == c)).sum()) for c in range(5)]
                         for g in range(3)])
    assert np.array_equal(split.cell_positives, expected)
    assert split.smallest_cell == expected.min()
    binary = split_fairness(y_true % 2, sensitive, attribute="a", num_classes=2,
                            aggregate="max")
    assert binary.cell_positives.shape == (3, 1)  # class 1 only


def test_a_resample_weighted_by_multiplicity_is_fairlearn_on_the_resampled_arrays() -> None:
    rng = np.random.default_rng(2)
    n = 1500
    sensitive = rng.integers(0, 2, n)
    y_true = rng.integers(0, 2, n)
    y_pred = np.where(rng.random(n) < 0.2 + 0.1 * sensitive, 1 - y_true, y_true)
    drawn = rng.integers(0, n, (3, n))
    weights = np.stack([np.bincount(row, minlength=n) for row in drawn])
    dpd, eod = run_fairness_weighted(y_true, y_pred, sensitive, weights, num_classes=2,
                                     multiclass_aggregate="max")
    for b, row in enumerate(drawn):
        assert dpd[b] == pytest.approx(demographic_parity_difference(
            y_true[row], y_pred[row], sensitive_features=sensitive[row]), abs=1e-12)
        assert eod[b] == pytest.approx(equalized_odds_difference(
            y_true[row], y_pred[row], sensitive_features=sensitive[row]), abs=1e-12)


def test_bootstrap_ranges_cover_a_gap_far_above_the_noise() -> None:
    """200 test sets drawn from a model with a known gap (selection rates 0.30 and 0.42 in two
    equal groups: true DPD 0.12; TPR 0.70 / 0.78, FPR 0.10 / 0.14: true EOD 0.08); far above
    the noise the 90 % percentile range covers each truth in about 90 % of them (within three
    binomial standard errors)."""
    rng = np.random.default_rng(3)
    n, simulations, level = 2000, 200, 0.90
    covered = {"dpd": 0, "eod": 0}
    for sim in range(simulations):
        sensitive = rng.integers(0, 2, n)
        y_true = (rng.random(n) < np.where(sensitive == 1, 0.4, 0.3)).astype(np.int64)
        tpr = np.where(sensitive == 1, 0.78, 0.70)
        fpr = np.where(sensitive == 1, 0.14, 0.10)
        y_pred = (rng.random(n) < np.where(y_true == 1, tpr, fpr)).astype(np.int64)
        true_dpd = 0.4 * 0.78 + 0.6 * 0.14 - (0.3 * 0.70 + 0.7 * 0.10)
        dpd_ci, eod_ci = bootstrap_fairness(y_true, y_pred, sensitive, num_classes=2,
                                            aggregate="max", n_boot=200, level=level, seed=sim)
        covered["dpd"] += dpd_ci.low <= true_dpd <= dpd_ci.high
        covered["eod"] += eod_ci.low <= 0.08 <= eod_ci.high
    tolerance = 3 * np.sqrt(level * (1 - level) / simulations)
    for metric, count in covered.items():
        assert abs(count / simulations - level) <= tolerance, (metric, count)


def test_bootstrap_ranges_are_not_confidence_intervals_near_a_zero_gap() -> None:
    """No group effect (true DPD and EOD 0, 10 classes one-vs-rest): the max - min gap is
    biased upward, so its percentile range almost never contains 0. That is why the report
    calls it a range, not a confidence interval, and tests the excess instead."""
    rng = np.random.default_rng(5)
    covered = 0
    for sim in range(40):
        y_true = rng.integers(0, 10, 1000)
        sensitive = rng.integers(0, 2, 1000)
        y_pred = np.where(rng.random(1000) < 0.8, y_true, rng.integers(0, 10, 1000))
        _, eod_ci = bootstrap_fairness(y_true, y_pred, sensitive, num_classes=10,
                                       aggregate="mean", n_boot=100, seed=sim)
        covered += eod_ci.low <= 0.0
    assert covered / 40 < 0.5


def test_bootstrap_is_reproducible_and_off_when_asked() -> None:
    y_true, y_pred, sensitive = _multiclass(np.random.default_rng(4), 800)
    first = bootstrap_fairness(y_true, y_pred, sensitive, num_classes=5, aggregate="mean",
                               n_boot=150)
    assert first == bootstrap_fairness(y_true, y_pred, sensitive, num_classes=5,
                                       aggregate="mean", n_boot=150)
    dpd, eod, _, _ = run_fairness(y_true, y_pred, sensitive, num_classes=5,
                                  multiclass_aggregate="mean")
    assert first[0].low < dpd < first[0].high and first[1].low < eod < first[1].high
    off = bootstrap_fairness(y_true, y_pred, sensitive, num_classes=5, aggregate="mean",
                             n_boot=0)
    assert all(np.isnan(i.low) for i in off)


def test_seed_interval_is_the_t_interval_of_the_mean() -> None:
    values = np.array([0.10, 0.12, 0.11, 0.15])
    interval = seed_interval(values)
    half = 3.182446305284263 * values.std(ddof=1) / 2.0  # t_{0.975, 3}, n = 4
    assert interval.low == pytest.approx(values.mean() - half)
    assert interval.high == pytest.approx(values.mean() + half)
    assert np.isnan(seed_interval(np.array([0.1])).low)
