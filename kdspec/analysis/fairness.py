"""Group fairness of test predictions over a sensitive attribute: DPD and EOD (poster Fig. 4).

For a binary target (positive class 1) and groups ``a`` of the sensitive attribute A:

- selection rate ``S_a = P(Y_hat = 1 | A = a)``; ``DPD = max_a S_a - min_a S_a``;
- ``TPR_a = P(Y_hat = 1 | Y = 1, A = a)``, ``FPR_a = P(Y_hat = 1 | Y = 0, A = a)``;
  ``EOD = max(max_a TPR_a - min_a TPR_a, max_a FPR_a - min_a FPR_a)``.

These are fairlearn's ``demographic_parity_difference`` and ``equalized_odds_difference``
(``method="between_groups"``, ``agg="worst_case"``), computed here with ``bincount`` for every
class at once (the tests check them against fairlearn). One difference, on purpose: a rate that
is undefined for a group (no positive, or no negative, sample in it) leaves that group out of
that gap, where fairlearn would count it as 0; a gap over fewer than 2 groups is NaN.

For a multiclass target each class c is binarised one-vs-rest (``Y = c`` and ``Y_hat = c``),
DPD_c and EOD_c are kept per class, and the run's value is their max or mean (the spec's
``multiclass_aggregate``: mean by default, as the paper's Algorithm 1).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kdspec.analysis.records import GroupKey, StudyRecords
from kdspec.plan import FairnessMetric, MulticlassAggregate

METRIC_LABELS: dict[FairnessMetric, str] = {"dpd": "DPD", "eod": "EOD"}
MSG_NO_ATTRIBUTE = "{run}: predictions have no attribute '{attribute}' (keys attr/<name>)"


def _range_over_defined(rates: np.ndarray) -> np.ndarray:
    """Per column, max - min over the rows that are not NaN; NaN if fewer than 2 rows are."""
    defined = ~np.isnan(rates)
    count = defined.sum(axis=0)
    high = np.where(defined, rates, -np.inf).max(axis=0)
    low = np.where(defined, rates, np.inf).min(axis=0)
    return np.where(count >= 2, high - low, np.nan)


def one_vs_rest_gaps(y_true: np.ndarray, y_pred: np.ndarray, sensitive: np.ndarray, *,
                     num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """DPD_c and EOD_c of every one-vs-rest binarisation ``c``: two arrays ``[num_classes]``.

    With counts over group a (via ``bincount`` of ``a * C + class``): ``S[a, c] = #{A=a,
    Y_hat=c} / #{A=a}``, ``TPR[a, c] = #{A=a, Y=c, Y_hat=c} / #{A=a, Y=c}``,
    ``FPR[a, c] = #{A=a, Y!=c, Y_hat=c} / #{A=a, Y!=c}``.
    """
    _, group = np.unique(sensitive, return_inverse=True)
    n_groups = int(group.max()) + 1 if group.size else 0
    c = num_classes

    def per_group_class(values: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        g, v = (group, values) if mask is None else (group[mask], values[mask])
        return np.bincount(g * c + v, minlength=n_groups * c).reshape(n_groups, c).astype(float)

    group_size = np.bincount(group, minlength=n_groups).astype(float)[:, None]
    predicted = per_group_class(y_pred)
    positives = per_group_class(y_true)
    true_pos = per_group_class(y_pred, y_true == y_pred)
    negatives = group_size - positives
    false_pos = predicted - true_pos
    with np.errstate(invalid="ignore", divide="ignore"):
        selection = np.where(group_size > 0, predicted / group_size, np.nan)
        tpr = np.where(positives > 0, true_pos / positives, np.nan)
        fpr = np.where(negatives > 0, false_pos / negatives, np.nan)
    dpd = _range_over_defined(selection)
    eod = np.fmax(_range_over_defined(tpr), _range_over_defined(fpr))
    return dpd, eod


def aggregate(values: np.ndarray, how: MulticlassAggregate) -> float:
    """Max or mean of per-class values, ignoring NaN; NaN when all are NaN."""
    if np.isnan(values).all():
        return float("nan")
    return float(np.nanmax(values) if how == "max" else np.nanmean(values))


@dataclass(frozen=True)
class RunFairness:
    """DPD and EOD of one run for one sensitive attribute.

    ``dpd``/``eod``: the binary value, or the aggregate of the per-class values for a multiclass
    target; ``dpd_per_class``/``eod_per_class``: ``[num_classes]`` (multiclass only, else None).
    """

    kdspec_id: str
    mlflow_run_id: str
    group: GroupKey
    seed: int
    attribute: str
    dpd: float
    eod: float
    dpd_per_class: np.ndarray | None = None
    eod_per_class: np.ndarray | None = None


def run_fairness(y_true: np.ndarray, y_pred: np.ndarray, sensitive: np.ndarray, *,
                 num_classes: int, multiclass_aggregate: MulticlassAggregate
                 ) -> tuple[float, float, np.ndarray | None, np.ndarray | None]:
    """``(dpd, eod, dpd_per_class, eod_per_class)`` of one run (per-class only if multiclass)."""
    dpd_c, eod_c = one_vs_rest_gaps(y_true, y_pred, sensitive, num_classes=num_classes)
    if num_classes == 2:
        return float(dpd_c[1]), float(eod_c[1]), None, None
    return (aggregate(dpd_c, multiclass_aggregate), aggregate(eod_c, multiclass_aggregate),
            dpd_c, eod_c)


@dataclass(frozen=True)
class FairnessSummary:
    """Mean and sample sd (ddof = 1; NaN for n < 2) over the seeds of one population."""

    attribute: str
    group: GroupKey
    n: int
    dpd_mean: float
    dpd_sd: float
    eod_mean: float
    eod_sd: float

    def mean(self, metric: FairnessMetric) -> float:
        return self.dpd_mean if metric == "dpd" else self.eod_mean

    def sd(self, metric: FairnessMetric) -> float:
        return self.dpd_sd if metric == "dpd" else self.eod_sd


def _nanmean_columns(values: np.ndarray) -> np.ndarray:
    """Column means ignoring NaN (NaN where a column is all NaN), without a warning."""
    defined = ~np.isnan(values)
    total = np.where(defined, values, 0.0).sum(axis=0)
    count = defined.sum(axis=0)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def _mean_sd(values: np.ndarray) -> tuple[float, float]:
    mean = float(values.mean()) if values.size else float("nan")
    sd = float(values.std(ddof=1)) if values.size >= 2 else float("nan")
    return mean, sd


def summarise(runs: tuple[RunFairness, ...], attribute: str, group: GroupKey
              ) -> FairnessSummary:
    """Mean and sd of DPD and EOD over the runs of one population for one attribute."""
    rows = [r for r in runs if r.attribute == attribute and r.group == group]
    dpd_mean, dpd_sd = _mean_sd(np.array([r.dpd for r in rows]))
    eod_mean, eod_sd = _mean_sd(np.array([r.eod for r in rows]))
    return FairnessSummary(attribute=attribute, group=group, n=len(rows), dpd_mean=dpd_mean,
                           dpd_sd=dpd_sd, eod_mean=eod_mean, eod_sd=eod_sd)


@dataclass(frozen=True)
class FairnessResult:
    """Fairness of every run of the study, per sensitive attribute.

    ``summaries`` holds the mean and sd of every (attribute, population) of the study, computed
    once here so that the figure, the table and the finding read the same numbers.
    """

    attributes: tuple[str, ...]
    metrics: tuple[FairnessMetric, ...]  # the ones the spec asks for (both are computed)
    multiclass: bool
    aggregate: MulticlassAggregate | None
    runs: tuple[RunFairness, ...]
    problems: tuple[str, ...]
    summaries: dict[tuple[str, GroupKey], FairnessSummary]

    def per_class_means(self, attribute: str, group: GroupKey
                        ) -> tuple[np.ndarray, np.ndarray] | None:
        """Mean over seeds of the one-vs-rest DPD_c and EOD_c, each ``[num_classes]``
        (None for a binary target or a population without runs)."""
        pairs = [(r.dpd_per_class, r.eod_per_class) for r in self.runs
                 if r.attribute == attribute and r.group == group]
        dpd = [d for d, _ in pairs if d is not None]
        eod = [e for _, e in pairs if e is not None]
        if not dpd or not eod:
            return None
        return _nanmean_columns(np.stack(dpd)), _nanmean_columns(np.stack(eod))

    def summary(self, attribute: str, group: GroupKey) -> FairnessSummary:
        """The summary of one population of the study (teacher, NDS or DS at one of its T)."""
        return self.summaries[(attribute, group)]


def study_fairness(records: StudyRecords) -> FairnessResult | None:
    """DPD and EOD of every run for every declared sensitive attribute; None without fairness."""
    spec = records.study.fairness
    if spec is None or not spec.sensitive:
        return None
    num_classes = records.num_classes
    multiclass = num_classes > 2
    how: MulticlassAggregate = spec.multiclass_aggregate or "max"
    rows: list[RunFairness] = []
    problems: list[str] = []
    for attribute in spec.sensitive:
        for run in records.runs:
            values = run.attributes.get(attribute)
            if values is None:
                problems.append(MSG_NO_ATTRIBUTE.format(
                    run=f"{run.group.label} seed {run.seed} (kdspec id {run.kdspec_id}, "
                        f"MLflow run {run.mlflow_run_id})", attribute=attribute))
                continue
            dpd, eod, dpd_c, eod_c = run_fairness(run.y_true, run.y_pred, values,
                                                  num_classes=num_classes,
                                                  multiclass_aggregate=how)
            rows.append(RunFairness(kdspec_id=run.kdspec_id, mlflow_run_id=run.mlflow_run_id,
                                    group=run.group, seed=run.seed, attribute=attribute,
                                    dpd=dpd, eod=eod, dpd_per_class=dpd_c,
                                    eod_per_class=eod_c))
    runs = tuple(rows)
    groups = (GroupKey("teacher"), GroupKey("student"), *records.distilled_keys)
    summaries = {(a, g): summarise(runs, a, g) for a in spec.sensitive for g in groups}
    return FairnessResult(attributes=spec.sensitive, metrics=spec.metrics, multiclass=multiclass,
                          aggregate=how if multiclass else None, runs=runs,
                          problems=tuple(problems), summaries=summaries)
