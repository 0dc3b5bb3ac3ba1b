"""The report as a renderer-neutral document: sections of findings, text, tables and figures.

``report_markdown`` and ``report_html`` render the same document, so both say the same thing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from kdspec.analysis.fairness import METRIC_LABELS
from kdspec.analysis.figures import FigureFile
from kdspec.analysis.report_findings import (
    accuracy_finding,
    disagreement_finding,
    fairness_finding,
    mean_sd,
    pct,
    significance_finding,
    significant_classes_finding,
)
from kdspec.analysis.significance import (
    COMPARISON_LABELS,
    CORRECTION_LABELS,
    ClassTests,
    direction,
)
from kdspec.analysis.study_analysis import StudyAnalysis

#: Per comparison and temperature, at most this many significant classes are listed (largest
#: |change| first); significance.csv has them all.
MAX_LISTED_CLASSES = 15
#: Per-class fairness is tabulated in the report up to this many classes (always in the CSV).
MAX_PER_CLASS_COLUMNS_ROWS = 20


@dataclass(frozen=True)
class Table:
    """A table: header, rows of text cells, and a caption printed under it."""

    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    caption: str = ""


@dataclass(frozen=True)
class Section:
    """One report section: its main finding, then text, bullets, tables and figures."""

    title: str
    finding: str | None = None
    paragraphs: tuple[str, ...] = ()
    bullets: tuple[str, ...] = ()
    tables: tuple[Table, ...] = ()
    figures: tuple[FigureFile, ...] = ()


@dataclass(frozen=True)
class ReportDocument:
    """The whole report: a title and its sections in reading order."""

    title: str
    sections: tuple[Section, ...] = field(default_factory=tuple)


def _number(value: float, digits: int = 4) -> str:
    return "NaN" if math.isnan(value) else f"{value:.{digits}g}"


def setup_section(analysis: StudyAnalysis) -> Section:
    """Models, dataset, seeds, temperatures, KD loss, test options and n per group."""
    records = analysis.records
    study = records.study
    ds, opts = study.dataset, study.analysis
    n_test = records.runs[0].y_true.size if records.runs else 0
    subset = f", test subset {ds.test_subset}" if ds.test_subset else ""
    acc = analysis.accuracy
    group_n = ", ".join(f"{g.key.label}: {g.n}" for g in acc.groups)
    bullets = (
        f"Teacher: {study.teacher.arch} ({study.teacher.recipe.epochs} epochs); student: "
        f"{study.student.arch} ({study.student.recipe.epochs} epochs).",
        f"Dataset: {ds.name}, {ds.num_classes} classes, {n_test} test samples{subset}.",
        f"Seeds: {', '.join(str(s) for s in study.seeds)}; temperatures: "
        f"{', '.join(f'{t:g}' for t in study.temperatures)}.",
        f"KD loss: hard weight {study.loss.hard_weight:g}, soft weight "
        f"{study.loss.soft_weight:g}{' x T^2' if study.loss.t_squared else ''} "
        f"({study.loss.convention}).",
        f"Test: Welch's t-test (unequal variances) per class on the normalised class accuracy, "
        f"normalisation '{opts.normalization}' "
        f"({'acc_c / acc' if opts.normalization == 'ratio' else 'acc_c - acc'}), alpha = "
        f"{opts.alpha:g}, correction: {CORRECTION_LABELS[opts.correction]} (family: the "
        f"classes of one comparison at one temperature); confidence intervals at "
        f"{100 * (1 - opts.alpha):g} % with Welch-Satterthwaite df, not adjusted.",
        f"n per group (runs used): {group_n}.",
        f"Disagreement: {opts.disagreement_over_seeds} over paired seeds (teacher of seed s "
        f"vs student of seed s).",
        f"MLflow: {records.tracking_uri}; study parent run "
        f"{records.parent_run_id or 'not found (report not logged to MLflow)'}.",
    )
    return Section("Setup", bullets=bullets)


def data_section(analysis: StudyAnalysis) -> Section:
    """How many planned runs were used, and every missing, unusable or duplicated one."""
    records = analysis.records
    total = len(records.study.run_ids)
    excluded = [p for p in records.problems if p.excluded]
    caveats = [p for p in records.problems if not p.excluded]
    finding = (f"{len(records.runs)} of {total} planned runs were found FINISHED with readable "
               f"predictions" + (f"; {len(excluded)} {'is' if len(excluded) == 1 else 'are'} missing or unusable "
                                  f"and left out."
                                 if excluded else "."))
    bullets = tuple(f"Missing/unusable: {p.describe()}" for p in excluded) + tuple(
        f"Note: {p.describe()}" for p in caveats)
    return Section("Runs", finding=finding, bullets=bullets)


def accuracy_section(analysis: StudyAnalysis) -> Section:
    """Mean +- sd test accuracy with n for the teacher, the NDS and the DS per T."""
    rows = tuple(
        (g.key.label, str(g.n), mean_sd(g.mean, g.sd)) for g in analysis.accuracy.groups
    )
    table = Table(("model", "n", "test accuracy % (mean +- sd)"), rows,
                  "sd is the sample standard deviation over seeds (ddof = 1).")
    return Section("Accuracy", finding=accuracy_finding(analysis), tables=(table,))


def _count_cell(test: ClassTests | None) -> str:
    if test is None:
        return "not requested"
    return "skipped" if test.skipped else str(test.n_significant)


def significance_section(analysis: StudyAnalysis, figures: dict[str, FigureFile]) -> Section:
    """#SC and #TC per temperature, skipped comparisons, Fig. 3 and Fig. 2."""
    sig = analysis.significance
    rows = []
    for t in analysis.records.study.temperatures:
        sc, tc = sig.get("nds_vs_ds", t), sig.get("teacher_vs_ds", t)
        n_text = " / ".join(f"{x.n_reference} vs {x.n_distilled}" for x in (sc, tc) if x)
        untestable = sum(x.n_untestable for x in (sc, tc) if x)
        rows.append((f"{t:g}", _count_cell(sc), _count_cell(tc), n_text, str(untestable)))
    table = Table(("T", "#SC (NDS vs DS)", "#TC (teacher vs DS)", "n (ref vs DS)",
                   "not testable"), tuple(rows),
                  "Not testable: classes where every seed of both groups has the same value "
                  "(Welch's t is undefined, p = NaN) or a class without test samples; they "
                  "count as not significant and are left out of the correction.")
    skipped = tuple(sorted({f"{COMPARISON_LABELS[t.comparison]} T={t.temperature:g}: "
                            f"{t.skipped}" for t in sig.tests if t.skipped}))
    shown = tuple(figures[n] for n in ("fig3_accuracy_significance.png",
                                       "fig2_class_change.png") if n in figures)
    return Section("Class-wise significance (#SC, #TC)", finding=significance_finding(analysis),
                   bullets=skipped, tables=(table,), figures=shown)


