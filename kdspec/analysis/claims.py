"""The poster's insights as hypotheses, each tested on the study with a stated test and a verdict.

Verdicts: **supported** (the test rejects its null at ``alpha`` in the direction the paper
claims), **not supported** (the design can answer and the test does not reject), **inconclusive**
(the design cannot answer: too few temperatures or seeds, or the comparison did not run). Every
test is one-sided in the paper's direction and uses the study's ``alpha``:

1. *Distillation changes class accuracies beyond chance.* Per T, the exact binomial test of
   ``#SC_T`` (classes at uncorrected p < alpha, NDS vs DS) against ``Binomial(m_T, alpha)``
   with ``m_T`` testable classes, the count expected if no class were affected; the per-T
   p-values are combined by Bonferroni (``min(1, n_T x min_T p_T)``), valid whatever the
   dependence between temperatures (they share the NDS).
2. *#SC rises and #TC falls with T.* Kendall's tau between T and the count, with an exact (up
   to 7 temperatures) or 9,999-resample permutation test of the pairing; needs 3 temperatures.
3. *Class bias changes where overall accuracy does not.* Per T: Welch's test of overall
   accuracy DS vs NDS is not significant (two-sided) while test 1's per-T binomial test is.
   A non-significant accuracy difference is not evidence of equal accuracy (no equivalence
   test), which the verdict's detail says.
4. *Distillation improves fairness, more so at higher T.* (a) Welch's test that each seed's DS
   value, averaged over T, is below the NDS values; (b) per seed, the least-squares slope of
   the metric against T; the mean slope over seeds, with its t interval, tested below 0
   (one-sample t-test: seeds are the independent units, since a seed's DS share a teacher).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import stats

from kdspec.analysis.fairness import METRIC_LABELS
from kdspec.analysis.records import GroupKey
from kdspec.analysis.significance import ClassTests
from kdspec.analysis.study_analysis import StudyAnalysis
from kdspec.plan import Comparison, FairnessMetric

Verdict = Literal["supported", "not supported", "inconclusive"]
#: Permutation tests enumerate every pairing up to this many temperatures (7! = 5,040).
EXACT_UP_TO = 7
PERMUTATIONS = 9_999
PERMUTATION_SEED = 19_111_405
MIN_TEMPERATURES = 3


@dataclass(frozen=True)
class ClaimTest:
    """One insight of the paper, the test applied, what it found and the verdict."""

    claim: str
    test: str
    result: str
    p_value: float
    verdict: Verdict
    detail: str = ""


def _verdict(p: float, alpha: float) -> Verdict:
    return "supported" if p < alpha else "not supported"


def _ran(analysis: StudyAnalysis, comparison: Comparison) -> list[ClassTests]:
    return [t for t in analysis.significance.tests
            if t.comparison == comparison and not t.skipped]


def binomial_excess(test: ClassTests) -> float:
    """One-sided p of ``#significant >= k`` under ``Binomial(testable, alpha)``."""
    if test.n_testable == 0:
        return math.nan
    return float(stats.binomtest(test.n_significant, test.n_testable, test.alpha,
                                 alternative="greater").pvalue)


def beyond_chance(analysis: StudyAnalysis) -> ClaimTest:
    """Insight 1: significant classes NDS vs DS beyond the count expected by chance."""
    claim = "Distillation changes class-level accuracy beyond chance (NDS vs DS)."
    test = ("Per T, exact binomial test of #SC (uncorrected p < alpha) against Binomial(testable "
            "classes, alpha); Bonferroni over temperatures.")
    tests = [t for t in _ran(analysis, "nds_vs_ds") if t.n_testable]
    if not tests:
        return ClaimTest(claim, test, "no NDS-vs-DS test ran", math.nan, "inconclusive",
                         "needs at least 2 NDS and 2 DS runs at some temperature")
    pvalues = [binomial_excess(t) for t in tests]
    combined = min(1.0, len(tests) * min(pvalues))
    observed = sum(t.n_significant for t in tests)
    expected = sum(t.expected_by_chance for t in tests)
    best = tests[int(np.argmin(pvalues))]
    result = (f"#SC summed over {len(tests)} temperatures: {observed} (expected by chance "
              f"{expected:.2g}); strongest at T = {best.temperature:g}: {best.n_significant} "
              f"of {best.n_testable} (p = {min(pvalues):.3g})")
    return ClaimTest(claim, test, result, combined, _verdict(combined, analysis.significance.alpha))


def _concordance(temperatures: np.ndarray, orderings: np.ndarray) -> np.ndarray:
    """Kendall's S = sum over pairs i < j of sign(dT) * sign(dvalue), for each row of
    ``orderings`` ``[R, n]`` (values in some order against the fixed temperatures)."""
    i, j = np.triu_indices(temperatures.size, k=1)
    return (np.sign(temperatures[j] - temperatures[i])
            * np.sign(orderings[:, j] - orderings[:, i])).sum(axis=1)


