"""The report as a renderer-neutral document: sections of findings, text, tables and figures.

``report_markdown`` and ``report_html`` render the same document, so both say the same thing.
"""

from __future__ import annotations

import math

import numpy as np

from kdspec.analysis.accuracy import GroupAccuracy
from kdspec.analysis.attribute_accuracy import AttributeAccuracy
from kdspec.analysis.claims import NO_FAMILY
from kdspec.analysis.fairness import METRIC_LABELS, FairnessResult
from kdspec.analysis.fairness_evidence import INTERVAL_LEVEL, SMALL_CELL, Interval
from kdspec.analysis.fairness_reference import REFERENCE_PERMUTATIONS
from kdspec.analysis.figures import (
    FIG_ACCURACY,
    FIG_CLASS_CHANGE,
    FIG_DISAGREEMENT,
    FIG_FAIRNESS,
    FigureFile,
)
from kdspec.analysis.flagged_runs import claim_flag_note, study_flagged_lines
from kdspec.analysis.individual_fairness_section import individual_fairness_section
from kdspec.analysis.report_findings import (
    accuracy_finding,
    disagreement_finding,
    fairness_finding,
    mean_sd,
    pct,
    significance_finding,
    significant_classes_finding,
)
from kdspec.analysis.report_model import ReportDocument, Section, Table
from kdspec.analysis.report_setup import data_section, setup_section
from kdspec.analysis.report_summary import summary_section, verdict_label
from kdspec.analysis.significance import (
    COMPARISON_LABELS,
    CORRECTION_LABELS,
    ClassTests,
    direction,
)
from kdspec.analysis.study_analysis import StudyAnalysis
from kdspec.catalogue.facts import DATASETS

#: Per comparison and temperature, at most this many significant classes are listed (largest
#: |change| first); significance.csv has them all.
MAX_LISTED_CLASSES = 15
#: Per-class fairness is tabulated in the report up to this many classes (always in the CSV).
MAX_PER_CLASS_COLUMNS_ROWS = 20


def _number(value: float, digits: int = 4) -> str:
    return "NaN" if math.isnan(value) else f"{value:.{digits}g}"


def _sd(values: np.ndarray) -> float:
    return float(values.std(ddof=1)) if len(values) >= 2 else math.nan


def _lowest_class(group: GroupAccuracy, names: tuple[str, ...]) -> str:
    lowest = group.lowest_class_on_average()
    return "n/a" if lowest is None else f"{names[lowest[0]]} ({100 * lowest[1]:.2f})"


#: Groups of an attribute shown one column each; beyond this, worst and best group only.
GROUP_COLUMNS = 8


def group_names(analysis: StudyAnalysis, attribute: str, groups: tuple[int, ...]
                ) -> tuple[str, ...]:
    """The names of an attribute's groups where the catalogue knows them (Trifeature's
    colours, CelebA's two values), else the codes the predictions carry."""
    facts = DATASETS.get(analysis.records.study.dataset.name)
    values = facts.attribute_values.get(attribute, ()) if facts is not None else ()
    return tuple(values[g] if 0 <= g < len(values) else f"group {g}" for g in groups)


def attribute_accuracy_table(analysis: StudyAnalysis, table: AttributeAccuracy) -> Table:
    """Accuracy within each group of one attribute, per population (mean +- sd over seeds),
    and the gap between its best and worst group."""
    names = group_names(analysis, table.attribute, table.groups)
    wide = len(table.groups) > GROUP_COLUMNS
    header = [f"model (by '{table.attribute}')", "n"]
    if wide:
        header += ["worst group % (mean +- sd)", "best group % (mean +- sd)"]
    else:
        header += [f"{name} (n = {count}) %" for name, count in zip(names, table.samples,
                                                                     strict=True)]
    header.append("best - worst group, points")
    rows = []
    for pop in table.populations:
        if not len(pop.per_run):
            continue
        row = [pop.key.label, str(len(pop.per_run))]
        if wide:
            worst, best = np.nanmin(pop.per_run, axis=1), np.nanmax(pop.per_run, axis=1)
            row += [mean_sd(float(worst.mean()), _sd(worst)), mean_sd(float(best.mean()), _sd(best))]
        else:
            row += [mean_sd(float(m), float(s)) for m, s in zip(pop.mean, pop.sd, strict=True)]
        gap = np.nanmax(pop.per_run, axis=1) - np.nanmin(pop.per_run, axis=1)
        row.append(mean_sd(float(gap.mean()), _sd(gap)))
        rows.append(tuple(row))
    return Table(tuple(header), tuple(rows),
                 f"Test accuracy within each group of '{table.attribute}' (mean +- sd over "
                 "seeds); the gap is each run's best minus worst group, averaged. A DS that is "
                 "fairer only because its best groups lost accuracy shows here.")


