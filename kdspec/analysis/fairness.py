"""Group fairness of a study (poster Fig. 4): DPD and EOD of every run over each sensitive
attribute, with the evidence behind them, summarised per population of seeds.

The metric itself is :mod:`kdspec.analysis.fairness_metrics` (fairlearn's DPD and EOD, binary
or one-vs-rest per class, aggregated by the spec's ``multiclass_aggregate``: mean by default,
as the paper's Algorithm 1); the perfect-classifier value, counts and bootstrap spread are
:mod:`kdspec.analysis.fairness_evidence`; the no-group-effect reference and each run's excess
over it are :mod:`kdspec.analysis.fairness_reference`. Each population (teacher, NDS, DS at one
T) gets, per metric, the mean and sd over seeds of the value and of its excess, the t interval
of each mean, and its runs' bootstrap half-width.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kdspec.analysis.fairness_evidence import (
    NO_INTERVAL,
    Interval,
    SplitFairness,
    bootstrap_fairness,
    seed_interval,
    split_fairness,
)
from kdspec.analysis.fairness_metrics import run_fairness
from kdspec.analysis.fairness_reference import (
    NO_REFERENCE,
    REFERENCE_PERMUTATIONS,
    FairnessReference,
    fairness_reference,
)
from kdspec.analysis.records import GroupKey, StudyRecords
from kdspec.plan import FairnessMetric, MulticlassAggregate

METRIC_LABELS: dict[FairnessMetric, str] = {"dpd": "DPD", "eod": "EOD"}
MSG_NO_ATTRIBUTE = "{run}: predictions have no attribute '{attribute}' (keys attr/<name>)"


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
    #: Percentile bootstrap ranges over the run's test samples (NaN without a bootstrap): the
    #: spread of the estimate under resampling, not a confidence interval of the true gap.
    dpd_ci: Interval = NO_INTERVAL
    eod_ci: Interval = NO_INTERVAL
    #: The value a model with no group effect would score here, and the excess over it.
    reference: FairnessReference = NO_REFERENCE

    def interval(self, metric: FairnessMetric) -> Interval:
        return self.dpd_ci if metric == "dpd" else self.eod_ci

    def value(self, metric: FairnessMetric) -> float:
        return self.dpd if metric == "dpd" else self.eod

    def excess(self, metric: FairnessMetric) -> float:
        """Observed minus the no-group-effect reference (NaN without a reference)."""
        r = self.reference
        return r.dpd_excess if metric == "dpd" else r.eod_excess


@dataclass(frozen=True)
class MetricSummary:
    """One metric over the seeds of one population: mean and sample sd (ddof = 1; NaN for
    n < 2) of the value and of its excess over the no-group-effect reference, the t interval of
    each mean, and the mean half-width of the runs' test-set bootstrap ranges (how much of the
    spread one test set alone would give)."""

    mean: float
    sd: float
    seed_ci: Interval
    excess_mean: float
    excess_sd: float
    excess_ci: Interval
    boot_half_width: float


@dataclass(frozen=True)
class FairnessSummary:
    """DPD and EOD of one population (teacher, NDS or DS at one T) for one attribute."""

    attribute: str
    group: GroupKey
    n: int
    metrics: dict[FairnessMetric, MetricSummary]

    def mean(self, metric: FairnessMetric) -> float:
        return self.metrics[metric].mean

    def sd(self, metric: FairnessMetric) -> float:
        return self.metrics[metric].sd

    def seed_ci(self, metric: FairnessMetric) -> Interval:
        return self.metrics[metric].seed_ci

    def boot_half_width(self, metric: FairnessMetric) -> float:
        return self.metrics[metric].boot_half_width

    def excess(self, metric: FairnessMetric) -> MetricSummary:
        return self.metrics[metric]


def _nanmean_columns(values: np.ndarray) -> np.ndarray:
    """Column means ignoring NaN (NaN where a column is all NaN), without a warning."""
    defined = ~np.isnan(values)
    total = np.where(defined, values, 0.0).sum(axis=0)
    count = defined.sum(axis=0)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def _mean_sd(values: np.ndarray) -> tuple[float, float]:
    values = values[~np.isnan(values)]
    mean = float(values.mean()) if values.size else float("nan")
    sd = float(values.std(ddof=1)) if values.size >= 2 else float("nan")
    return mean, sd


def summarise(runs: tuple[RunFairness, ...], attribute: str, group: GroupKey
              ) -> FairnessSummary:
    """Mean and sd of DPD and EOD (and their excesses) over the runs of one population."""
    rows = [r for r in runs if r.attribute == attribute and r.group == group]

    def metric(m: FairnessMetric) -> MetricSummary:
        values = np.array([r.value(m) for r in rows])
        excess = np.array([r.excess(m) for r in rows])
        widths = [r.interval(m).half_width for r in rows
                  if not np.isnan(r.interval(m).half_width)]
        mean, sd = _mean_sd(values)
        excess_mean, excess_sd = _mean_sd(excess)
        return MetricSummary(mean=mean, sd=sd, seed_ci=seed_interval(values),
                             excess_mean=excess_mean, excess_sd=excess_sd,
                             excess_ci=seed_interval(excess),
                             boot_half_width=float(np.mean(widths)) if widths else float("nan"))

    return FairnessSummary(attribute=attribute, group=group, n=len(rows),
                           metrics={"dpd": metric("dpd"), "eod": metric("eod")})


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
    #: Per attribute: the floor and counts of the test set (the same for every run).
    splits: dict[str, SplitFairness]
    n_boot: int

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
    n_boot = records.study.analysis.bootstrap
    rows: list[RunFairness] = []
    problems: list[str] = []
    splits: dict[str, SplitFairness] = {}
    for attribute in spec.sensitive:
        for run in records.runs:
            values = run.attributes.get(attribute)
            if values is None:
                problems.append(MSG_NO_ATTRIBUTE.format(
                    run=f"{run.group.label} seed {run.seed} (kdspec id {run.kdspec_id}, "
                        f"MLflow run {run.mlflow_run_id})", attribute=attribute))
                continue
            if attribute not in splits:
                splits[attribute] = split_fairness(run.y_true, values, attribute=attribute,
                                                   num_classes=num_classes, aggregate=how)
            dpd, eod, dpd_c, eod_c = run_fairness(run.y_true, run.y_pred, values,
                                                  num_classes=num_classes,
                                                  multiclass_aggregate=how)
            dpd_ci, eod_ci = bootstrap_fairness(run.y_true, run.y_pred, values,
                                                num_classes=num_classes, aggregate=how,
                                                n_boot=n_boot)
            reference = fairness_reference(run.y_true, run.y_pred, values, observed=(dpd, eod),
                                           num_classes=num_classes, aggregate=how,
                                           permutations=REFERENCE_PERMUTATIONS)
            rows.append(RunFairness(kdspec_id=run.kdspec_id, mlflow_run_id=run.mlflow_run_id,
                                    group=run.group, seed=run.seed, attribute=attribute,
                                    dpd=dpd, eod=eod, dpd_per_class=dpd_c,
                                    eod_per_class=eod_c, dpd_ci=dpd_ci, eod_ci=eod_ci,
                                    reference=reference))
    runs = tuple(rows)
    groups = (GroupKey("teacher"), GroupKey("student"), *records.distilled_keys)
    summaries = {(a, g): summarise(runs, a, g) for a in spec.sensitive for g in groups}
    return FairnessResult(attributes=spec.sensitive, metrics=spec.metrics, multiclass=multiclass,
                          aggregate=how if multiclass else None, runs=runs,
                          problems=tuple(problems), summaries=summaries, splits=splits,
                          n_boot=n_boot)
