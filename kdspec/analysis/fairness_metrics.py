"""DPD and EOD of one run's predictions: the metric itself, binary or one-vs-rest per class.

For a binary target (positive class 1) and groups ``a`` of the sensitive attribute A:

- selection rate ``S_a = P(Y_hat = 1 | A = a)``; ``DPD = max_a S_a - min_a S_a``;
- ``TPR_a = P(Y_hat = 1 | Y = 1, A = a)``, ``FPR_a = P(Y_hat = 1 | Y = 0, A = a)``;
  ``EOD = max(max_a TPR_a - min_a TPR_a, max_a FPR_a - min_a FPR_a)``.

These are fairlearn's ``demographic_parity_difference`` and ``equalized_odds_difference``
(``method="between_groups"``, ``agg="worst_case"``), computed with ``bincount`` for every class
at once (the tests check them against fairlearn). A rate undefined for a group (no positive or
no negative sample in it) leaves that group out of that gap; a gap over fewer than 2 groups is
NaN. For a multiclass target each class c is binarised one-vs-rest and the per-class values
are aggregated (max or mean).
"""

from __future__ import annotations

import numpy as np
from scipy import sparse

from kdspec.plan import MulticlassAggregate


def _range_over_groups(rates: np.ndarray) -> np.ndarray:
    """Max - min over the group axis (-2) of ``[..., groups, classes]``, ignoring NaN rows; NaN
    where fewer than 2 groups are defined."""
    defined = ~np.isnan(rates)
    count = defined.sum(axis=-2)
    high = np.where(defined, rates, -np.inf).max(axis=-2)
    low = np.where(defined, rates, np.inf).min(axis=-2)
    return np.where(count >= 2, high - low, np.nan)