def kendall_trend(temperatures: np.ndarray, values: np.ndarray, *,
                  alternative: Literal["greater", "less"]) -> tuple[float, float]:
    """Kendall's tau of ``values`` against ``temperatures`` and its one-sided permutation p.

    Permuting the values leaves the ties on both sides as they are, so tau-b's denominator is
    the same for every pairing and the test can use Kendall's S. Up to ``EXACT_UP_TO`` values
    every pairing is enumerated (the exact p); beyond, ``PERMUTATIONS`` random ones with
    ``p = (1 + #{S* >= S}) / (1 + B)``. (scipy's ``permutation_test`` gives the same p, checked
    by the tests, at a hundred times the cost.)
    """
    observed = float(stats.kendalltau(temperatures, values).statistic)
    if math.isnan(observed):  # every value equal: no trend can be seen
        return math.nan, 1.0
    sign = 1.0 if alternative == "greater" else -1.0
    s_observed = sign * _concordance(temperatures, values[None, :])[0]
    if values.size <= EXACT_UP_TO:
        orderings = values[np.array(list(itertools.permutations(range(values.size))))]
        s_all = sign * _concordance(temperatures, orderings)
        return observed, float(np.mean(s_all >= s_observed))
    rng = np.random.default_rng(PERMUTATION_SEED)
    orderings = rng.permuted(np.tile(values, (PERMUTATIONS, 1)), axis=1)
    s_all = sign * _concordance(temperatures, orderings)
    return observed, float((1 + np.sum(s_all >= s_observed)) / (1 + PERMUTATIONS))


def count_trend(analysis: StudyAnalysis, comparison: Comparison) -> ClaimTest:
    """Insight 2: #SC rises with T (``nds_vs_ds``) or #TC falls with T (``teacher_vs_ds``)."""
    rises = comparison == "nds_vs_ds"
    label = "#SC" if rises else "#TC"
    claim = (f"{label} {'rises' if rises else 'falls'} as T rises "
             f"({'NDS' if rises else 'teacher'} vs DS).")
    test = ("Kendall's tau between T and the count; one-sided permutation test of the pairing "
            f"(exact up to {EXACT_UP_TO} temperatures, else {PERMUTATIONS:,} resamples).")
    tests = _ran(analysis, comparison)
    if len(tests) < MIN_TEMPERATURES:
        return ClaimTest(claim, test, f"{len(tests)} temperature(s) tested", math.nan,
                         "inconclusive", f"a trend needs at least {MIN_TEMPERATURES} "
                         "temperatures with the comparison")
    temperatures = np.array([t.temperature for t in tests])
    counts = np.array([t.n_significant for t in tests], dtype=float)
    tau, p = kendall_trend(temperatures, counts, alternative="greater" if rises else "less")
    shown = ", ".join(f"{t:g}: {int(c)}" for t, c in zip(temperatures, counts, strict=True))
    result = f"tau = {tau:+.2f} over T ({shown})" if not math.isnan(tau) else (
        f"the count is {int(counts[0])} at every T")
    floor = 1.0 / math.factorial(len(tests)) if len(tests) <= EXACT_UP_TO else 0.0
    detail = (f"with {len(tests)} temperatures the smallest attainable p is {floor:.3g}"
              if floor > analysis.significance.alpha / 10 else "")
    return ClaimTest(claim, test, result, p, _verdict(p, analysis.significance.alpha), detail)


def bias_without_accuracy(analysis: StudyAnalysis) -> ClaimTest:
    """Insight 3: per T, accuracy DS vs NDS not significantly different while #SC is beyond
    chance."""
    claim = "Class bias changes even where overall accuracy does not."
    test = ("Per T: Welch's test of overall accuracy DS vs NDS (two-sided) not significant, and "
            "the binomial test of #SC significant.")
    alpha = analysis.significance.alpha
    nds = analysis.accuracy.nds
    found, checked = [], 0
    for sc in _ran(analysis, "nds_vs_ds"):
        ds = next(g for g in analysis.accuracy.distilled if g.key.temperature == sc.temperature)
        if nds.n < 2 or ds.n < 2 or sc.n_testable == 0:
            continue
        checked += 1
        accuracy_p = float(stats.ttest_ind(ds.overall, nds.overall, equal_var=False).pvalue)
        bias_p = binomial_excess(sc)
        if (math.isnan(accuracy_p) or accuracy_p >= alpha) and bias_p < alpha:
            found.append((sc.temperature, accuracy_p, bias_p))
    caveat = ("a non-significant accuracy difference does not show equal accuracy (no "
              "equivalence test)")
    if checked == 0:
        return ClaimTest(claim, test, "no temperature has both tests", math.nan,
                         "inconclusive", "needs at least 2 NDS and 2 DS runs")
    if not found:
        return ClaimTest(claim, test, f"no such temperature among {checked}", math.nan,
                         "not supported", caveat)
    shown = "; ".join(f"T = {t:g} (accuracy p = {a:.2g}, #SC binomial p = {b:.2g})"
                      for t, a, b in found)
    return ClaimTest(claim, test, f"{len(found)} of {checked} temperatures: {shown}",
                     min(b for _, _, b in found), "supported", caveat)


