"""Did distillation change class-level accuracy? Two tests with seeds as the unit, combined.

Both take the per-seed normalised class accuracies of the reference (NDS) and of the DS
(averaged over T, or at one T):

- **paired** (finds a few strongly changed classes): per class a paired t-test of DS minus
  reference over seeds, Holm over the testable classes; p = the smallest Holm-adjusted p. Valid
  under any dependence between classes; assumes roughly normal per-seed differences.
- **relabelled count** (finds many mildly changed classes): the number of classes at Welch
  p < alpha between the two sides, against its distribution over every split of the 2n models
  into two groups of n (exact up to ``EXACT_LIMIT`` splits, else random ones). Whole models are
  relabelled, so dependence between classes is kept. Treating a seed's two models as
  exchangeable across seeds ignores their pairing; when they are positively correlated (shared
  initial weights and batches) that makes the test conservative, never liberal.

``combined_p = min(1, 2 min(p_paired, p_count))`` (Bonferroni over the two tests) is valid
whenever each test is; ``bench/bench_claims.py`` measures both error rates and power.
"""

from __future__ import annotations

import itertools
import math
import warnings
from dataclasses import dataclass

import numpy as np
from scipy import stats

from kdspec.analysis.count_trend import significant_counts
from kdspec.analysis.significance import adjust_pvalues

#: Enumerate every split of the 2n models up to this many (C(14, 7) = 3,432).
EXACT_LIMIT = 5_000
CHUNK = 256
RELABEL_SEED = 20_260_419


def paired_class_tests(differences: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-class two-sided paired t-tests of ``[n, C]`` per-seed differences: Holm-adjusted p
    ``[C]`` (NaN where not testable) and the testable mask (finite, some spread)."""
    testable = np.isfinite(differences).all(axis=0) & (differences.std(axis=0, ddof=1) > 0)
    p = np.full(differences.shape[1], np.nan)
    if testable.any():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            p[testable] = stats.ttest_1samp(differences[:, testable], 0.0, axis=0).pvalue
    return adjust_pvalues(p, correction="holm"), testable


def _splits(n: int, draws: int, rng: np.random.Generator) -> tuple[np.ndarray, bool]:
    """``[R, 2n]`` orders of the pooled models (first n: the reference side)."""
    if math.comb(2 * n, n) <= EXACT_LIMIT:
        firsts = list(itertools.combinations(range(2 * n), n))
        return np.array([list(f) + [i for i in range(2 * n) if i not in f]
                         for f in firsts]), True
    return np.argsort(rng.random((draws, 2 * n)), axis=1), False


@dataclass(frozen=True)
class CountTest:
    """The relabelled count test: observed count, p-value, how many splits were scored."""

    count: int
    p_value: float
    splits: int
    exact: bool


def relabelled_count_test(reference_x: np.ndarray, ds_x: np.ndarray, *, alpha: float,
                          permutations: int, seed: int = RELABEL_SEED) -> CountTest:
    """The count test of the module docstring; ``reference_x``, ``ds_x``: ``[n, C]``."""
    n = reference_x.shape[0]
    pool = np.concatenate([reference_x, ds_x])
    observed = int(significant_counts(reference_x, ds_x[:, None, :], alpha=alpha)[0])
    orders, exact = _splits(n, permutations, np.random.default_rng(seed))
    at_least = 0
    for start in range(0, len(orders), CHUNK):
        block = pool[orders[start:start + CHUNK]]  # [b, 2n, C]
        counts = significant_counts(block[:, :n], block[:, n:, None, :], alpha=alpha)[:, 0]
        at_least += int(np.sum(counts >= observed))
    p = at_least / len(orders) if exact else (1 + at_least) / (1 + len(orders))
    return CountTest(count=observed, p_value=float(p), splits=len(orders), exact=exact)


def combined_p(paired: float, count: float) -> float:
    """Bonferroni over the two tests (NaN parts ignored)."""
    parts = [p for p in (paired, count) if not math.isnan(p)]
    return min(1.0, len(parts) * min(parts)) if parts else math.nan
