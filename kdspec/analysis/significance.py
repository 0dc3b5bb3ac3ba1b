"""Class-wise significance: Welch's t-test of normalised class accuracy, per class and temperature.

For each class c and model m (one per seed), the normalised class accuracy is

- ``ratio`` (the poster's):           ``x_c(m) = acc_c(m) / acc(m)``
- ``difference`` (Hooker et al.'s):   ``x_c(m) = acc_c(m) - acc(m)``

For a reference population R (NDS or teacher seeds) and the distilled students D at one
temperature, Welch's test per class is ``scipy.stats.ttest_ind(x_D, x_R, equal_var=False)``:
``t = (mean_D - mean_R) / se`` with ``se = sqrt(s_D^2 / n_D + s_R^2 / n_R)``. #SC counts the
classes significant for NDS vs DS, #TC for teacher vs DS. The family corrected for multiple
comparisons is the testable classes of one (comparison, temperature).

Zero variance: when every seed of both groups has the same value for a class, Welch's t is 0/0
(scipy returns NaN). Such a class (and a class with no test sample, whose accuracy is NaN) is
*not testable*: p-value NaN, not significant, left out of the correction family, and counted
separately in the report.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import stats

from kdspec.analysis.accuracy import AccuracyResult, GroupAccuracy
from kdspec.analysis.records import GroupKey
from kdspec.plan import AnalysisSpec, Comparison, Correction, Normalization

MSG_TOO_FEW_RUNS = "skipped: fewer than 2 runs on a side ({reference} n={n_ref}, {distilled} n={n_ds})"
MSG_UNKNOWN_NORMALIZATION = "unknown normalization {value!r}; expected 'ratio' or 'difference'"
MSG_UNKNOWN_CORRECTION = ("unknown correction {value!r}; expected 'none', 'bh', 'bonferroni' "
                          "or 'holm'")

SCIPY_CONSTANT_SAMPLE_WARNING = "Precision loss occurred in moment calculation"

COMPARISON_LABELS: dict[Comparison, str] = {"nds_vs_ds": "NDS vs DS", "teacher_vs_ds": "teacher vs DS"}
COUNT_LABELS: dict[Comparison, str] = {"nds_vs_ds": "#SC", "teacher_vs_ds": "#TC"}
CORRECTION_LABELS: dict[Correction, str] = {
    "none": "none", "bh": "Benjamini-Hochberg (FDR)", "bonferroni": "Bonferroni (FWER)",
    "holm": "Holm (FWER)",
}


def normalise_class_accuracy(per_class: np.ndarray, overall: np.ndarray, *,
                             normalization: Normalization) -> np.ndarray:
    """``acc_c / acc`` (ratio) or ``acc_c - acc`` (difference); shapes ``[n, C]`` and ``[n]``."""
    with np.errstate(invalid="ignore", divide="ignore"):
        if normalization == "ratio":
            return per_class / overall[:, None]
        if normalization == "difference":
            return per_class - overall[:, None]
    raise ValueError(MSG_UNKNOWN_NORMALIZATION.format(value=normalization))


def adjust_pvalues(pvalues: np.ndarray, *, correction: Correction) -> np.ndarray:
    """Adjusted p-values of one family (NaN entries stay NaN and are not counted in m).

    ``bh``: Benjamini-Hochberg, ``p_(i) * m / i`` made monotone (scipy's
    ``false_discovery_control``); ``bonferroni``: ``min(1, p * m)``; ``holm``: Holm's
    step-down ``max_{j <= i} min(1, (m - j + 1) p_(j))`` (uniformly more powerful than
    Bonferroni, same family-wise guarantee); ``none``: unchanged.
    """
    adjusted = np.full_like(pvalues, np.nan, dtype=np.float64)
    valid = ~np.isnan(pvalues)
    m = int(valid.sum())
    if m == 0:
        return adjusted
    if correction == "none":
        adjusted[valid] = pvalues[valid]
    elif correction == "bh":
        adjusted[valid] = stats.false_discovery_control(pvalues[valid], method="bh")
    elif correction == "bonferroni":
        adjusted[valid] = np.minimum(1.0, pvalues[valid] * m)
    elif correction == "holm":
        values = pvalues[valid]
        order = np.argsort(values, kind="stable")
        stepped = np.minimum(1.0, values[order] * (m - np.arange(m)))
        holm = np.empty(m)
        holm[order] = np.maximum.accumulate(stepped)
        adjusted[valid] = holm
    else:
        raise ValueError(MSG_UNKNOWN_CORRECTION.format(value=correction))
    return adjusted


@dataclass(frozen=True)
class ClassTests:
    """Welch's tests of every class for one comparison at one temperature.

    Arrays have shape ``[num_classes]``. ``mean_change = mean_D - mean_R`` of the normalised
    accuracy, ``statistic`` its Welch t, ``ci_low``/``ci_high`` its ``1 - alpha`` confidence
    interval ``mean_change +- t_{1-alpha/2, df} * se`` with the Welch-Satterthwaite
    ``df = se^4 / ((s_D^2/n_D)^2/(n_D-1) + (s_R^2/n_R)^2/(n_R-1))`` (not adjusted for
    multiplicity). When ``skipped`` is set nothing was tested and every array is NaN.
    """

    comparison: Comparison
    temperature: float
    reference: GroupKey
    distilled: GroupKey
    n_reference: int
    n_distilled: int
    statistic: np.ndarray
    pvalue: np.ndarray
    adjusted: np.ndarray
    significant: np.ndarray
    mean_change: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    df: np.ndarray
    testable: np.ndarray
    #: Significant after Benjamini-Hochberg whatever the spec's correction (always reported).
    significant_bh: np.ndarray
    alpha: float
    skipped: str | None = None

    @property
    def n_significant(self) -> int:
        return int(self.significant.sum())

    @property
    def n_significant_bh(self) -> int:
        return int(self.significant_bh.sum())

    @property
    def n_testable(self) -> int:
        return 0 if self.skipped else int(self.testable.sum())

    @property
    def expected_by_chance(self) -> float:
        """Classes expected significant when no class is affected and nothing is corrected:
        ``alpha x testable classes`` (each null p-value is uniform, so P(p < alpha) = alpha)."""
        return self.alpha * self.n_testable

    @property
    def n_untestable(self) -> int:
        return 0 if self.skipped else int((~self.testable).sum())


def welch_class_tests(reference: np.ndarray, distilled: np.ndarray, *, alpha: float,
                      correction: Correction) -> dict[str, np.ndarray]:
    """All classes' Welch tests in one vectorised ``ttest_ind`` call.

    ``reference`` ``[n_R, C]`` and ``distilled`` ``[n_D, C]`` hold normalised class accuracies;
    both need n >= 2. Returns the arrays of :class:`ClassTests` (keys of the same names).
    """
    num_classes = reference.shape[1]
    var_r = reference.var(axis=0, ddof=1)
    var_d = distilled.var(axis=0, ddof=1)
    mean_change = distilled.mean(axis=0) - reference.mean(axis=0)
    finite = np.isfinite(reference).all(axis=0) & np.isfinite(distilled).all(axis=0)
    testable = finite & ((var_r > 0) | (var_d > 0))
    statistic = np.full(num_classes, np.nan)
    pvalue = np.full(num_classes, np.nan)
    if testable.any():
        with warnings.catch_warnings():
            # One side with identical values (variance 0) is a valid Welch case, but scipy
            # reports it as "precision loss ... catastrophic cancellation". Classes where both
            # sides are constant (t = 0/0) were taken out above.
            warnings.filterwarnings("ignore", message=SCIPY_CONSTANT_SAMPLE_WARNING,
                                    category=RuntimeWarning)
            result = stats.ttest_ind(distilled[:, testable], reference[:, testable], axis=0,
                                     equal_var=False)
        statistic[testable] = result.statistic
        pvalue[testable] = result.pvalue
    n_r, n_d = reference.shape[0], distilled.shape[0]
    with np.errstate(invalid="ignore", divide="ignore"):
        share_r, share_d = var_r / n_r, var_d / n_d
        se = np.sqrt(share_r + share_d)
        df = (share_r + share_d) ** 2 / (share_r ** 2 / (n_r - 1) + share_d ** 2 / (n_d - 1))
    df = np.where(testable, df, np.nan)
    half_width = stats.t.ppf(1.0 - alpha / 2.0, np.where(testable, df, 1.0)) * se
    adjusted = adjust_pvalues(pvalue, correction=correction)
    by_bh = adjust_pvalues(pvalue, correction="bh")
    return {
        "statistic": statistic,
        "pvalue": pvalue,
        "adjusted": adjusted,
        "significant": np.nan_to_num(adjusted, nan=1.0) < alpha,
        "mean_change": mean_change,
        "ci_low": np.where(testable, mean_change - half_width, np.nan),
        "ci_high": np.where(testable, mean_change + half_width, np.nan),
        "df": df,
        "testable": testable,
        "significant_bh": np.nan_to_num(by_bh, nan=1.0) < alpha,
    }


def compare_groups(reference: GroupAccuracy, distilled: GroupAccuracy, *,
                   comparison: Comparison, options: AnalysisSpec) -> ClassTests:
    """Welch tests of one reference population against the DS of one temperature."""
    temperature = distilled.key.temperature
    assert temperature is not None, "the distilled side must be a distilled group"
    num_classes = reference.per_class.shape[1]

    def result(arrays: dict[str, np.ndarray], skipped: str | None = None) -> ClassTests:
        return ClassTests(
            comparison=comparison, temperature=temperature, reference=reference.key,
            distilled=distilled.key, n_reference=reference.n, n_distilled=distilled.n,
            statistic=arrays["statistic"], pvalue=arrays["pvalue"], adjusted=arrays["adjusted"],
            significant=arrays["significant"], mean_change=arrays["mean_change"],
            ci_low=arrays["ci_low"], ci_high=arrays["ci_high"], df=arrays["df"],
            testable=arrays["testable"], significant_bh=arrays["significant_bh"],
            alpha=options.alpha, skipped=skipped)

    if reference.n < 2 or distilled.n < 2:
        nan = np.full(num_classes, np.nan)
        never = np.zeros(num_classes, dtype=bool)
        reason = MSG_TOO_FEW_RUNS.format(reference=reference.key.label, n_ref=reference.n,
                                         distilled=distilled.key.label, n_ds=distilled.n)
        empty = {name: nan for name in ("statistic", "pvalue", "adjusted", "mean_change",
                                        "ci_low", "ci_high", "df")}
        return result({**empty, "significant": never, "testable": never,
                       "significant_bh": never}, reason)
    norm = options.normalization
    x_ref = normalise_class_accuracy(reference.per_class, reference.overall, normalization=norm)
    x_ds = normalise_class_accuracy(distilled.per_class, distilled.overall, normalization=norm)
    return result(welch_class_tests(x_ref, x_ds, alpha=options.alpha,
                                    correction=options.correction))


@dataclass(frozen=True)
class SignificanceResult:
    """Every comparison at every temperature, with the options that produced them."""

    normalization: Normalization
    alpha: float
    correction: Correction
    tests: tuple[ClassTests, ...]

    def get(self, comparison: Comparison, temperature: float) -> ClassTests | None:
        for t in self.tests:
            if t.comparison == comparison and t.temperature == temperature:
                return t
        return None

    def counts(self, comparison: Comparison) -> list[tuple[float, int | None]]:
        """``(temperature, number of significant classes)``; None where the test was skipped."""
        return [(t.temperature, None if t.skipped else t.n_significant)
                for t in self.tests if t.comparison == comparison]

    def smallest_n(self) -> int | None:
        """The fewest runs on either side of any test that ran (None if none ran)."""
        sizes = [min(t.n_reference, t.n_distilled) for t in self.tests if not t.skipped]
        return min(sizes) if sizes else None


def study_significance(accuracy: AccuracyResult, options: AnalysisSpec) -> SignificanceResult:
    """Welch tests for each of the study's comparisons at each temperature."""
    references: dict[Comparison, GroupAccuracy] = {
        "nds_vs_ds": accuracy.nds, "teacher_vs_ds": accuracy.teacher,
    }
    tests = tuple(
        compare_groups(references[comparison], ds, comparison=comparison, options=options)
        for comparison in options.comparisons
        for ds in accuracy.distilled
    )
    return SignificanceResult(normalization=options.normalization, alpha=options.alpha,
                              correction=options.correction, tests=tests)


Direction = Literal["higher", "lower"]


def direction(mean_change: float) -> Direction:
    """Whether the distilled students score the class higher or lower than the reference."""
    return "higher" if mean_change > 0 else "lower"
