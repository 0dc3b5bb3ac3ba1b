"""Power, minimal detectable effect and seeds needed: against published values, a simulation
and their own inverses."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from kdspec.analysis.power import (
    equivalence_power,
    equivalence_seeds_needed,
    minimal_detectable_effect,
    power_interval,
    sd_at,
    seeds_needed,
    t_test_power,
)


def test_power_matches_the_textbook_value() -> None:
    """One-sample t-test, d = 1, n = 10, two-sided alpha 0.05: power 0.803 (Cohen 1988;
    G*Power gives 0.8031)."""
    assert t_test_power(1.0, 1.0, 10, alpha=0.05, alternative="two-sided") == pytest.approx(
        0.8031, abs=5e-4)


def test_one_sided_power_matches_a_simulation() -> None:
    rng = np.random.default_rng(0)
    draws = rng.normal(-0.5, 1.0, (20_000, 6))
    p = stats.ttest_1samp(draws, 0.0, axis=1, alternative="less").pvalue
    simulated = float(np.mean(p < 0.05))
    predicted = t_test_power(-0.5, 1.0, 6, alpha=0.05, alternative="less")
    assert predicted == pytest.approx(simulated, abs=4 * math.sqrt(0.25 / 20_000) + 0.005)


def test_mde_and_seeds_needed_invert_the_power() -> None:
    mde = minimal_detectable_effect(2.0, 5, alpha=0.01, alternative="less")
    assert t_test_power(-mde, 2.0, 5, alpha=0.01, alternative="less") == pytest.approx(0.8,
                                                                                     abs=1e-6)
    n = seeds_needed(-mde, 2.0, alpha=0.01, alternative="less")
    assert n == 5
    assert seeds_needed(-mde / 2, 2.0, alpha=0.01, alternative="less") > 5
    assert seeds_needed(+1.0, 1.0, alpha=0.05, alternative="less") is None  # wrong direction
    assert math.isnan(t_test_power(1.0, 1.0, 1, alpha=0.05, alternative="less"))


def test_equivalence_power_matches_a_simulation_of_two_one_sided_tests() -> None:
    rng = np.random.default_rng(1)
    n, sd, margin = 8, 1.0, 1.0
    draws = rng.normal(0.2, sd, (20_000, n))
    lower = stats.ttest_1samp(draws, -margin, axis=1, alternative="greater").pvalue
    upper = stats.ttest_1samp(draws, margin, axis=1, alternative="less").pvalue
    simulated = float(np.mean(np.maximum(lower, upper) < 0.05))
    # The formula holds the sd at its true value; the test estimates it: within 5 points.
    assert equivalence_power(0.2, sd, n, margin=margin, alpha=0.05) == pytest.approx(
        simulated, abs=0.05)
    needed = equivalence_seeds_needed(0.0, sd, margin=margin, alpha=0.05)
    assert needed is not None
    assert equivalence_power(0.0, sd, needed, margin=margin, alpha=0.05) >= 0.8
    assert equivalence_power(0.0, sd, needed - 1, margin=margin, alpha=0.05) < 0.8
    assert equivalence_seeds_needed(1.5, sd, margin=margin, alpha=0.05) is None


def test_power_from_the_median_unbiased_sd_is_median_unbiased_and_its_interval_covers() -> None:
    """Pilot sds of 5 seeds (chi-square with 4 df), true sd 1, an effect of true power 0.30 at
    the Holm worst case of 8 claims: the plug-in power averages 0.43 (biased); the power from
    sd_at is above the truth half the time, and the 80 % interval holds it 80 % of the time
    (within 3 binomial SEs of 4,000 draws)."""
    n, level = 5, 0.05 / 8
    effect = -1.3794  # t_test_power(effect, 1, 5, alpha=level, 'less') = 0.303
    truth = t_test_power(effect, 1.0, n, alpha=level, alternative="less")
    assert truth == pytest.approx(0.303, abs=0.002)
    rng = np.random.default_rng(2)
    estimates = np.sqrt(rng.chisquare(n - 1, 4000) / (n - 1))
    rows = np.array([power_interval(effect, s, n, alpha=level, alternative="less")
                     for s in estimates])
    plug_in = np.mean([t_test_power(effect, s, n, alpha=level, alternative="less")
                       for s in estimates])
    tolerance = 3 * math.sqrt(0.25 / 4000)
    assert plug_in > truth + 0.08
    assert abs(np.mean(rows[:, 1] >= truth) - 0.5) <= tolerance
    assert abs(np.mean((rows[:, 0] <= truth) & (truth <= rows[:, 2])) - 0.8) <= tolerance
    assert sd_at(1.0, 5) == pytest.approx(np.sqrt(4 / stats.chi2.ppf(0.5, 4)))
