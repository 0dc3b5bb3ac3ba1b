"""The one-sentence main finding of each report section, computed from the results.

Every sentence states its numbers (and n); none is canned: when the data do not support a
statement (a skipped comparison, no runs) the sentence says that instead.
"""

from __future__ import annotations

import math
from collections import Counter

import numpy as np

from kdspec.analysis.accuracy import GroupAccuracy
from kdspec.analysis.fairness import METRIC_LABELS, FairnessResult
from kdspec.analysis.records import GroupKey
from kdspec.analysis.significance import (
    CORRECTION_LABELS,
    COUNT_LABELS,
    SignificanceResult,
    direction,
)
from kdspec.analysis.study_analysis import StudyAnalysis
from kdspec.plan import Comparison


def pct(value: float, digits: int = 2) -> str:
    """A share in percent (``0.6839 -> '68.39'``); 'n/a' for NaN."""
    return "n/a" if math.isnan(value) else f"{100 * value:.{digits}f}"


def mean_sd(mean: float, sd: float, *, scale: float = 100.0, digits: int = 2) -> str:
    """``'68.39 +- 0.17'``; the sd part is left out when undefined (n < 2)."""
    if math.isnan(mean):
        return "n/a"
    text = f"{scale * mean:.{digits}f}"
    return text if math.isnan(sd) else f"{text} +- {scale * sd:.{digits}f}"


def _acc(group: GroupAccuracy) -> str:
    return f"{mean_sd(group.mean, group.sd)} % (n = {group.n})" if group.n else "no runs"


def accuracy_finding(analysis: StudyAnalysis) -> str:
    """The best DS temperature and its accuracy against the NDS and the teacher."""
    acc = analysis.accuracy
    best = acc.best_distilled()
    if best is None:
        return (f"No distilled student could be evaluated; teacher {_acc(acc.teacher)}, "
                f"NDS {_acc(acc.nds)}.")
    parts = [f"The distilled student is most accurate at T = {best.key.temperature:g} with "
             f"{_acc(best)}"]
    for name, ref in (("the NDS", acc.nds), ("the teacher", acc.teacher)):
        if ref.n:
            delta = 100 * (best.mean - ref.mean)
            parts.append(f"{delta:+.2f} points vs {name} ({_acc(ref)})")
    return ", ".join(parts) + "."


def _trend_words(first: int, last: int) -> str:
    return "rises" if last > first else "falls"


def _count_phrase(sig: SignificanceResult, comparison: Comparison) -> str | None:
    counts = [(t, n) for t, n in sig.counts(comparison) if n is not None]
    if not counts:
        return None
    label = COUNT_LABELS[comparison]
    (t0, n0), (t1, n1) = counts[0], counts[-1]
    if len(counts) == 1:
        return f"{label} is {n0} at T = {t0:g}"
    values = {n for _, n in counts}
    if len(values) == 1:
        return f"{label} is {n0} at every tested temperature (T = {t0:g} to {t1:g})"
    peak_t, peak_n = max(counts, key=lambda x: (x[1], x[0]))
    peak = "" if peak_n in (n0, n1) else f" (max {peak_n} at T = {peak_t:g})"
    if n0 == n1:
        return f"{label} is {n0} at both T = {t0:g} and T = {t1:g}{peak}"
    return f"{label} {_trend_words(n0, n1)} from {n0} at T = {t0:g} to {n1} at T = {t1:g}{peak}"


def significance_finding(analysis: StudyAnalysis) -> str:
    """How #SC and #TC change over T, with the test options and n."""
    sig = analysis.significance
    phrases = [p for p in (_count_phrase(sig, c) for c in ("nds_vs_ds", "teacher_vs_ds")) if p]
    if not phrases:
        reasons = sorted({t.skipped.removeprefix("skipped: ") for t in sig.tests if t.skipped})
        return "No class-wise comparison could be tested: " + "; ".join(reasons) + "."
    tested = [t for t in sig.tests if not t.skipped]
    references = {t.reference.label: t.n_reference for t in tested}
    ds_n = sorted({t.n_distilled for t in tested})
    ds_text = f"{ds_n[0]}" if len(ds_n) == 1 else f"{ds_n[0]}-{ds_n[-1]}"
    n_text = ", ".join([f"n = {n} {label}" for label, n in references.items()]
                       + [f"{ds_text} DS seeds"])
    return (" and ".join(phrases) + f" out of {analysis.records.num_classes} classes (Welch's "
            f"t-test, alpha = {sig.alpha:g}, correction: {CORRECTION_LABELS[sig.correction]}, "
            f"{sig.normalization} normalisation; {n_text}).")


