"""Does the count of significant classes rise (or fall) with T? A randomization test with seeds as
the unit, and its power by simulation.

The statistic is Kendall's S between the temperatures and ``count_T``, the number of classes at
Welch p < alpha (uncorrected, the paper's count) between the reference seeds (NDS or teacher)
and the DS seeds at T. The null is that the DS do not depend on T: then, *within each seed*,
the DS at the different temperatures are exchangeable (they share that seed's initial weights,
batch order and teacher, whatever T). The test relabels the temperatures of each seed's DS
independently, recomputes every count and S, and reports
``p = (1 + #{S* >= S}) / (1 + B)`` (one-sided), or the exact share over every relabelling when
there are at most ``EXACT_LIMIT`` of them ((K!)^n). Whole models are relabelled, so any
dependence between classes, between a seed's models, or through a shared teacher is kept.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import special, stats

#: Enumerate every relabelling up to this many ((K!)^n).
EXACT_LIMIT = 5_040
#: Relabellings scored at once (memory: chunk x n x K x C x 8 bytes).
CHUNK = 64
PERMUTATION_SEED = 19_111_405


def significant_counts(reference_x: np.ndarray, ds_x: np.ndarray, *, alpha: float
                       ) -> np.ndarray:
    """Classes at Welch p < alpha per temperature: ``reference_x`` ``[..., n, C]`` against each
    of ``ds_x`` ``[..., n, K, C]`` -> ``[..., K]`` (leading axes broadcast; a class whose two
    sides are all constant is not testable and not counted, as in
    :mod:`kdspec.analysis.significance`)."""
    n_r, n_d = reference_x.shape[-2], ds_x.shape[-3]
    share_r = (reference_x.var(axis=-2, ddof=1) / n_r)[..., None, :]
    share_d = ds_x.var(axis=-3, ddof=1) / n_d
    se2 = share_r + share_d
    with np.errstate(invalid="ignore", divide="ignore"):
        t = (ds_x.mean(axis=-3) - reference_x.mean(axis=-2)[..., None, :]) / np.sqrt(se2)
        df = se2 ** 2 / (share_r ** 2 / (n_r - 1) + share_d ** 2 / (n_d - 1))
    testable = np.isfinite(t) & (se2 > 0)
    # Welch's df lies in [min(n_r, n_d) - 1, n_r + n_d - 2] and the critical |t| falls with df:
    # above the critical value at the smallest df a class is significant, below the one at the
    # largest df it is not; only the band between needs its own p (exact, ~20x fewer calls).
    abs_t = np.where(testable, np.abs(t), 0.0)
    sure = abs_t > stats.t.ppf(1.0 - alpha / 2.0, min(n_r, n_d) - 1)
    band = testable & ~sure & (abs_t > stats.t.ppf(1.0 - alpha / 2.0, n_r + n_d - 2))
    significant = sure.copy()
    significant[band] = 2.0 * special.stdtr(df[band], -abs_t[band]) < alpha
    return significant.sum(axis=-1)


def kendall_s(temperatures: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Kendall's S = sum over pairs i < j of sign(dT) sign(dcount), per row of ``[..., K]``."""
    i, j = np.triu_indices(temperatures.size, k=1)
    return (np.sign(temperatures[j] - temperatures[i])
            * np.sign(counts[..., j] - counts[..., i])).sum(axis=-1)


def _orders(n: int, k: int, draws: int, rng: np.random.Generator
            ) -> tuple[np.ndarray, bool]:
    """``[R, n, K]`` temperature orders per seed: every combination, or ``draws`` random ones."""
    if math.factorial(k) ** n <= EXACT_LIMIT:
        per_seed = list(itertools.permutations(range(k)))
        return np.array(list(itertools.product(per_seed, repeat=n))), True
    return np.argsort(rng.random((draws, n, k)), axis=2), False


@dataclass(frozen=True)
class TrendTest:
    """Kendall's tau of the counts with T and the randomization p-value."""

    counts: np.ndarray  # [K] observed
    tau: float
    p_value: float
    relabellings: int
    exact: bool

    @property
    def smallest_p(self) -> float:
        return 1.0 / self.relabellings if self.exact else 1.0 / (self.relabellings + 1)


