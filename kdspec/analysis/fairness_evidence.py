"""What a DPD or EOD value can say about a model: what a perfect classifier scores on the test
set, the sizes behind each rate, and the spread from resampling the test set.

- **Perfect classifier.** DPD and EOD of ``y_pred = y_true`` on this test set. EOD's is 0 (TPR
  1 and FPR 0 in every group), DPD's is the spread of ``P(Y = c | A = a)`` over groups, i.e. how
  unevenly the groups are spread over the classes. It is a point of comparison, not a lower
  bound: a model can score below it (a constant predictor scores DPD 0). What a model with no
  group effect would score is :mod:`kdspec.analysis.fairness_reference`.
- **Counts.** Group sizes and, for a one-vs-rest metric, the positives of each (class, group)
  cell, which TPR_c is estimated from (fairlearn's ``MetricFrame`` by group). A TPR from n
  positives has a sampling sd of ``sqrt(TPR (1 - TPR) / n)``: about 9.5 percentage points at
  n = 10 and TPR 0.5, so a gap of that size between two small cells is noise.
- **Bootstrap.** The test samples are resampled with replacement ``n_boot`` times and the
  run's value (aggregated over classes exactly as reported) recomputed on each resample via
  per-sample multiplicities; the range is the percentile range at ``level``. It shows how much
  one test set moves the estimate; it is **not** a confidence interval of the model's true gap
  (in simulation such "95 %" intervals covered the true gap 13-23 % of the time, 0 % when the
  true gap is 0: the estimator is biased upward, so the range sits above the truth). fairlearn's
  ``MetricFrame(n_boot=...)`` bootstraps each by-group metric and difference on its own, which
  cannot give the interval of an aggregate over classes of ``max(TPR gap, FPR gap)``, so the
  resampling is done here around the very function that computes the reported value.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from fairlearn.metrics import MetricFrame, count
from scipy import stats

from kdspec.analysis.fairness_metrics import run_fairness, run_fairness_weighted
from kdspec.plan import MulticlassAggregate

#: Cells with fewer positives than this get a warning in the report (TPR sd >= ~9 pp).
SMALL_CELL = 30
#: Seed of the bootstrap resamples, so a report is reproducible.
BOOTSTRAP_SEED = 20_250_301
#: Level of the bootstrap and seed-spread intervals.
INTERVAL_LEVEL = 0.95


@dataclass(frozen=True)
class SplitFairness:
    """What the test set alone fixes for one sensitive attribute.

    ``perfect_dpd``/``perfect_eod``: the metric of ``y_pred = y_true`` (aggregated as the study's
    values are); ``group_sizes``: samples per group value; ``cell_positives``: ``[groups,
    classes]`` samples of class c in group a (the positives of one-vs-rest class c).
    """

    attribute: str
    perfect_dpd: float
    perfect_eod: float
    groups: tuple[int, ...]
    group_sizes: tuple[int, ...]
    cell_positives: np.ndarray

    @property
    def smallest_cell(self) -> int:
        return int(self.cell_positives.min()) if self.cell_positives.size else 0

    @property
    def median_cell(self) -> float:
        return float(np.median(self.cell_positives)) if self.cell_positives.size else 0.0

    @property
    def small_cells(self) -> int:
        """Cells with fewer than ``SMALL_CELL`` positives."""
        return int((self.cell_positives < SMALL_CELL).sum())


def _positives(y_true: np.ndarray, y_pred: np.ndarray, *, num_classes: int) -> np.ndarray:
    """Samples of each class (the one-vs-rest positives) ``[classes]``, as a fairlearn metric
    (MetricFrame accepts array-valued metrics for ``by_group``)."""
    return np.bincount(np.asarray(y_true), minlength=num_classes)


def split_fairness(y_true: np.ndarray, sensitive: np.ndarray, *, attribute: str,
                   num_classes: int, aggregate: MulticlassAggregate) -> SplitFairness:
    """The floor and the counts of one attribute on this test set."""
    dpd, eod, _, _ = run_fairness(y_true, y_true, sensitive, num_classes=num_classes,
                                  multiclass_aggregate=aggregate)
    metrics = {"count": count,
               "positives": functools.partial(_positives, num_classes=num_classes)}
    by_group = MetricFrame(metrics=metrics, y_true=y_true, y_pred=y_true,
                           sensitive_features=sensitive).by_group
    positives = np.stack([np.asarray(v) for v in by_group["positives"]]).astype(np.int64)
    return SplitFairness(
        attribute=attribute, perfect_dpd=dpd, perfect_eod=eod,
        groups=tuple(int(g) for g in by_group.index),
        group_sizes=tuple(int(v) for v in by_group["count"]),
        # A binary target's one-vs-rest rates are those of class 1 only.
        cell_positives=positives if num_classes > 2 else positives[:, 1:])


@dataclass(frozen=True)
class Interval:
    """A two-sided interval (NaN ends when it could not be computed)."""

    low: float
    high: float

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2.0


NO_INTERVAL = Interval(float("nan"), float("nan"))


#: Resamples weighted at once (memory: rows x test samples x 8 bytes).
BOOTSTRAP_CHUNK = 100


def bootstrap_fairness(y_true: np.ndarray, y_pred: np.ndarray, sensitive: np.ndarray, *,
                       num_classes: int, aggregate: MulticlassAggregate, n_boot: int,
                       level: float = INTERVAL_LEVEL, seed: int = BOOTSTRAP_SEED
                       ) -> tuple[Interval, Interval]:
    """Percentile bootstrap intervals of one run's DPD and EOD over its test samples.

    Resample b draws N samples with replacement (``numpy.random.default_rng(seed)``); its
    multiplicities weight :func:`kdspec.analysis.fairness_metrics.run_fairness_weighted`.
    Resamples where a value is undefined (NaN) are left out of that value's quantiles.
    """
    n = y_true.size
    if n_boot < 1 or n == 0:
        return NO_INTERVAL, NO_INTERVAL
    rng = np.random.default_rng(seed)
    dpd_parts, eod_parts = [], []
    for start in range(0, n_boot, BOOTSTRAP_CHUNK):
        rows = min(BOOTSTRAP_CHUNK, n_boot - start)
        drawn = rng.integers(0, n, (rows, n)) + (np.arange(rows) * n)[:, None]
        weights = np.bincount(drawn.ravel(), minlength=rows * n).reshape(rows, n)
        dpd, eod = run_fairness_weighted(y_true, y_pred, sensitive, weights,
                                         num_classes=num_classes,
                                         multiclass_aggregate=aggregate)
        dpd_parts.append(dpd)
        eod_parts.append(eod)
    return (_percentile_interval(np.concatenate(dpd_parts), level),
            _percentile_interval(np.concatenate(eod_parts), level))


def _percentile_interval(values: np.ndarray, level: float) -> Interval:
    defined = values[~np.isnan(values)]
    if defined.size == 0:
        return NO_INTERVAL
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(defined, [tail, 1.0 - tail])
    return Interval(float(low), float(high))


def seed_interval(values: np.ndarray, level: float = INTERVAL_LEVEL) -> Interval:
    """The t interval of the mean over seeds: ``mean +- t_{(1+level)/2, n-1} sd / sqrt(n)``."""
    values = values[~np.isnan(values)]
    if values.size < 2:
        return NO_INTERVAL
    mean, sd = float(values.mean()), float(values.std(ddof=1))
    half = float(stats.t.ppf((1.0 + level) / 2.0, values.size - 1)) * sd / np.sqrt(values.size)
    return Interval(mean - half, mean + half)
