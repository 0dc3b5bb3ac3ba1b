"""The poster's insights as hypotheses, each tested on the study with a stated test, its
assumption, a p-value after family-wise control, its power and the seeds it would need.

Seeds are the unit of every test: a seed's NDS and DS share initial weights and batch order and
its DS learn from its teacher, so models of one seed are compared as pairs
(:mod:`kdspec.analysis.seed_design`) and never treated as independent draws. The claims:

1. *Distillation changes class-level accuracy beyond chance.* The DS's normalised class
   accuracy (mean over T) against the NDS's by two tests combined by Bonferroni
   (:mod:`kdspec.analysis.class_change`): per-class paired t-tests with Holm over the classes,
   and the count of significant classes against every split of the models into two groups.
   The paper's #SC count is shown beside it, with the count chance gives.
2. *#SC rises / #TC falls with T.* Kendall's tau of the count with T, randomization test that
   relabels each seed's DS temperatures (:mod:`kdspec.analysis.count_trend`).
3. *Class bias changes where overall accuracy does not.* Per T, an intersection-union test: the
   DS and NDS accuracies are equivalent within +- ``equivalence_margin`` points (two one-sided
   paired t-tests) *and* some class changed (claim 1's test at that T); ``p_T`` = the larger of
   the two; Bonferroni over the temperatures.
4. *Distillation makes the DS fairer, more so at higher T*, for every sensitive attribute and
   metric, on the **excess** over the no-group-effect reference
   (:mod:`kdspec.analysis.fairness_reference`), so that accuracy changes alone cannot make a
   student look fairer: (a) paired one-sided t-test of the DS excess (mean over T) minus the
   NDS excess; (b) one-sample one-sided t-test of the per-seed least-squares slope of the excess
   on T. A row where the DS lose accuracy or stop predicting classes says "levelling down".

Family-wise control: Holm over every claim of the study that has a p-value; a claim is
**supported** when its Holm-adjusted p is below alpha, **not supported** when the design can
answer and it is not, **inconclusive** when the design cannot answer (too few seeds or
temperatures, or a smallest attainable p above alpha). Power and the minimal detectable effect
(MDE) are stated at the Holm worst case ``alpha / k`` (the level the claim faces when it is the
family's only true one): for the paper's effect where the paper reports one
(:mod:`kdspec.analysis.paper_results`), else the MDE; seeds needed are for the paper's effect,
else for the effect this study observed (a pilot estimate).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
from scipy import stats

from kdspec.analysis.accuracy import AccuracyResult
from kdspec.analysis.class_change import combined_p, paired_class_tests, relabelled_count_test
from kdspec.analysis.count_trend import count_trend_test, simulated_trend_power
from kdspec.analysis.fairness import METRIC_LABELS, FairnessResult
from kdspec.analysis.individual_fairness import IndividualFairnessResult
from kdspec.analysis.paper_results import paper_fairness
from kdspec.analysis.power import (
    equivalence_power,
    equivalence_seeds_needed,
    minimal_detectable_effect,
    power_interval,
    sd_at,
    seeds_needed,
)
from kdspec.analysis.records import GroupKey, StudyRecords
from kdspec.analysis.seed_design import SeedDesign, seed_design
from kdspec.analysis.significance import SignificanceResult, adjust_pvalues
from kdspec.plan import Comparison, FairnessMetric, Role

Verdict = Literal["supported", "not supported", "inconclusive"]
MIN_TEMPERATURES = 3
FAMILY = "Holm over the {k} claims with a p-value (family-wise error at most alpha)"
NO_FAMILY = "no claim could be tested (none has a p-value), so there is nothing to correct"
NO_SEEDS_FOR_COUNTS = (
    "not defined: with more seeds every changed class becomes significant at every T, so the "
    "counts saturate and their trend can weaken; the count trend is a statement about this "
    "design's detection, not an effect size")


@dataclass(frozen=True)
class ClaimTest:
    """One insight of the paper, the test applied, what it found and the verdict."""

    claim: str
    test: str
    assumption: str
    result: str
    p_value: float  # raw; NaN when the design cannot answer
    verdict: Verdict = "inconclusive"
    p_adjusted: float = math.nan  # Holm over the study's claims
    power: str = ""
    seeds_needed: str = ""
    detail: str = ""
    flag: str = ""  # e.g. levelling down
    smallest_p: float = 0.0  # smallest raw p the design can reach
    power_value: float = math.nan  # the power stated, where one is (else an MDE is)
    #: The roles whose runs the test reads (a verdict resting on a flagged run says so).
    roles: tuple[Role, ...] = ("student", "distilled")


@dataclass(frozen=True)
class ClaimsResult:
    """The study's claims after family-wise control."""

    claims: tuple[ClaimTest, ...]
    alpha: float
    family: str

    def count(self, verdict: Verdict) -> int:
        return sum(c.verdict == verdict for c in self.claims)