def count_trend_test(reference_x: np.ndarray, ds_x: np.ndarray, temperatures: np.ndarray, *,
                     alpha: float, alternative: Literal["greater", "less"], permutations: int,
                     seed: int = PERMUTATION_SEED) -> TrendTest:
    """The test described in the module docstring (``ds_x`` ``[n, K, C]``)."""
    sign = 1.0 if alternative == "greater" else -1.0
    counts = significant_counts(reference_x, ds_x, alpha=alpha)
    tau = float(stats.kendalltau(temperatures, counts).statistic)
    observed = sign * kendall_s(temperatures, counts)
    n, k = ds_x.shape[0], ds_x.shape[1]
    orders, exact = _orders(n, k, permutations, np.random.default_rng(seed))
    at_least = 0
    for start in range(0, len(orders), CHUNK):
        block = orders[start:start + CHUNK]
        relabelled = np.take_along_axis(ds_x[None], block[..., None], axis=2)
        s = sign * kendall_s(temperatures, significant_counts(reference_x, relabelled,
                                                              alpha=alpha))
        at_least += int(np.sum(s >= observed))
    p = at_least / len(orders) if exact else (1 + at_least) / (1 + len(orders))
    return TrendTest(counts=counts, tau=tau, p_value=float(p), relabellings=len(orders),
                     exact=exact)


#: Simulated studies behind a power estimate, and relabellings per simulated study (pooled
#: into one null distribution of R x B draws).
POWER_REPLICATES = 200
POWER_PERMUTATIONS = 25
#: Skip the simulation above this many scored class-tests (replicates x relabellings x K x C).
POWER_BUDGET = 40_000_000


def simulated_trend_power(reference_x: np.ndarray, ds_x: np.ndarray,
                          temperatures: np.ndarray, *, seeds: int, alpha: float,
                          level: float, alternative: Literal["greater", "less"],
                          replicates: int = POWER_REPLICATES,
                          permutations: int = POWER_PERMUTATIONS,
                          seed: int = PERMUTATION_SEED) -> float:
    """Power of :func:`count_trend_test` at ``level`` with ``seeds`` seeds, for the class means
    this study observed (plug-in) and each class's pooled seed-to-seed sd, drawn as normal
    values. Each simulated study is scored against one null distribution pooled from
    ``permutations`` relabellings of every simulated study (``replicates x permutations``
    draws, so that small levels can be reached). NaN when it would exceed ``POWER_BUDGET``.
    With few seeds the observed means carry noise, so the plug-in overstates the effect; the
    report says so."""
    k, c = ds_x.shape[1], ds_x.shape[2]
    if replicates * (permutations + 1) * k * c * seeds > POWER_BUDGET:
        return math.nan
    rng = np.random.default_rng(seed)
    mean_ref, mean_ds = reference_x.mean(axis=0), ds_x.mean(axis=0)
    residuals = np.concatenate([reference_x - mean_ref, (ds_x - mean_ds).reshape(-1, c)])
    sd = np.sqrt((residuals ** 2).sum(axis=0) / max(residuals.shape[0] - 1 - k, 1))
    sign = 1.0 if alternative == "greater" else -1.0
    ref = mean_ref + sd * rng.standard_normal((replicates, seeds, c))
    ds = mean_ds + sd * rng.standard_normal((replicates, seeds, k, c))
    observed = sign * kendall_s(temperatures, significant_counts(ref, ds, alpha=alpha))
    orders = np.argsort(rng.random((replicates, permutations, seeds, k)), axis=3)
    relabelled = np.take_along_axis(ds[:, None], orders[..., None], axis=3)
    null = np.sort((sign * kendall_s(temperatures, significant_counts(
        ref[:, None], relabelled, alpha=alpha))).ravel())
    at_least = null.size - np.searchsorted(null, observed, side="left")
    return float(np.mean((1 + at_least) / (1 + null.size) < level))