def _class_rows(analysis: StudyAnalysis, test: ClassTests) -> tuple[tuple[str, ...], ...]:
    names = analysis.records.class_names
    order = np.flatnonzero(test.significant)
    order = order[np.argsort(-np.abs(test.mean_change[order]), kind="stable")]
    return tuple(
        (f"{test.temperature:g}", names[c], direction(float(test.mean_change[c])),
         f"{float(test.mean_change[c]):+.4f}",
         f"[{float(test.ci_low[c]):+.4f}, {float(test.ci_high[c]):+.4f}]",
         _number(float(test.pvalue[c]), 3), _number(float(test.adjusted[c]), 3))
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
        for t in sig.tests:
            if t.comparison == comparison and not t.skipped:
                rows.extend(_class_rows(analysis, t))
                truncated += max(0, t.n_significant - MAX_LISTED_CLASSES)
        note = (f" {truncated} more significant classes are in significance.csv."
                if truncated else "")
        tables.append(Table(
            ("T", "class", "DS is", "mean change", "CI", "p", "adjusted p"), tuple(rows),
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
        i, j, value = d.largest_cell()
        rows.append((d.label, str(len(d.seeds)), f"{float(d.matrix.sum()):g}",
                     f"{pct(d.mean_rate)}", f"{names[i]} -> {names[j]} ({value:g})"))
    over = analysis.records.study.analysis.disagreement_over_seeds
    table = Table(("pair", "seeds", f"off-diagonal total ({over} over seeds)",
                   "disagreement % (mean over seeds)", "largest cell (teacher -> student)"),
                  tuple(rows))
    shown = (figures["fig1_disagreement.png"],) if "fig1_disagreement.png" in figures else ()
    return Section("Disagreement", finding=disagreement_finding(analysis), tables=(table,),
                   figures=shown)


def fairness_section(analysis: StudyAnalysis, figures: dict[str, FigureFile]) -> Section:
    """DPD/EOD mean +- sd per model and attribute (per class if multiclass); Fig. 4."""
    fairness = analysis.fairness
    temperatures = analysis.records.study.temperatures
    finding = fairness_finding(fairness, temperatures)
    if fairness is None:
        return Section("Fairness", finding=finding)
    keys = [g.key for g in analysis.accuracy.groups]
    rows = []
    for attribute in fairness.attributes:
        for key in keys:
            s = fairness.summary(attribute, key)
            rows.append((attribute, key.label, str(s.n),
                         *(mean_sd(s.mean(m), s.sd(m)) for m in fairness.metrics)))
    how = (f"Multiclass target: one-vs-rest per class, aggregated by {fairness.aggregate} over "
           f"classes (per-class values in fairness.csv)." if fairness.multiclass
           else "Binary target, positive class 1.")
    table = Table(("attribute", "model", "n",
                   *(f"{METRIC_LABELS[m]} % (mean +- sd)" for m in fairness.metrics)),
                  tuple(rows), how + " Lower is fairer.")
    shown = (figures["fig4_fairness.png"],) if "fig4_fairness.png" in figures else ()
    per_class = tuple(t for a in fairness.attributes
                      if (t := per_class_fairness_table(analysis, a)) is not None)
    return Section("Fairness", finding=finding, bullets=fairness.problems,
                   tables=(table, *per_class), figures=shown)


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


def build_document(analysis: StudyAnalysis, figures: list[FigureFile]) -> ReportDocument:
    """The full report of one study, top to bottom."""
    by_name = {f.name: f for f in figures}
    study = analysis.records.study
    return ReportDocument(
        title=f"kdspec report: {study.name}",
        sections=(
            setup_section(analysis),
            data_section(analysis),
            accuracy_section(analysis),
            significance_section(analysis, by_name),
            significant_classes_section(analysis),
            disagreement_section(analysis, by_name),
            fairness_section(analysis, by_name),
        ),
    )