def significant_classes_finding(analysis: StudyAnalysis, comparison: Comparison) -> str | None:
    """The class significant at most temperatures for one comparison, with its change and CI."""
    tests = [t for t in analysis.significance.tests
             if t.comparison == comparison and not t.skipped]
    if not tests:
        return None
    names = analysis.records.class_names
    hits: Counter[int] = Counter()
    for t in tests:
        hits.update(int(c) for c in np.flatnonzero(t.significant))
    label = COUNT_LABELS[comparison]
    sig = analysis.significance
    chance = sum(t.expected_by_chance for t in tests)
    after_bh = sum(t.n_significant_bh for t in tests)
    context = (f" By chance alone about {chance:.2g} (class, temperature) pairs would be "
               f"significant without a correction; after Benjamini-Hochberg {after_bh} remain"
               + (", so these classes are what chance gives." if after_bh == 0 else ".")
               if sig.correction == "none" else "")
    if not hits:
        return (f"{label}: no class is significant at any of the {len(tests)} tested "
                f"temperatures.{context}")
    top, times = max(hits.items(), key=lambda kv: (kv[1], -kv[0]))
    strongest = max((t for t in tests if t.significant[top]),
                    key=lambda t: abs(float(t.mean_change[top])))
    change = float(strongest.mean_change[top])
    directions = {direction(float(t.mean_change[top])) for t in tests if t.significant[top]}
    reference = strongest.reference.label
    consistency = (f"always {directions.pop()} in DS than {reference}" if len(directions) == 1
                   else f"higher in DS than {reference} at some, lower at others")
    return (f"{label}: {len(hits)} classes are significant at least once; '{names[top]}' is "
            f"significant at {times} of {len(tests)} temperatures ({consistency}), largest "
            f"change {change:+.4f} at T = "
            f"{strongest.temperature:g} (CI {float(strongest.ci_low[top]):+.4f} to "
            f"{float(strongest.ci_high[top]):+.4f}).{context}")


def disagreement_finding(analysis: StudyAnalysis) -> str:
    """Disagreement rates teacher vs NDS and vs DS (least and most), and the top cell."""
    results = [d for d in analysis.disagreement if not d.skipped]
    if not results:
        return "No disagreement matrix could be computed: no seed has a teacher and a student run."
    names = analysis.records.class_names
    parts: list[str] = []
    nds = next((d for d in results if d.pair == "teacher_vs_nds"), None)
    if nds is not None:
        parts.append(f"the teacher and the NDS disagree on {pct(nds.mean_rate)} % of test "
                     f"samples (mean over {len(nds.seeds)} seeds)")
    ds = [d for d in results if d.pair == "teacher_vs_ds"]
    if ds:
        low = min(ds, key=lambda d: d.mean_rate)
        high = max(ds, key=lambda d: d.mean_rate)
        parts.append(f"the teacher and the DS on {pct(low.mean_rate)} % at T = "
                     f"{low.temperature:g} (least) to {pct(high.mean_rate)} % at T = "
                     f"{high.temperature:g} (most)")
    cell = results[0].largest_cell()
    if cell is None:
        parts.append(f"in {results[0].label} the two agree on every test sample")
    else:
        i, j, value = cell
        parts.append(f"the largest cell of {results[0].label} is teacher '{names[i]}' vs "
                     f"student '{names[j]}' ({value:g}, {results[0].over_seeds} over seeds)")
    text = "; ".join(parts)
    return text[0].upper() + text[1:] + "."


def fairness_finding(fairness: FairnessResult | None, temperatures: tuple[float, ...]) -> str:
    """Per attribute and metric: the DS's lowest and highest value over T vs NDS/teacher."""
    if fairness is None:
        return "The study declares no sensitive attribute, so no fairness metric was computed."
    if not fairness.runs:
        return "No run has the declared sensitive attribute in its predictions."
    sentences = []
    for attribute in fairness.attributes:
        ds = [(t, fairness.summary(attribute, GroupKey("distilled", t))) for t in temperatures]
        nds = fairness.summary(attribute, GroupKey("student"))
        teacher = fairness.summary(attribute, GroupKey("teacher"))
        for metric in fairness.metrics:
            label = METRIC_LABELS[metric]
            present = [(t, s) for t, s in ds if s.n and not math.isnan(s.mean(metric))]
            if not present:
                continue
            low_t, low = min(present, key=lambda ts: ts[1].mean(metric))
            high_t, high = max(present, key=lambda ts: ts[1].mean(metric))
            references = [f"{name} {mean_sd(ref.mean(metric), ref.sd(metric))} %"
                          for name, ref in (("NDS", nds), ("teacher", teacher))
                          if not math.isnan(ref.mean(metric))]
            against = f", against {' and '.join(references)}" if references else ""
            excess = [f"{name} {mean_sd(ref.excess(metric).excess_mean, ref.excess(metric).excess_sd)} %"
                      for name, ref in (("NDS", nds), (f"DS T={low_t:g}", low))
                      if not math.isnan(ref.excess(metric).excess_mean)]
            sentences.append(
                f"Over '{attribute}', the DS's {label} is lowest at T = {low_t:g} "
                f"({mean_sd(low.mean(metric), low.sd(metric))} %, n = {low.n}) and highest at "
                f"T = {high_t:g} ({mean_sd(high.mean(metric), high.sd(metric))} %){against}"
                + (f"; its excess over a model with no group effect: {', '.join(excess)}"
                   if excess else "") + "."
            )
    return " ".join(sentences) or "No distilled student has fairness values."
