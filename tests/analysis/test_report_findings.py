"""Main-finding sentences state the numbers of the results they summarise."""

from __future__ import annotations

import numpy as np

from kdspec.analysis.records import GroupKey
from kdspec.analysis.report_findings import _count_phrase, mean_sd, pct
from kdspec.analysis.significance import ClassTests, SignificanceResult
from kdspec.plan import Comparison


def _tests(comparison: Comparison, counts: dict[float, int | None]) -> list[ClassTests]:
    out = []
    for temperature, count in counts.items():
        significant = np.zeros(10, dtype=bool)
        significant[: count or 0] = True
        nan = np.full(10, np.nan)
        out.append(ClassTests(
            comparison=comparison, temperature=temperature,
            reference=GroupKey("student" if comparison == "nds_vs_ds" else "teacher"),
            distilled=GroupKey("distilled", temperature), n_reference=5, n_distilled=5,
            statistic=nan, pvalue=nan, adjusted=nan, significant=significant,
            mean_change=nan, ci_low=nan, ci_high=nan, df=nan, testable=np.ones(10, bool),
            significant_bh=significant, alpha=0.05, skipped="skipped: test" if count is None else None))
    return out


def _result(sc: dict[float, int | None], tc: dict[float, int | None]) -> SignificanceResult:
    return SignificanceResult(normalization="ratio", alpha=0.05, correction="none",
                              tests=tuple(_tests("nds_vs_ds", sc) + _tests("teacher_vs_ds", tc)))


def test_trend_phrases_follow_the_counts() -> None:
    result = _result({2.0: 1, 6.0: 7, 10.0: 4}, {2.0: 6, 6.0: 6, 10.0: 6})
    assert _count_phrase(result, "nds_vs_ds") == (
        "#SC rises from 1 at T = 2 to 4 at T = 10 (max 7 at T = 6)")
    assert _count_phrase(result, "teacher_vs_ds") == (
        "#TC is 6 at every tested temperature (T = 2 to 10)")
    falling = _result({2.0: 5, 10.0: 2}, {2.0: 3, 4.0: 1, 10.0: 3})
    assert _count_phrase(falling, "nds_vs_ds") == "#SC falls from 5 at T = 2 to 2 at T = 10"
    assert _count_phrase(falling, "teacher_vs_ds") == "#TC is 3 at both T = 2 and T = 10"


def test_skipped_temperatures_are_left_out_and_all_skipped_gives_none() -> None:
    result = _result({2.0: None, 4.0: 3, 8.0: 5}, {2.0: None})
    assert _count_phrase(result, "nds_vs_ds") == "#SC rises from 3 at T = 4 to 5 at T = 8"
    assert _count_phrase(result, "teacher_vs_ds") is None


def test_number_formatting() -> None:
    assert pct(0.68391) == "68.39" and pct(float("nan")) == "n/a"
    assert mean_sd(0.6839, 0.0017) == "68.39 +- 0.17"
    assert mean_sd(0.6839, float("nan")) == "68.39"