def _per_seed(analysis: StudyAnalysis, attribute: str, metric: FairnessMetric
              ) -> tuple[dict[int, list[tuple[float, float]]], dict[int, float]]:
    """Per seed: the DS (T, value) pairs, and the NDS value."""
    fairness = analysis.fairness
    assert fairness is not None
    ds: dict[int, list[tuple[float, float]]] = {}
    nds: dict[int, float] = {}
    for run in fairness.runs:
        if run.attribute != attribute:
            continue
        value = run.dpd if metric == "dpd" else run.eod
        if math.isnan(value):
            continue
        if run.group.role == "distilled" and run.group.temperature is not None:
            ds.setdefault(run.seed, []).append((run.group.temperature, value))
        elif run.group == GroupKey("student"):
            nds[run.seed] = value
    return ds, nds


def fairer_than_nds(analysis: StudyAnalysis, attribute: str, metric: FairnessMetric
                    ) -> ClaimTest:
    """Insight 4a: the DS (each seed's mean over T) has a lower DPD/EOD than the NDS."""
    label = METRIC_LABELS[metric]
    claim = f"Distillation improves group fairness: DS {label} below NDS over '{attribute}'."
    test = ("Welch's test, one-sided: per seed, the DS value averaged over T, against the NDS "
            "values.")
    ds, nds = _per_seed(analysis, attribute, metric)
    ds_means = np.array([np.mean([v for _, v in pairs]) for pairs in ds.values()])
    nds_values = np.array(list(nds.values()))
    if ds_means.size < 2 or nds_values.size < 2:
        return ClaimTest(claim, test, f"{ds_means.size} DS and {nds_values.size} NDS seeds",
                         math.nan, "inconclusive", "needs at least 2 seeds of each")
    result = stats.ttest_ind(ds_means, nds_values, equal_var=False, alternative="less")
    p = float(result.pvalue)
    shown = (f"DS {100 * ds_means.mean():.2f} % vs NDS {100 * nds_values.mean():.2f} % "
             f"(difference {100 * (ds_means.mean() - nds_values.mean()):+.2f} points, "
             f"t = {float(result.statistic):.2f})")
    return ClaimTest(claim, test, shown, 1.0 if math.isnan(p) else p,
                     _verdict(1.0 if math.isnan(p) else p, analysis.significance.alpha))


def fairness_trend(analysis: StudyAnalysis, attribute: str, metric: FairnessMetric
                   ) -> ClaimTest:
    """Insight 4b: DPD/EOD falls as T rises (mean per-seed slope below 0)."""
    label = METRIC_LABELS[metric]
    claim = f"Higher T makes the DS fairer: {label} over '{attribute}' falls as T rises."
    test = ("Per seed, least-squares slope of the value on T; one-sample t-test of the mean "
            "slope < 0 over seeds, with its t interval.")
    ds, _ = _per_seed(analysis, attribute, metric)
    slopes = []
    for pairs in ds.values():
        ts = np.array([t for t, _ in pairs])
        if np.unique(ts).size >= MIN_TEMPERATURES:
            slopes.append(float(np.polyfit(ts, [v for _, v in pairs], 1)[0]))
    if len(slopes) < 2:
        return ClaimTest(claim, test, f"{len(slopes)} seed(s) with {MIN_TEMPERATURES}+ "
                         "temperatures", math.nan, "inconclusive",
                         f"needs 2 seeds with at least {MIN_TEMPERATURES} temperatures each")
    values = np.array(slopes)
    alpha = analysis.significance.alpha
    result = stats.ttest_1samp(values, 0.0, alternative="less")
    half = float(stats.t.ppf(1 - alpha / 2, values.size - 1) * values.std(ddof=1)
                 / np.sqrt(values.size))
    mean = float(values.mean())
    p = float(result.pvalue)
    p = 1.0 if math.isnan(p) else p
    shown = (f"mean slope {100 * mean:+.3f} points per unit of T, {100 * (1 - alpha):g} % CI "
             f"[{100 * (mean - half):+.3f}, {100 * (mean + half):+.3f}] over {values.size} "
             f"seeds")
    return ClaimTest(claim, test, shown, p, _verdict(p, alpha))


def study_claims(analysis: StudyAnalysis) -> tuple[ClaimTest, ...]:
    """Every insight the study's design touches, in the poster's order."""
    claims = [beyond_chance(analysis), count_trend(analysis, "nds_vs_ds")]
    if "teacher_vs_ds" in analysis.records.study.analysis.comparisons:
        claims.append(count_trend(analysis, "teacher_vs_ds"))
    claims.append(bias_without_accuracy(analysis))
    fairness = analysis.fairness
    if fairness is not None and fairness.runs:
        attribute = fairness.attributes[0]
        for metric in fairness.metrics:
            claims.append(fairer_than_nds(analysis, attribute, metric))
            claims.append(fairness_trend(analysis, attribute, metric))
    return tuple(claims)