def accuracy_section(analysis: StudyAnalysis) -> Section:
    """Mean +- sd test accuracy with n for the teacher, the NDS and the DS per T, the worst
    class, and the accuracy within each group of every sensitive attribute."""
    names = analysis.records.class_names
    rows = tuple(
        (g.key.label, str(g.n), mean_sd(g.mean, g.sd),
         mean_sd(float(g.worst_class.mean()) if g.n else math.nan, _sd(g.worst_class)),
         _lowest_class(g, names))
        for g in analysis.accuracy.groups
    )
    table = Table(("model", "n", "test accuracy % (mean +- sd)",
                   "worst class % (mean +- sd)", "lowest class on average (%)"), rows,
                  "sd is the sample standard deviation over seeds (ddof = 1). Worst class: "
                  "each run's lowest per-class accuracy, averaged over seeds; the last column "
                  "names the class with the lowest mean accuracy.")
    groups = tuple(attribute_accuracy_table(analysis, a) for a in analysis.attribute_accuracy)
    return Section("Accuracy", finding=accuracy_finding(analysis), tables=(table, *groups))


def _count_cell(test: ClassTests | None) -> str:
    if test is None:
        return "not requested"
    return "skipped" if test.skipped else str(test.n_significant)


def _bh_cell(test: ClassTests | None) -> str:
    if test is None:
        return "not requested"
    return "skipped" if test.skipped else str(test.n_significant_bh)


#: Below this many seeds per group the report warns that Welch's test has little power.
FEW_SEEDS = 5
MSG_FEW_SEEDS = (
    "Few seeds: the smallest group has {n} runs (fewer than {few}). Welch's test with {n} vs {n} "
    "seeds has little power and unstable variance estimates, so counts near the chance level "
    "say little either way."
)


def significance_section(analysis: StudyAnalysis, figures: dict[str, FigureFile]) -> Section:
    """#SC and #TC per temperature with their chance level and BH counts; Fig. 2 and Fig. 3."""
    sig = analysis.significance
    rows = []
    for t in analysis.records.study.temperatures:
        sc, tc = sig.get("nds_vs_ds", t), sig.get("teacher_vs_ds", t)
        ran = [x for x in (sc, tc) if x is not None and not x.skipped]
        n_text = " / ".join(f"{x.n_reference} vs {x.n_distilled}" for x in (sc, tc) if x)
        untestable = sum(x.n_untestable for x in (sc, tc) if x)
        chance = " / ".join(f"{x.expected_by_chance:.2g}" for x in ran) or "-"
        rows.append((f"{t:g}", _count_cell(sc), _bh_cell(sc), _count_cell(tc), _bh_cell(tc),
                     chance, n_text, str(untestable)))
    correction = CORRECTION_LABELS[sig.correction]
    table = Table(("T", "#SC (NDS vs DS)", "#SC after BH", "#TC (teacher vs DS)",
                   "#TC after BH", "expected by chance", "n (ref vs DS)", "not testable"),
                  tuple(rows),
                  f"Counts of classes at p < {sig.alpha:g} with the spec's correction "
                  f"({correction}), and after Benjamini-Hochberg (always shown). Expected by "
                  f"chance: alpha x testable classes, the mean count if distillation affected no "
                  f"class and nothing were corrected (#SC / #TC). Not testable: classes where "
                  f"every seed of both groups has the same value (Welch's t is undefined, "
                  f"p = NaN) or a class without test samples; they count as not significant "
                  f"and are left out of the correction.")
    skipped = tuple(sorted({f"{COMPARISON_LABELS[t.comparison]} T={t.temperature:g}: "
                            f"{t.skipped}" for t in sig.tests if t.skipped}))
    smallest = sig.smallest_n()
    warnings = ((MSG_FEW_SEEDS.format(n=smallest, few=FEW_SEEDS),)
                if smallest is not None and smallest < FEW_SEEDS else ())
    shown = tuple(figures[n] for n in (FIG_CLASS_CHANGE, FIG_ACCURACY) if n in figures)
    return Section("Class-wise significance (#SC, #TC)", finding=significance_finding(analysis),
                   bullets=warnings + skipped, tables=(table,), figures=shown)