#: Given the level a claim faces: its power text, seeds-needed text and power (NaN: an MDE
#: is stated instead).
PowerAt = Callable[[float], tuple[str, str, float]]


@dataclass(frozen=True)
class ClaimDraft:
    """A claim's test before family-wise control, and how to state its power at a level."""

    test: ClaimTest
    power_at: PowerAt | None = None



def holm(pvalues: list[float]) -> list[float]:
    """Holm's step-down adjusted p-values (NaN entries stay NaN and are not counted)."""
    return [float(v) for v in adjust_pvalues(np.array(pvalues, dtype=float),
                                             correction="holm")]


def _inconclusive(claim: str, test: str, assumption: str, result: str, why: str) -> ClaimDraft:
    return ClaimDraft(ClaimTest(claim, test, assumption, result, math.nan, detail=why))


def _points(value: float, digits: int = 2) -> str:
    return f"{100 * value:+.{digits}f}"


def _seeds_text(n: int | None, what: str) -> str:
    return f"{n} seeds ({what})" if n is not None else f"more than 200 seeds ({what})"


def _class_change(differences: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """The paired part of claim 1 on ``[n, C]`` per-seed differences: (smallest Holm-adjusted
    p, adjusted p per class, testable mask)."""
    adjusted, testable = paired_class_tests(differences)
    smallest = float(np.nanmin(adjusted)) if testable.any() else math.nan
    return smallest, adjusted, testable


def class_mde(differences: np.ndarray, testable: np.ndarray, level: float) -> float:
    """The MDE of a two-sided paired t at ``level / m`` for a class of median spread (the MDE
    is proportional to the sd: the unit MDE times the median-unbiased sd of that class)."""
    m = int(testable.sum())
    if m == 0:
        return math.nan
    n = differences.shape[0]
    sds = differences[:, testable].std(axis=0, ddof=1)
    unit = minimal_detectable_effect(1.0, n, alpha=level / m, alternative="two-sided")
    return unit * sd_at(float(np.median(sds)), n)


def class_change(design: SeedDesign, significance: SignificanceResult,
                 class_names: tuple[str, ...], *, permutations: int) -> ClaimDraft:
    """Claim 1: the DS's class-level accuracy (mean over T) differs from the NDS's."""
    claim = "Distillation changes class-level accuracy beyond chance (NDS vs DS)."
    test = ("DS normalised class accuracy (mean over T) against the NDS's, two tests combined by "
            "Bonferroni (p = 2 x the smaller): per-class paired t-tests over seeds with Holm over "
            "the classes, and the count of classes at Welch p < alpha against every split of "
            "the 2n models into two groups.")
    assumption = ("Seeds independent; paired: per-seed differences roughly normal, any "
                  "dependence between classes allowed; count: a seed's NDS and DS not "
                  "negatively correlated (the split ignores the pairing, which is then "
                  "conservative).")
    if design.n < 2 or not design.temperatures:
        return _inconclusive(claim, test, assumption,
                             f"{design.n} complete seed(s), {len(design.temperatures)} "
                             "temperature(s) with DS runs",
                             "needs 2 seeds with an NDS and a DS at every T. "
                             + design.left_out_note())
    ds_mean = design.ds_x.mean(axis=1)
    differences = ds_mean - design.reference_x
    p_paired, adjusted, testable = _class_change(differences)
    counted = relabelled_count_test(design.reference_x, ds_mean, alpha=significance.alpha,
                                    permutations=permutations)
    p = combined_p(p_paired, counted.p_value)
    if not testable.any():
        return _inconclusive(claim, test, assumption, "no class varies over seeds",
                             "every class has the same difference in every seed")
    changed = np.flatnonzero(np.nan_to_num(adjusted, nan=1.0) < significance.alpha)
    means = differences.mean(axis=0)
    order = changed[np.argsort(-np.abs(means[changed]))]
    shown = ", ".join(f"{class_names[c]} ({means[c]:+.3f})" for c in order[:5])
    sc = [t for t in significance.tests if t.comparison == "nds_vs_ds" and not t.skipped]
    observed = sum(int((np.nan_to_num(t.pvalue, nan=1.0) < t.alpha).sum()) for t in sc)
    chance = sum(t.expected_by_chance for t in sc)
    result = (f"paired: {len(changed)} of {int(testable.sum())} classes changed after Holm"
              + (f" ({shown})" if len(changed) else "") + f", p {p_paired:.3g}; count: "
              f"{counted.count} classes at p < {significance.alpha:g}, p {counted.p_value:.3g} "
              f"({counted.splits:,} {'splits, exact' if counted.exact else 'random splits'}); "
              f"over {design.n} seeds. The paper's count, #SC (Welch per T, uncorrected), sums "
              f"to {observed} over {len(sc)} temperatures; chance alone gives {chance:.2g} on "
              "average (a sum of dependent counts: no test).")
    largest = int(np.nanargmax(np.where(testable, np.abs(means), np.nan)))

    def power_at(level: float) -> tuple[str, str, float]:
        mde = class_mde(differences, testable, level / 2)
        sd = sd_at(float(differences[:, largest].std(ddof=1)), design.n)
        needed = seeds_needed(float(means[largest]), sd,
                              alpha=level / 2 / int(testable.sum()),
                              alternative="two-sided")
        return (f"paired part: MDE {mde:.3f} of normalised class accuracy (median over "
                f"classes, 80 % power, level {level / 2:.2g} / {int(testable.sum())} classes)",
                _seeds_text(needed, f"for the largest observed change, "
                                    f"{class_names[largest]} {means[largest]:+.3f}"), math.nan)

    return ClaimDraft(ClaimTest(claim, test, assumption, result, p,
                            detail=design.left_out_note()), power_at)


def count_trend(design: SeedDesign, comparison: Comparison, *, alpha: float,
                permutations: int) -> ClaimDraft:
    """Claim 2: #SC rises (``nds_vs_ds``) or #TC falls (``teacher_vs_ds``) with T."""
    rises = comparison == "nds_vs_ds"
    label = "#SC" if rises else "#TC"
    claim = (f"{label} {'rises' if rises else 'falls'} as T rises "
             f"({'NDS' if rises else 'teacher'} vs DS).")
    test = (f"Kendall's tau between T and {label} (classes at Welch p < {alpha:g}, "
            "uncorrected, on the complete seeds); one-sided randomization test relabelling "
            "each seed's DS temperatures.")
    assumption = ("With no effect of T, a seed's DS at different T are exchangeable (they "
                  "share its initial weights, batches and teacher); dependence between classes "
                  "and between a seed's models is kept.")
    k = len(design.temperatures)
    if k < MIN_TEMPERATURES or design.n < 2:
        return _inconclusive(claim, test, assumption,
                             f"{k} temperature(s), {design.n} complete seed(s)",
                             f"a trend needs {MIN_TEMPERATURES} temperatures and 2 seeds with "
                             f"a {design.reference} and a DS at every T. "
                             + design.left_out_note())
    temperatures = np.array(design.temperatures)
    direction: Literal["greater", "less"] = "greater" if rises else "less"
    trend = count_trend_test(design.reference_x, design.ds_x, temperatures, alpha=alpha,
                             alternative=direction, permutations=permutations)
    shown = ", ".join(f"{t:g}: {int(c)}" for t, c in zip(temperatures, trend.counts,
                                                          strict=True))
    result = (f"tau = {trend.tau:+.2f} ({shown}; {trend.relabellings:,} "
              f"{'relabellings, exact' if trend.exact else 'random relabellings'})"
              if not math.isnan(trend.tau) else
              f"{label} is {int(trend.counts[0])} at every T")

    def power_at(level: float) -> tuple[str, str, float]:
        power = simulated_trend_power(design.reference_x, design.ds_x, temperatures,
                                      seeds=design.n, alpha=alpha, level=level,
                                      alternative=direction)
        power_text = ("not simulated (too many classes for the power budget)"
                      if math.isnan(power) else
                      f"{power:.2f} for the trend this study observed (simulated, plug-in: "
                      f"optimistic with few seeds; level {level:.2g})")
        return power_text, NO_SEEDS_FOR_COUNTS, power

    return ClaimDraft(ClaimTest(claim, test, assumption, result, trend.p_value,
                            detail=design.left_out_note(), smallest_p=trend.smallest_p,
                            roles=("student" if rises else "teacher", "distilled")),
                  power_at)


def _tost(differences: np.ndarray, margin: float) -> float:
    """p of two one-sided t-tests that the mean of ``differences`` lies within +-margin."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        lower = stats.ttest_1samp(differences, -margin, alternative="greater").pvalue
        upper = stats.ttest_1samp(differences, margin, alternative="less").pvalue
    p = float(max(lower, upper))
    return 1.0 if math.isnan(p) else p


def bias_without_accuracy(design: SeedDesign, *, alpha: float, margin_points: float,
                          class_names: tuple[str, ...]) -> ClaimDraft:
    """Claim 3: at some T the DS are as accurate as the NDS (equivalence) yet classes change."""
    claim = "Class bias changes even where overall accuracy does not."
    margin = margin_points / 100.0
    test = (f"Per T: two one-sided paired t-tests that DS and NDS accuracy differ by less than "
            f"+-{margin_points:g} points, and claim 1's class test at that T; p_T = the larger "
            f"(intersection-union); Bonferroni over temperatures.")
    assumption = ("Seeds independent, paired accuracy differences roughly normal; the "
                  "equivalence margin is the spec's analysis equivalence_margin.")
    k = len(design.temperatures)
    if design.n < 2 or k == 0:
        return _inconclusive(claim, test, assumption, f"{design.n} complete seed(s)",
                             "needs 2 seeds with an NDS and a DS at a T. "
                             + design.left_out_note())
    rows = []
    for j, t in enumerate(design.temperatures):
        accuracy = design.ds_acc[:, j] - design.reference_acc
        p_equal = _tost(accuracy, margin)
        p_class, adjusted, testable = _class_change(design.ds_x[:, j] - design.reference_x)
        p_class = 1.0 if math.isnan(p_class) else p_class
        rows.append((t, float(accuracy.mean()), p_equal, p_class,
                     int((np.nan_to_num(adjusted, nan=1.0) < alpha).sum()), testable))
    p = min(1.0, k * min(max(r[2], r[3]) for r in rows))
    best = min(rows, key=lambda r: max(r[2], r[3]))
    result = (f"best T = {best[0]:g}: accuracy difference {_points(best[1])} points "
              f"(equivalence p {best[2]:.2g}), {best[4]} classes changed (p {best[3]:.2g}); "
              f"{sum(max(r[2], r[3]) < alpha for r in rows)} of {k} temperatures pass both "
              "before the correction over T")
    acc_sd = sd_at(float(np.median([np.std(design.ds_acc[:, j] - design.reference_acc,
                                           ddof=1) for j in range(k)])), design.n)
    per_t = design.ds_x[:, list(design.temperatures).index(best[0])] - design.reference_x

    def power_at(level: float) -> tuple[str, str, float]:
        per_level = level / k
        equal = equivalence_power(0.0, acc_sd, design.n, margin=margin, alpha=per_level)
        testable = best[5]
        mde = class_mde(per_t, testable, per_level) if testable.any() else math.nan
        needed = equivalence_seeds_needed(0.0, acc_sd, margin=margin, alpha=per_level)
        return (f"equivalence {equal:.2f} at a true difference of 0 (seed sd "
                f"{100 * acc_sd:.2f} points); class MDE {mde:.3f} at T = {best[0]:g} "
                f"(level {level:.2g} / {k} temperatures)",
                _seeds_text(needed, "for the equivalence part at a true difference of 0"),
                equal)

    return ClaimDraft(ClaimTest(claim, test, assumption, result, p,
                            detail=design.left_out_note()), power_at)


@dataclass(frozen=True)
class FairnessSeeds:
    """Per complete seed: NDS excess, DS excess per T, and the levelling-down evidence."""

    seeds: tuple[int, ...]
    temperatures: tuple[float, ...]
    nds: np.ndarray  # [n]
    ds: np.ndarray  # [n, K]
    left_out: tuple[str, ...]


def fairness_seeds(fairness: FairnessResult, records: StudyRecords, attribute: str,
                    metric: FairnessMetric) -> FairnessSeeds:
    temperatures = tuple(t for t in records.study.temperatures
                         if any(r.group == GroupKey("distilled", t) for r in fairness.runs))
    table: dict[tuple[int, GroupKey], float] = {
        (r.seed, r.group): r.excess(metric) for r in fairness.runs if r.attribute == attribute}
    complete, left_out = [], []
    for seed in sorted({s for s, _ in table}):
        keys = [GroupKey("student")] + [GroupKey("distilled", t) for t in temperatures]
        missing = [k.label for k in keys if math.isnan(table.get((seed, k), math.nan))]
        if missing:
            left_out.append(f"seed {seed}: no {', '.join(missing)}")
        else:
            complete.append(seed)
    nds = np.array([table[(s, GroupKey("student"))] for s in complete])
    ds = np.array([[table[(s, GroupKey("distilled", t))] for t in temperatures]
                   for s in complete]).reshape(len(complete), len(temperatures))
    return FairnessSeeds(tuple(complete), temperatures, nds, ds, tuple(left_out))


def levelling_down(records: StudyRecords, accuracy: AccuracyResult, margin: float) -> str:
    """'' or a warning that the DS pay for fairness with accuracy or with predicted classes."""
    nds, present = accuracy.nds, [g for g in accuracy.distilled if g.n]
    if not nds.n or not present:
        return ""
    ds_mean = float(np.mean([g.mean for g in present]))
    notes = []
    if ds_mean < nds.mean - margin:
        notes.append(f"DS accuracy {_points(ds_mean - nds.mean, 1)} points vs NDS "
                     f"(mean over T)")

    def never_predicted(role: GroupKey) -> int:
        counts = [int(np.sum((np.bincount(r.y_true, minlength=records.num_classes) > 0)
                             & (np.bincount(r.y_pred, minlength=records.num_classes) == 0)))
                  for r in records.runs if r.group == role]
        return max(counts, default=0)

    ds_never = max(never_predicted(g.key) for g in present)
    nds_never = never_predicted(GroupKey("student"))
    if ds_never > nds_never:
        notes.append(f"a DS run never predicts {ds_never} of the classes (NDS runs: at most "
                     f"{nds_never})")
    return ("levelling down: " + "; ".join(notes)
            + ": a lower gap here can come from worse predictions for every group") if notes \
        else ""


def _paper_effect(records: StudyRecords, attribute: str, metric: FairnessMetric,
                  temperatures: tuple[float, ...], kind: Literal["difference", "slope"]
                  ) -> float | None:
    study = records.study
    column = paper_fairness(study.dataset.name, study.teacher.arch, study.student.arch,
                            attribute)
    if column is None:
        return None
    if kind == "slope":
        slope = column.slope(metric, temperatures)
        return None if slope is None else slope / 100.0
    mean = column.ds_mean(metric, temperatures)
    return None if mean is None else (mean - column.nds[metric]) / 100.0


def _one_sided_power(values: np.ndarray, paper: float | None, level: float, unit: str,
                     scale: float = 100.0) -> tuple[str, str, float]:
    """Power text for a one-sided (less) t-test of per-seed ``values``: from the
    median-unbiased sd (:func:`kdspec.analysis.power.sd_at`), with the 80 % interval the sd's
    uncertainty gives."""
    n, estimate = values.size, float(values.std(ddof=1))
    sd = sd_at(estimate, n)
    if paper is not None:
        low, power, high = power_interval(paper, estimate, n, alpha=level, alternative="less")
        needed = seeds_needed(paper, sd, alpha=level, alternative="less")
        return (f"{power:.2f} (80 % interval {low:.2f}-{high:.2f}) for the paper's effect "
                f"({scale * paper:+.3g} {unit}; seed sd {scale * sd:.3g}, level {level:.2g})",
                _seeds_text(needed, "for the paper's effect"), power)
    mde = minimal_detectable_effect(sd, n, alpha=level, alternative="less")
    observed = float(values.mean())
    needed = seeds_needed(observed, sd, alpha=level, alternative="less") \
        if observed < 0 else None
    return (f"MDE {scale * mde:.3g} {unit} at 80 % power (seed sd {scale * sd:.3g}, level "
            f"{level:.2g}; the paper reports no effect for this design)",
            _seeds_text(needed, f"for the observed {scale * observed:+.3g} {unit}")
            if observed < 0 else "n/a (the observed effect is not in the claimed direction)",
            math.nan)


FAIRNESS_ASSUMPTION = (
    "Seeds independent, per-seed values roughly normal. The excess is the value minus what a "
    "model with no group effect scores at the same predictions (attribute permuted within each "
    "true class), so a change of accuracy alone does not move it.")


def fairer_than_nds(seeds: FairnessSeeds, attribute: str, metric: FairnessMetric, *,
                    records: StudyRecords, flag: str) -> ClaimDraft:
    """Claim 4a: the DS (mean over T) has a lower excess DPD/EOD than the NDS of its seed."""
    label = METRIC_LABELS[metric]
    claim = f"Distillation improves group fairness: DS {label} below NDS over '{attribute}'."
    test = (f"Per seed, the DS's excess {label} (mean over T) minus the NDS's; one-sided "
            "paired t-test (difference < 0) with its one-sided upper bound.")
    if len(seeds.seeds) < 2 or not seeds.temperatures:
        return _inconclusive(claim, test, FAIRNESS_ASSUMPTION,
                             f"{len(seeds.seeds)} complete seed(s), "
                             f"{len(seeds.temperatures)} temperature(s) with DS runs",
                             "needs 2 seeds with an NDS and a DS at every T. "
                             + "; ".join(seeds.left_out))
    differences = seeds.ds.mean(axis=1) - seeds.nds
    p = float(stats.ttest_1samp(differences, 0.0, alternative="less").pvalue)
    p = 1.0 if math.isnan(p) else p
    upper = _upper_bound(differences, records.study.analysis.alpha)
    result = (f"excess {label}: DS {_points(float(seeds.ds.mean()))} vs NDS "
              f"{_points(float(seeds.nds.mean()))} points; paired difference "
              f"{_points(float(differences.mean()))} points, one-sided "
              f"{100 * (1 - records.study.analysis.alpha):g} % upper bound {_points(upper)} "
              f"(over {len(seeds.seeds)} seeds)")
    paper = _paper_effect(records, attribute, metric, seeds.temperatures, "difference")
    return ClaimDraft(ClaimTest(claim, test, FAIRNESS_ASSUMPTION, result, p, flag=flag,
                            detail="; ".join(seeds.left_out)),
                  lambda level: _one_sided_power(differences, paper, level, "points"))


def _upper_bound(values: np.ndarray, alpha: float) -> float:
    """One-sided ``1 - alpha`` upper confidence bound of the mean of ``values``."""
    n = values.size
    return float(values.mean() + stats.t.ppf(1 - alpha, n - 1) * values.std(ddof=1)
                 / math.sqrt(n))


def _slopes(values: np.ndarray, temperatures: tuple[float, ...]) -> np.ndarray:
    """Per row, the least-squares slope of ``values[row]`` on ``temperatures``."""
    ts = np.array(temperatures)
    centred = ts - ts.mean()
    return np.asarray((values - values.mean(axis=1, keepdims=True)) @ centred
                      / (centred @ centred))


def fairness_trend(seeds: FairnessSeeds, attribute: str, metric: FairnessMetric, *,
                   records: StudyRecords, flag: str) -> ClaimDraft:
    """Claim 4b: the excess DPD/EOD falls as T rises (mean per-seed slope below 0)."""
    label = METRIC_LABELS[metric]
    claim = f"Higher T makes the DS fairer: {label} over '{attribute}' falls as T rises."
    test = (f"Per seed, least-squares slope of the DS's excess {label} on T; one-sample "
            "one-sided t-test of the mean slope < 0 with its one-sided upper bound.")
    if len(seeds.temperatures) < MIN_TEMPERATURES or len(seeds.seeds) < 2:
        return _inconclusive(claim, test, FAIRNESS_ASSUMPTION,
                             f"{len(seeds.temperatures)} temperature(s), {len(seeds.seeds)} "
                             "complete seed(s)",
                             f"needs 2 seeds with a DS at {MIN_TEMPERATURES}+ temperatures. "
                             + "; ".join(seeds.left_out))
    slopes = _slopes(seeds.ds, seeds.temperatures)
    p = float(stats.ttest_1samp(slopes, 0.0, alternative="less").pvalue)
    p = 1.0 if math.isnan(p) else p
    alpha = records.study.analysis.alpha
    result = (f"mean slope {100 * float(slopes.mean()):+.3f} points per unit of T, one-sided "
              f"{100 * (1 - alpha):g} % upper bound {100 * _upper_bound(slopes, alpha):+.3f} "
              f"(over {len(seeds.seeds)} seeds)")
    paper = _paper_effect(records, attribute, metric, seeds.temperatures, "slope")
    return ClaimDraft(ClaimTest(claim, test, FAIRNESS_ASSUMPTION, result, p, flag=flag,
                            detail="; ".join(seeds.left_out)),
                  lambda level: _one_sided_power(slopes, paper, level, "points per unit T"))


INDIVIDUAL_ASSUMPTION = (
    "Seeds independent, per-seed slopes roughly normal; the pairs and their input distances are "
    "the same for every run, so a slope is the model's change alone. I(f) also falls when "
    "outputs only get flatter: the flag says when the DS's confidence falls with T.")


def individual_fairness_trend(result: IndividualFairnessResult, records: StudyRecords
                              ) -> ClaimDraft:
    """The paper's Table 4: individual fairness improves (I falls) as T rises."""
    claim = "Higher T makes the DS individually fairer: I(f) falls as T rises."
    test = ("Per seed, least-squares slope of the DS's I(f) on T; one-sided one-sample t-test "
            "of the mean slope < 0 with its one-sided upper bound.")
    temperatures = tuple(t for t in records.study.temperatures
                         if result.per_seed(GroupKey("distilled", t)))
    by_t = [result.per_seed(GroupKey("distilled", t)) for t in temperatures]
    seeds = sorted(set.intersection(*(set(d) for d in by_t))) if by_t else []
    left = sorted({s for d in by_t for s in d} - set(seeds))
    detail = f"seeds without a DS at every T, left out: {left}" if left else ""
    if len(temperatures) < MIN_TEMPERATURES or len(seeds) < 2:
        return _inconclusive(claim, test, INDIVIDUAL_ASSUMPTION,
                             f"{len(temperatures)} temperature(s), {len(seeds)} complete "
                             "seed(s)", f"needs 2 seeds with a DS at {MIN_TEMPERATURES}+ "
                             "temperatures")
    values = np.array([[d[s].score.value for d in by_t] for s in seeds])
    confidence = np.array([[d[s].confidence for d in by_t] for s in seeds])
    slopes = _slopes(values, temperatures)
    p = float(stats.ttest_1samp(slopes, 0.0, alternative="less").pvalue)
    p = 1.0 if math.isnan(p) else p
    alpha = records.study.analysis.alpha
    result_text = (f"mean slope {float(slopes.mean()):+.3g} per unit of T (DS I(f) "
                   f"{float(values[:, 0].mean()):.4g} at T = {temperatures[0]:g} to "
                   f"{float(values[:, -1].mean()):.4g} at T = {temperatures[-1]:g}), one-sided "
                   f"{100 * (1 - alpha):g} % upper bound {_upper_bound(slopes, alpha):+.3g} "
                   f"(over {len(seeds)} seeds)")
    flag = ""
    if float(_slopes(confidence, temperatures).mean()) < 0:
        flag = (f"flatter outputs: the DS's mean top-class probability falls from "
                f"{float(confidence[:, 0].mean()):.3f} at T = {temperatures[0]:g} to "
                f"{float(confidence[:, -1].mean()):.3f} at T = {temperatures[-1]:g}; a lower "
                "I(f) can come from less confident outputs rather than similar inputs treated "
                "more alike")
    paper = result.paper.slope(temperatures) if result.paper else None
    return ClaimDraft(ClaimTest(claim, test, INDIVIDUAL_ASSUMPTION, result_text, p, flag=flag,
                            detail=detail),
                  lambda level: _one_sided_power(slopes, paper, level, "of I(f) per unit T",
                                                 scale=1.0))


def finish_claims(drafts: list[ClaimDraft], alpha: float, with_power: bool) -> ClaimsResult:
    """Holm over the claims with a p-value; verdicts; power at the Holm worst-case level."""
    adjusted = holm([d.test.p_value for d in drafts])
    k = sum(not math.isnan(d.test.p_value) for d in drafts)
    level = alpha / max(k, 1)
    out = []
    for draft, p_adj in zip(drafts, adjusted, strict=True):
        test = draft.test
        if math.isnan(test.p_value):
            verdict: Verdict = "inconclusive"
        elif test.smallest_p >= alpha:
            verdict = "inconclusive"
            test = replace(test, detail=(f"the smallest p this design can reach is "
                                         f"{test.smallest_p:.3g} >= alpha "
                                         + test.detail).strip())
        else:
            verdict = "supported" if p_adj < alpha else "not supported"
        power, needed, value = (draft.power_at(level) if with_power and draft.power_at and k
                                else ("n/a", "n/a", math.nan))
        out.append(replace(test, verdict=verdict, p_adjusted=p_adj, power=power,
                           seeds_needed=needed, power_value=value))
    return ClaimsResult(tuple(out), alpha, FAMILY.format(k=k) if k else NO_FAMILY)


def claim_drafts(records: StudyRecords, accuracy: AccuracyResult,
                 significance: SignificanceResult, fairness: FairnessResult | None, *,
                 individual: IndividualFairnessResult | None = None) -> list[ClaimDraft]:
    """Every insight the study's design touches, in the poster's order, before family-wise
    control (a study's own family, or a larger one such as a methods block's)."""
    options = records.study.analysis
    names = records.class_names
    nds = seed_design(accuracy, reference=accuracy.nds, label="NDS",
                      normalization=options.normalization)
    drafts = [class_change(nds, significance, names, permutations=options.permutations),
              count_trend(nds, "nds_vs_ds", alpha=options.alpha,
                          permutations=options.permutations)]
    if "teacher_vs_ds" in options.comparisons:
        teacher = seed_design(accuracy, reference=accuracy.teacher, label="teacher",
                              normalization=options.normalization)
        drafts.append(count_trend(teacher, "teacher_vs_ds", alpha=options.alpha,
                                  permutations=options.permutations))
    drafts.append(bias_without_accuracy(nds, alpha=options.alpha,
                                        margin_points=options.equivalence_margin,
                                        class_names=names))
    if fairness is not None and fairness.runs:
        flag = levelling_down(records, accuracy, options.equivalence_margin / 100.0)
        for attribute in fairness.attributes:
            for metric in fairness.metrics:
                seeds = fairness_seeds(fairness, records, attribute, metric)
                drafts.append(fairer_than_nds(seeds, attribute, metric, records=records,
                                              flag=flag))
                drafts.append(fairness_trend(seeds, attribute, metric, records=records,
                                             flag=flag))
    if individual is not None:
        drafts.append(individual_fairness_trend(individual, records))
    return drafts


def study_claims(records: StudyRecords, accuracy: AccuracyResult,
                 significance: SignificanceResult, fairness: FairnessResult | None, *,
                 individual: IndividualFairnessResult | None = None,
                 power: bool = True) -> ClaimsResult:
    """Every insight the study's design touches, in the poster's order, after Holm
    (``power=False``: no power statements, for simulations that only need the verdicts)."""
    drafts = claim_drafts(records, accuracy, significance, fairness, individual=individual)
    return finish_claims(drafts, records.study.analysis.alpha, power)
