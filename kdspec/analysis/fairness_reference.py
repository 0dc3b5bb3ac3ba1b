"""What a model with no group effect would score with the same predictions on the same test set:
the reference each run's DPD and EOD are read against, the excess over it, and a p-value.

Why a reference: DPD and EOD are a max - min over groups of rates estimated from finite cells,
so they are above 0 even for a model whose predictions ignore the group, and that bias shrinks
as accuracy rises (fewer errors, less noise in the rates). Comparing raw values across models of
different accuracy (DS at rising T against the NDS) then finds "fairer" students where only the
accuracy changed.

The reference permutes the sensitive attribute *within each true class* ``P`` times (seeded):
every (class, group) cell keeps its size and every prediction stays, but any dependence of the
prediction on the group given the true class is removed, which is the null of equalised odds
(``Y_hat`` independent of ``A`` given ``Y``). Under that null the observed attribute is itself
one such permutation, so

- ``reference = mean over permutations of the metric`` is the expected value of the run's
  metric with no group effect, at its predictions and test size;
- ``excess = observed - reference`` has expectation 0 without a group effect, whatever the
  accuracy (the simulation in ``bench/bench_claims.py`` checks it);
- ``p = (1 + #{permuted >= observed}) / (1 + P)`` tests the run for a group effect.

DPD's reference keeps how unevenly the groups are spread over the true classes (a perfect
classifier's DPD), so DPD's excess is the part of the gap the model adds beyond the labels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kdspec.analysis.fairness_metrics import aggregate_gaps, one_vs_rest_gaps_grouped
from kdspec.plan import MulticlassAggregate

#: Permutations of the attribute per run (the reference's Monte-Carlo sd is the permuted
#: metric's sd / sqrt(P), a few hundredths of a point at 200; p-values step by 1/201).
REFERENCE_PERMUTATIONS = 200
#: Seed of the permutations, so a report is reproducible.
REFERENCE_SEED = 20_261_204


@dataclass(frozen=True)
class FairnessReference:
    """One run's reference values (no group effect), excesses and group-effect p-values."""

    dpd_reference: float
    eod_reference: float
    dpd_excess: float
    eod_excess: float
    dpd_p: float
    eod_p: float


NO_REFERENCE = FairnessReference(*(float("nan"),) * 6)


def within_class_permutations(y_true: np.ndarray, groups: np.ndarray, *, permutations: int,
                              seed: int = REFERENCE_SEED) -> np.ndarray:
    """``[P, N]`` group indices: ``groups`` shuffled among the samples of each true class."""
    rng = np.random.default_rng(seed)
    out = np.empty((permutations, groups.size), dtype=np.int64)
    for c in np.unique(y_true):
        members = np.flatnonzero(y_true == c)
        out[:, members] = rng.permuted(np.tile(groups[members], (permutations, 1)), axis=1)
    return out


def fairness_reference(y_true: np.ndarray, y_pred: np.ndarray, sensitive: np.ndarray, *,
                       observed: tuple[float, float], num_classes: int,
                       aggregate: MulticlassAggregate,
                       permutations: int = REFERENCE_PERMUTATIONS) -> FairnessReference:
    """The reference, excess and p-value of one run's ``observed = (dpd, eod)``."""
    if permutations < 1 or y_true.size == 0:
        return NO_REFERENCE
    _, groups = np.unique(sensitive, return_inverse=True)
    n_groups = int(groups.max()) + 1
    shuffled = within_class_permutations(y_true, groups, permutations=permutations)
    dpd_c, eod_c = one_vs_rest_gaps_grouped(y_true, y_pred, shuffled, n_groups=n_groups,
                                            num_classes=num_classes)
    dpd, eod = aggregate_gaps(dpd_c, eod_c, num_classes=num_classes, how=aggregate)

    def summary(draws: np.ndarray, value: float) -> tuple[float, float, float]:
        draws = draws[~np.isnan(draws)]
        if draws.size == 0 or np.isnan(value):
            return float("nan"), float("nan"), float("nan")
        reference = float(draws.mean())
        # A small tolerance so that ties in floating point count as ties.
        p = (1 + int(np.sum(draws >= value - 1e-12))) / (1 + draws.size)
        return reference, value - reference, p

    d_ref, d_excess, d_p = summary(dpd, observed[0])
    e_ref, e_excess, e_p = summary(eod, observed[1])
    return FairnessReference(dpd_reference=d_ref, eod_reference=e_ref, dpd_excess=d_excess,
                             eod_excess=e_excess, dpd_p=d_p, eod_p=e_p)