def _class_rows(analysis: StudyAnalysis, test: ClassTests, *, adjusted: bool
                ) -> tuple[tuple[str, ...], ...]:
    names = analysis.records.class_names
    order = np.flatnonzero(test.significant)
    order = order[np.argsort(-np.abs(test.mean_change[order]), kind="stable")]
    return tuple(
        (f"{test.temperature:g}", names[c], direction(float(test.mean_change[c])),
         f"{float(test.mean_change[c]):+.4f}",
         f"[{float(test.ci_low[c]):+.4f}, {float(test.ci_high[c]):+.4f}]",
         _number(float(test.pvalue[c]), 3),
         *((_number(float(test.adjusted[c]), 3),) if adjusted else ()))
        for c in order[:MAX_LISTED_CLASSES]
    )


def significant_classes_section(analysis: StudyAnalysis) -> Section:
    """The significant classes per comparison and T: direction, change, CI, p-values."""
    sig = analysis.significance
    tables, findings = [], []
    for comparison in analysis.records.study.analysis.comparisons:
        finding = significant_classes_finding(analysis, comparison)
        if finding:
            findings.append(finding)
        rows: list[tuple[str, ...]] = []
        truncated = 0
        adjusted = sig.correction != "none"
        for t in sig.tests:
            if t.comparison == comparison and not t.skipped:
                rows.extend(_class_rows(analysis, t, adjusted=adjusted))
                truncated += max(0, t.n_significant - MAX_LISTED_CLASSES)
        note = (f" {truncated} more significant classes are in significance.csv."
                if truncated else "")
        header = ("T", "class", "DS is", "mean change", "CI", "p") + (
            (f"p adjusted ({CORRECTION_LABELS[sig.correction]})",) if adjusted else ())
        tables.append(Table(
            header, tuple(rows),
            f"{COMPARISON_LABELS[comparison]}: mean change = mean(DS) - mean(reference) of "
            f"the normalised class accuracy, with its {100 * (1 - sig.alpha):g} % confidence "
            f"interval; largest |change| first, at most {MAX_LISTED_CLASSES} per "
            f"temperature.{note}"))
    return Section("Significant classes", finding=" ".join(findings) or None,
                   tables=tuple(tables))


def disagreement_section(analysis: StudyAnalysis, figures: dict[str, FigureFile]) -> Section:
    """Off-diagonal totals, disagreement rates and largest cells per pair; Fig. 1."""
    names = analysis.records.class_names
    rows = []
    for d in analysis.disagreement:
        if d.skipped:
            rows.append((d.label, "0", d.skipped, "", ""))
            continue
        cell = d.largest_cell()
        largest = ("none: they agree on every sample" if cell is None
                   else f"{names[cell[0]]} -> {names[cell[1]]} ({cell[2]:g})")
        rows.append((d.label, str(len(d.seeds)), f"{float(d.matrix.sum()):g}",
                     f"{pct(d.mean_rate)}", largest))
    over = analysis.records.study.analysis.disagreement_over_seeds
    table = Table(("pair", "seeds", f"off-diagonal total ({over} over seeds)",
                   "disagreement % (mean over seeds)", "largest cell (teacher -> student)"),
                  tuple(rows))
    shown = (figures[FIG_DISAGREEMENT],) if FIG_DISAGREEMENT in figures else ()
    return Section("Disagreement", finding=disagreement_finding(analysis), tables=(table,),
                   figures=shown)


def _interval(interval: Interval) -> str:
    if math.isnan(interval.low):
        return "n/a"
    return f"[{pct(interval.low)}, {pct(interval.high)}]"


def _half_width(value: float) -> str:
    return "n/a" if math.isnan(value) else f"+- {pct(value)}"