def one_vs_rest_gaps_weighted(y_true: np.ndarray, y_pred: np.ndarray, sensitive: np.ndarray,
                              weights: np.ndarray, *, num_classes: int
                              ) -> tuple[np.ndarray, np.ndarray]:
    """DPD_c and EOD_c under each row of ``weights`` ``[B, N]``: two arrays ``[B, classes]``.

    Row b counts test sample n ``weights[b, n]`` times (a bootstrap resample is the multiplicity
    of each sample; a row of ones is the test set itself). Counts per (group a, class c) are
    ``weights @ onehot`` with a sparse one-hot of the key ``a * C + c``: ``S[a, c] = #{A=a,
    Y_hat=c} / #{A=a}``, ``TPR[a, c] = #{A=a, Y=c, Y_hat=c} / #{A=a, Y=c}``,
    ``FPR[a, c] = #{A=a, Y!=c, Y_hat=c} / #{A=a, Y!=c}``. A group whose weights sum to 0 in a
    row is absent from that row.
    """
    _, group = np.unique(sensitive, return_inverse=True)
    n_groups = int(group.max()) + 1 if group.size else 0
    c, n = num_classes, y_true.size
    w = np.asarray(weights, dtype=np.float64).reshape(-1, n)

    def counts(keys: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        rows = np.arange(n) if mask is None else np.flatnonzero(mask)
        onehot = sparse.csr_matrix((np.ones(rows.size), (rows, keys[rows])),
                                   shape=(n, n_groups * c))
        return np.asarray(onehot.T @ w.T).T.reshape(-1, n_groups, c)

    group_size = np.asarray(
        sparse.csr_matrix((np.ones(n), (np.arange(n), group)), shape=(n, n_groups)).T @ w.T
    ).T[:, :, None]
    predicted = counts(group * c + y_pred)
    positives = counts(group * c + y_true)
    true_pos = counts(group * c + y_pred, y_true == y_pred)
    return gaps_from_counts(group_size, predicted, positives, true_pos)


def gaps_from_counts(group_size: np.ndarray, predicted: np.ndarray, positives: np.ndarray,
                     true_pos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """DPD_c and EOD_c ``[B, classes]`` from per-(row, group, class) counts ``[B, groups, C]``
    (``group_size`` ``[B, groups, 1]``): samples of the group, predicted c, truly c, and both."""
    negatives = group_size - positives
    false_pos = predicted - true_pos
    with np.errstate(invalid="ignore", divide="ignore"):
        selection = np.where(group_size > 0, predicted / group_size, np.nan)
        tpr = np.where(positives > 0, true_pos / positives, np.nan)
        fpr = np.where(negatives > 0, false_pos / negatives, np.nan)
    dpd = _range_over_groups(selection)
    eod = np.fmax(_range_over_groups(tpr), _range_over_groups(fpr))
    return dpd, eod


def one_vs_rest_gaps_grouped(y_true: np.ndarray, y_pred: np.ndarray, groups: np.ndarray, *,
                             n_groups: int, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """DPD_c and EOD_c ``[P, classes]`` for each row of ``groups`` ``[P, N]`` (group indices
    0..n_groups-1 of the N test samples): the same predictions scored against P assignments of
    the sensitive attribute (e.g. permutations of it). One ``bincount`` per count."""
    p, n = groups.shape
    c = num_classes
    row = np.arange(p)[:, None] * (n_groups * c)
    cells = p * n_groups * c

    def counts(by: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        keys = row + groups * c + by[None, :]
        if mask is not None:
            keys = keys[:, mask]
        return np.bincount(keys.ravel(), minlength=cells).reshape(p, n_groups, c)

    sizes = np.bincount((np.arange(p)[:, None] * n_groups + groups).ravel(),
                        minlength=p * n_groups).reshape(p, n_groups, 1)
    return gaps_from_counts(sizes, counts(y_pred), counts(y_true),
                            counts(y_pred, y_true == y_pred))


def one_vs_rest_gaps(y_true: np.ndarray, y_pred: np.ndarray, sensitive: np.ndarray, *,
                     num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """DPD_c and EOD_c of every one-vs-rest binarisation ``c`` on the test set itself: two
    arrays ``[num_classes]`` (:func:`one_vs_rest_gaps_weighted` with weights 1)."""
    dpd, eod = one_vs_rest_gaps_weighted(y_true, y_pred, sensitive, np.ones((1, y_true.size)),
                                         num_classes=num_classes)
    return dpd[0], eod[0]


def aggregate_rows(values: np.ndarray, how: MulticlassAggregate) -> np.ndarray:
    """Max or mean over the class axis (-1), ignoring NaN; NaN where a row is all NaN."""
    defined = ~np.isnan(values)
    any_defined = defined.any(axis=-1)
    if how == "max":
        out = np.where(defined, values, -np.inf).max(axis=-1)
    else:
        out = np.where(defined, values, 0.0).sum(axis=-1) / np.maximum(defined.sum(axis=-1), 1)
    return np.where(any_defined, out, np.nan)


def aggregate(values: np.ndarray, how: MulticlassAggregate) -> float:
    """Max or mean of per-class values ``[classes]``, ignoring NaN; NaN when all are NaN."""
    return float(aggregate_rows(values, how))


def aggregate_gaps(dpd_c: np.ndarray, eod_c: np.ndarray, *, num_classes: int,
                   how: MulticlassAggregate) -> tuple[np.ndarray, np.ndarray]:
    """Each row's reported DPD and EOD from its per-class values ``[B, classes]``: class 1 of a
    binary target, else the max or mean over the one-vs-rest classes. Two arrays ``[B]``."""
    if num_classes == 2:
        return dpd_c[:, 1], eod_c[:, 1]
    return aggregate_rows(dpd_c, how), aggregate_rows(eod_c, how)


def run_fairness(y_true: np.ndarray, y_pred: np.ndarray, sensitive: np.ndarray, *,
                 num_classes: int, multiclass_aggregate: MulticlassAggregate
                 ) -> tuple[float, float, np.ndarray | None, np.ndarray | None]:
    """``(dpd, eod, dpd_per_class, eod_per_class)`` of one run (per-class only if multiclass)."""
    dpd_c, eod_c = one_vs_rest_gaps(y_true, y_pred, sensitive, num_classes=num_classes)
    dpd, eod = aggregate_gaps(dpd_c[None], eod_c[None], num_classes=num_classes,
                              how=multiclass_aggregate)
    if num_classes == 2:
        return float(dpd[0]), float(eod[0]), None, None
    return float(dpd[0]), float(eod[0]), dpd_c, eod_c


def run_fairness_weighted(y_true: np.ndarray, y_pred: np.ndarray, sensitive: np.ndarray,
                          weights: np.ndarray, *, num_classes: int,
                          multiclass_aggregate: MulticlassAggregate
                          ) -> tuple[np.ndarray, np.ndarray]:
    """The run's DPD and EOD (as :func:`run_fairness` reports them) under each row of
    ``weights`` ``[B, N]``: two arrays ``[B]``."""
    dpd_c, eod_c = one_vs_rest_gaps_weighted(y_true, y_pred, sensitive, weights,
                                             num_classes=num_classes)
    return aggregate_gaps(dpd_c, eod_c, num_classes=num_classes, how=multiclass_aggregate)