def fairness_split_table(fairness: FairnessResult) -> Table:
    """Per attribute: a perfect classifier's values, group sizes and cell counts."""
    rows = []
    for attribute in fairness.attributes:
        split = fairness.splits.get(attribute)
        if split is None:
            continue
        sizes = split.group_sizes
        rows.append((attribute, pct(split.perfect_dpd), pct(split.perfect_eod), str(len(sizes)),
                     f"{min(sizes)}-{max(sizes)}", f"{split.smallest_cell} / "
                     f"{split.median_cell:g}", f"{split.small_cells} of "
                     f"{split.cell_positives.size}"))
    return Table(("attribute", "DPD % of a perfect classifier", "EOD % of a perfect classifier",
                  "groups", "group sizes", "positives per (class, group): min / median",
                  f"cells < {SMALL_CELL}"),
                 tuple(rows),
                 "What y_pred = y_true scores on this test set: a point of comparison, not a "
                 "lower bound (a constant predictor scores DPD 0). A perfect classifier's DPD "
                 "above 0 measures how unevenly the groups are spread over the classes. TPR "
                 "and FPR gaps are rates over the positives and negatives of each (class, "
                 "group) cell.")


def fairness_warnings(fairness: FairnessResult) -> tuple[str, ...]:
    """Plain warnings: groups spread unevenly over classes, cells too small for a TPR."""
    out = []
    for attribute in fairness.attributes:
        split = fairness.splits.get(attribute)
        if split is None:
            continue
        if split.perfect_dpd > 0:
            out.append(f"Over '{attribute}' even a perfect classifier scores DPD "
                       f"{pct(split.perfect_dpd)} % on this test set (the groups are spread "
                       f"unevenly over the classes); the excess DPD removes that part.")
        if split.small_cells:
            out.append(f"Over '{attribute}', {split.small_cells} of {split.cell_positives.size}"
                       f" (class, group) cells have fewer than {SMALL_CELL} positives (smallest"
                       f" {split.smallest_cell}): a TPR from n positives has a sampling sd of "
                       f"sqrt(TPR (1 - TPR) / n), 9.5 points at n = 10 and TPR 0.5, so EOD on "
                       f"such cells is mostly noise.")
    return tuple(out)


def fairness_section(analysis: StudyAnalysis, figures: dict[str, FigureFile]) -> Section | None:
    """DPD/EOD per model and attribute, their excess over the no-group-effect reference with
    intervals, the test set's counts, Fig. 4; None for a study without fairness."""
    fairness = analysis.fairness
    if fairness is None:
        return None
    temperatures = analysis.records.study.temperatures
    finding = fairness_finding(fairness, temperatures)
    keys = [g.key for g in analysis.accuracy.groups]
    rows = []
    for attribute in fairness.attributes:
        for key in keys:
            s = fairness.summary(attribute, key)
            cells: list[str] = []
            for m in fairness.metrics:
                e = s.excess(m)
                cells += [mean_sd(s.mean(m), s.sd(m)), mean_sd(e.excess_mean, e.excess_sd),
                          _interval(e.excess_ci), _half_width(s.boot_half_width(m))]
            rows.append((attribute, key.label, str(s.n), *cells))
    how = (f"Multiclass target: one-vs-rest per class, aggregated by {fairness.aggregate} over "
           f"classes (per-class values in fairness.csv)." if fairness.multiclass
           else "Binary target, positive class 1.")
    boot = (f"test-set bootstrap: mean half-width of each run's {100 * INTERVAL_LEVEL:g} % "
            f"percentile range over {fairness.n_boot} resamples, how far one test set moves "
            "the estimate; not a confidence interval (the gap estimator is biased upward)"
            if fairness.n_boot else "bootstrap: off (analysis bootstrap = 0)")
    header: list[str] = []
    for m in fairness.metrics:
        label = METRIC_LABELS[m]
        header += [f"{label} % (mean +- sd)", f"excess {label} % (mean +- sd)",
                   f"excess {label} {100 * INTERVAL_LEVEL:g} % CI over seeds",
                   f"{label} test-set bootstrap"]
    table = Table(("attribute", "model", "n", *header), tuple(rows),
                  f"All values in per cent. {how} Lower is fairer. Excess: the value minus the "
                  f"reference, what a model with no group effect scores with the same "
                  f"predictions on this test set (the attribute permuted within each true "
                  f"class, {REFERENCE_PERMUTATIONS} times): a finite test set gives every "
                  f"model a gap above 0, larger when it is less accurate, and the excess "
                  f"removes it (0 means no group effect). CI over seeds: t interval of the mean "
                  f"excess (its coverage is checked by bench/bench_claims.py); {boot}.")
    shown = (figures[FIG_FAIRNESS],) if FIG_FAIRNESS in figures else ()
    per_class = tuple(t for a in fairness.attributes
                      if (t := per_class_fairness_table(analysis, a)) is not None)
    return Section("Fairness", finding=finding,
                   bullets=fairness_warnings(fairness) + fairness.problems,
                   tables=(fairness_split_table(fairness), table, *per_class), figures=shown)


def per_class_fairness_table(analysis: StudyAnalysis, attribute: str) -> Table | None:
    """Multiclass target: one row per class, one column per model, cells 'DPD_c / EOD_c' (%)."""
    fairness = analysis.fairness
    names = analysis.records.class_names
    if fairness is None or not fairness.multiclass or len(names) > MAX_PER_CLASS_COLUMNS_ROWS:
        return None
    columns = [(g.key, means) for g in analysis.accuracy.groups
               if (means := fairness.per_class_means(attribute, g.key)) is not None]
    if not columns:
        return None
    rows = tuple(
        (name, *(f"{pct(float(v[0][c]), 1)} / {pct(float(v[1][c]), 1)}" for _, v in columns))
        for c, name in enumerate(names)
    )
    return Table(("class", *(k.label for k, _ in columns)), rows,
                 f"Per-class one-vs-rest DPD_c / EOD_c (%) over '{attribute}', mean over seeds; "
                 f"per run in fairness.csv.")


def claims_section(analysis: StudyAnalysis) -> Section:
    """Each of the poster's insights tested on this study: test, assumption, p after Holm,
    verdict, power and seeds needed."""
    result = analysis.claims
    claims = result.claims
    provisional = not analysis.records.complete
    rows = tuple((c.claim, c.result, _number(c.p_value, 3), _number(c.p_adjusted, 3),
                  verdict_label(c, provisional=provisional, whole_flag=True,
                                rests=claim_flag_note(c, analysis.records)), c.power,
                  c.seeds_needed)
                 for c in claims)
    supported = result.count("supported")
    finding = ((f"Provisional ({analysis.records.state.headline()}): " if provisional else "")
               + f"Of the paper's {len(claims)} claims this study can be asked, "
               f"{supported} {'is' if supported == 1 else 'are'} supported, "
               f"{result.count('not supported')} not supported and "
               f"{result.count('inconclusive')} inconclusive at alpha = {result.alpha:g}"
               + (f" after {result.family.split(' (')[0]}." if result.family != NO_FAMILY
                  else f": {NO_FAMILY}."))
    table = Table(("claim (poster)", "result", "p", "p after Holm", "verdict", "power",
                   "seeds for 80 % power"), rows,
                  f"Family-wise control: {result.family}. Supported: Holm-adjusted p < alpha; "
                  "not supported: the design can answer and the test does not reject; "
                  "inconclusive: the design cannot answer. Power and the minimal detectable "
                  "effect (MDE) are at the Holm worst case alpha / k, from this study's own "
                  "seed-to-seed spread (a pilot estimate). docs/report.md describes each test.")
    tests = tuple(f"{c.claim} Test: {c.test} Assumes: {c.assumption}"
                  + (f" Note: {c.detail}" if c.detail else "") for c in claims)
    return Section("The paper's claims, tested on this study", finding=finding,
                   tables=(table,), bullets=tests)


MSG_STATUS_PROVISIONAL = ("{headline}. Every verdict in this report is provisional; report "
                          "again when the study has finished.")


def status_line(analysis: StudyAnalysis) -> str:
    """The report's first line: ``Complete: all 55 runs finished.``, or ``Incomplete: 12 of 55
    runs finished: 3 training, 40 not started.`` and that the verdicts are provisional."""
    state = analysis.records.state
    return (f"{state.headline()}." if state.complete
            else MSG_STATUS_PROVISIONAL.format(headline=state.headline()))


def build_document(analysis: StudyAnalysis, figures: list[FigureFile]) -> ReportDocument:
    """The full report of one study, top to bottom."""
    by_name = {f.name: f for f in figures}
    study = analysis.records.study
    return ReportDocument(
        title=f"kdspec report: {study.name}",
        status=status_line(analysis),
        incomplete=not analysis.records.complete,
        notices=study_flagged_lines(analysis.records),
        sections=(
            summary_section(analysis),
            setup_section(analysis),
            data_section(analysis),
            accuracy_section(analysis),
            claims_section(analysis),
            disagreement_section(analysis, by_name),
            significance_section(analysis, by_name),
            significant_classes_section(analysis),
            *([fairness] if (fairness := fairness_section(analysis, by_name)) else []),
            *([individual] if (individual := individual_fairness_section(analysis)) else []),
        ),
    )
