"""The variants of one ``vary`` block side by side: what each setting did to the teacher, the
non-distilled and the distilled students, to class bias (#SC/#TC) and to group fairness.

Every number is read from the variants' own analyses (the same ones their reports print), so
the comparison can never disagree with a variant's report. Differences are taken against the
variant's own NDS: ``DS - NDS`` accuracy in percentage points (positive: distillation helped)
and ``DS - NDS`` DPD/EOD (negative: the distilled student is fairer).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from kdspec.analysis.csv_tables import Cell, write_csv
from kdspec.analysis.fairness import METRIC_LABELS
from kdspec.analysis.figures import DPI, FigureFile
from kdspec.analysis.records import GroupKey
from kdspec.analysis.report_findings import mean_sd
from kdspec.analysis.report_html import render_html
from kdspec.analysis.report_markdown import render_markdown
from kdspec.analysis.report_model import ReportDocument, Section, Table
from kdspec.analysis.study_analysis import StudyAnalysis
from kdspec.plan import Comparison, FairnessMetric, Study

COMPARISON_FIGURE = "comparison.png"
COMPARISON_CSV = "comparison.csv"
COMPARISON_MD = "comparison.md"
COMPARISON_HTML = "comparison.html"
COUNT_COMPARISONS: tuple[tuple[Comparison, str], ...] = (("nds_vs_ds", "#SC"),
                                                         ("teacher_vs_ds", "#TC"))


@dataclass(frozen=True)
class Population:
    """Mean and sample sd (NaN for n < 2) of one value over the seeds of one population."""

    mean: float
    sd: float
    n: int


def _population(values: Sequence[float]) -> Population:
    array = np.asarray(values, dtype=float)
    mean = float(array.mean()) if array.size else math.nan
    sd = float(array.std(ddof=1)) if array.size >= 2 else math.nan
    return Population(mean, sd, int(array.size))


@dataclass(frozen=True)
class VariantRow:
    """One variant's numbers: accuracy per population, counts and fairness per temperature.

    ``accuracy`` and ``fairness`` map a population (``GroupKey``) to its :class:`Population`;
    fairness is over the first sensitive attribute, per metric. ``counts`` maps (comparison,
    T) to the number of significant classes (None: not tested).
    """

    study: str
    settings: tuple[tuple[str, str], ...]
    temperatures: tuple[float, ...]
    accuracy: dict[GroupKey, Population]
    counts: dict[tuple[Comparison, float], int | None]
    fairness: dict[tuple[FairnessMetric, GroupKey], Population]
    #: Accuracy on the held-out validation split, per population (empty without one).
    validation: dict[GroupKey, Population] = field(default_factory=dict)

    def gain(self, temperature: float) -> float:
        """DS - NDS mean accuracy at T, in percentage points."""
        ds = self.accuracy[GroupKey("distilled", temperature)].mean
        return 100.0 * (ds - self.accuracy[GroupKey("student")].mean)

    def fairness_change(self, metric: FairnessMetric, temperature: float) -> float:
        """DS - NDS mean DPD or EOD at T, in percentage points (negative: fairer)."""
        ds = self.fairness.get((metric, GroupKey("distilled", temperature)))
        nds = self.fairness.get((metric, GroupKey("student")))
        if ds is None or nds is None:
            return math.nan
        return 100.0 * (ds.mean - nds.mean)


@dataclass(frozen=True)
class VariantComparison:
    """Every reported variant of one ``vary`` block, in the plan's order."""

    family: str
    keys: tuple[str, ...]
    rows: tuple[VariantRow, ...]
    not_reported: tuple[str, ...]
    attribute: str | None  # the sensitive attribute compared (the first one), if any
    metrics: tuple[FairnessMetric, ...]

    @property
    def temperatures(self) -> tuple[float, ...]:
        seen: list[float] = []
        for row in self.rows:
            seen += [t for t in row.temperatures if t not in seen]
        return tuple(seen)


def variant_row(study: Study, analysis: StudyAnalysis) -> VariantRow:
    """The numbers of one variant, from its analysis."""
    accuracy = {g.key: _population(list(g.overall)) for g in analysis.accuracy.groups}
    counts: dict[tuple[Comparison, float], int | None] = {}
    for comparison, _ in COUNT_COMPARISONS:
        for temperature, count in analysis.significance.counts(comparison):
            counts[(comparison, temperature)] = count
    fairness: dict[tuple[FairnessMetric, GroupKey], Population] = {}
    result = analysis.fairness
    if result is not None:
        attribute = result.attributes[0]
        for key in accuracy:
            summary = result.summaries.get((attribute, key))
            if summary is None or not summary.n:
                continue
            for metric in result.metrics:
                fairness[(metric, key)] = Population(summary.mean(metric), summary.sd(metric),
                                                     summary.n)
    validation = {g.key: _population(list(g.validation)) for g in analysis.accuracy.groups
                  if g.validation.size}
    return VariantRow(study.name, study.variant, study.temperatures, accuracy, counts,
                      fairness, validation)


def compare_variants(family: str, variants: Sequence[Study],
                     analyses: dict[str, StudyAnalysis]) -> VariantComparison:
    """The comparison of ``variants`` (the plan's studies of one block) from the analyses of
    those that could be reported (by study name)."""
    rows = tuple(variant_row(s, analyses[s.name]) for s in variants if s.name in analyses)
    first = next((analyses[s.name].fairness for s in variants if s.name in analyses), None)
    return VariantComparison(
        family=family, keys=tuple(k for k, _ in variants[0].variant), rows=rows,
        not_reported=tuple(s.name for s in variants if s.name not in analyses),
        attribute=first.attributes[0] if first is not None else None,
        metrics=first.metrics if first is not None else ())


def _pct(population: Population | None) -> str:
    if population is None or not population.n:
        return "-"
    return mean_sd(population.mean, population.sd)


def _signed(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:+.2f}"


def _settings_cells(row: VariantRow) -> tuple[str, ...]:
    return tuple(v for _, v in row.settings)


def _best_temperature(row: VariantRow, *, on_validation: bool) -> float | None:
    """The T of the variant's most accurate DS, judged on the validation split when the
    study holds one out (so that choosing never looks at the test split), else on test."""
    scores = row.validation if on_validation else row.accuracy
    defined = {t: scores[GroupKey("distilled", t)].mean for t in row.temperatures
               if GroupKey("distilled", t) in scores
               and not math.isnan(scores[GroupKey("distilled", t)].mean)}
    return max(defined, key=lambda t: defined[t]) if defined else None


def uses_validation(comparison: VariantComparison) -> bool:
    """Whether every variant held out a validation split (choices are then made on it)."""
    return bool(comparison.rows) and all(row.validation for row in comparison.rows)


def summary_table(comparison: VariantComparison) -> Table:
    """Per variant: teacher, NDS, best DS (its T, chosen on the validation split when there
    is one), and at how many T the DS beat its NDS."""
    on_validation = uses_validation(comparison)
    rows = []
    for row in comparison.rows:
        gains = {t: row.gain(t) for t in row.temperatures}
        defined = {t: g for t, g in gains.items() if not math.isnan(g)}
        best = _best_temperature(row, on_validation=on_validation)
        best_ds = row.accuracy.get(GroupKey("distilled", best)) if best is not None else None
        chosen = ("" if best is None or not on_validation else
                  f"; val {_pct(row.validation.get(GroupKey('distilled', best)))}")
        rows.append((row.study, *_settings_cells(row), _pct(row.accuracy[GroupKey("teacher")]),
                     _pct(row.accuracy[GroupKey("student")]),
                     "-" if best is None else f"{_pct(best_ds)} (T={best:g}{chosen})",
                     f"{sum(g >= 0 for g in defined.values())} of {len(defined)}"))
    split = ("The best T of each variant is chosen on its held-out validation split (val), "
             "and its test accuracy shown beside it: the test split chose nothing."
             if on_validation else
             "Without a validation split (dataset { validation = 0.1 }) the best T is the one "
             "with the highest test accuracy: a choice made on the test split.")
    return Table(("variant", *comparison.keys, "teacher acc (%)", "NDS acc (%)",
                  "best DS acc (%)", "T with DS >= NDS"), tuple(rows),
                 caption="Accuracy on the test split: mean +- sd over seeds, in per cent. The "
                         "last column counts the temperatures at which the mean DS accuracy "
                         f"is at least the variant's own NDS mean. {split}")


def per_temperature_table(comparison: VariantComparison, title: str,
                          cell: Callable[[VariantRow, float], str]) -> Table:
    """One row per variant, one column per temperature, cells from ``cell(row, T)``."""
    temperatures = comparison.temperatures
    rows = tuple((row.study, *(cell(row, t) if t in row.temperatures else "-"
                               for t in temperatures)) for row in comparison.rows)
    return Table(("variant", *(f"T={t:g}" for t in temperatures)), rows, caption=title)


def _count_cell(comparison: Comparison) -> Callable[[VariantRow, float], str]:
    def cell(row: VariantRow, temperature: float) -> str:
        count = row.counts.get((comparison, temperature))
        return "-" if count is None else str(count)
    return cell


def _fairness_cell(metric: FairnessMetric) -> Callable[[VariantRow, float], str]:
    def cell(row: VariantRow, temperature: float) -> str:
        return _pct(row.fairness.get((metric, GroupKey("distilled", temperature))))
    return cell


def _fairness_change(metric: FairnessMetric) -> Callable[[VariantRow, float], float]:
    def change(row: VariantRow, temperature: float) -> float:
        return row.fairness_change(metric, temperature)
    return change


def _fairness_change_cell(metric: FairnessMetric) -> Callable[[VariantRow, float], str]:
    def cell(row: VariantRow, temperature: float) -> str:
        return _signed(row.fairness_change(metric, temperature))
    return cell


def comparison_document(comparison: VariantComparison,
                        figure: FigureFile | None) -> ReportDocument:
    """The comparison as a document (rendered to Markdown and HTML like a report)."""
    sections = [Section(
        "Variants",
        paragraphs=(f"{len(comparison.rows)} variants of study block '{comparison.family}' "
                    f"vary {', '.join(comparison.keys)}. Each variant's own report is in "
                    "reports/<variant>/; differences below are against the variant's own "
                    "non-distilled student (NDS).",)
        + ((f"Not reported (no usable runs yet): {', '.join(comparison.not_reported)}.",)
           if comparison.not_reported else ()),
        tables=(summary_table(comparison),),
        figures=(figure,) if figure is not None else ())]
    sections.append(Section("Accuracy per temperature", tables=(
        per_temperature_table(comparison, "DS accuracy (%), mean +- sd over seeds.",
                              lambda r, t: _pct(r.accuracy.get(GroupKey("distilled", t)))),
        per_temperature_table(comparison, "DS - NDS accuracy, percentage points (positive: "
                              "distillation helped).", lambda r, t: _signed(r.gain(t))))))
    counts = []
    for comparison_name, label in COUNT_COMPARISONS:
        counts.append(per_temperature_table(
            comparison, f"{label}: classes significantly affected ({comparison_name}), as in "
            "each variant's report (its alpha and correction).",
            _count_cell(comparison_name)))
    sections.append(Section("Class bias (#SC, #TC)", tables=tuple(counts)))
    if comparison.attribute is not None:
        tables = []
        for metric in comparison.metrics:
            label = METRIC_LABELS[metric]
            tables.append(per_temperature_table(
                comparison, f"DS {label} over '{comparison.attribute}' (%), mean +- sd.",
                _fairness_cell(metric)))
            tables.append(per_temperature_table(
                comparison, f"DS - NDS {label}, percentage points (negative: fairer).",
                _fairness_change_cell(metric)))
        sections.append(Section("Fairness", tables=tuple(tables)))
    return ReportDocument(f"Comparison of the variants of {comparison.family}",
                          tuple(sections))


def comparison_figure(comparison: VariantComparison, path: Path) -> FigureFile | None:
    """DS - NDS accuracy against T per variant, and DS - NDS of each fairness metric."""
    if not comparison.rows:
        return None
    panels: list[tuple[str, Callable[[VariantRow, float], float]]] = [("DS - NDS accuracy (pp)", lambda r, t: r.gain(t))]
    for metric in comparison.metrics if comparison.attribute is not None else ():
        panels.append((f"DS - NDS {METRIC_LABELS[metric]} (pp)", _fairness_change(metric)))
    fig = Figure(figsize=(4.2 * len(panels) + 1.5, 3.8), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(panels)))
    for ax, (title, value) in zip(axes, panels, strict=True):
        for row in comparison.rows:
            ts = list(row.temperatures)
            ax.plot(ts, [value(row, t) for t in ts], marker="o", markersize=3, linewidth=1.2, label=row.study)
        ax.axhline(0.0, color="black", linewidth=0.8)
        ax.set_xlabel("temperature T")
        ax.set_title(title, fontsize=9)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=7, loc="outside right center", frameon=False)
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    caption = ("Each variant's distilled students against its own NDS over T: accuracy gain "
               "(above 0: distillation helped) and, with fairness, the change in DPD/EOD "
               "(below 0: fairer).")
    return FigureFile(path.name, path, caption)


def comparison_csv(comparison: VariantComparison, out_dir: Path) -> Path:
    """Long form: variant, its settings, population, T, metric, mean, sd, n."""
    def rows() -> list[Sequence[Cell]]:
        out: list[Sequence[Cell]] = []
        for row in comparison.rows:
            settings = "; ".join(f"{k}={v}" for k, v in row.settings)
            for key, pop in row.accuracy.items():
                out.append((row.study, settings, key.label, key.temperature, "accuracy",
                            pop.mean, pop.sd, pop.n))
            for (metric, key), pop in row.fairness.items():
                out.append((row.study, settings, key.label, key.temperature, metric,
                            pop.mean, pop.sd, pop.n))
            for (name, temperature), count in row.counts.items():
                out.append((row.study, settings, "DS", temperature, name, count, None, None))
        return out

    return write_csv(out_dir / COMPARISON_CSV,
                     ("variant", "settings", "population", "temperature", "metric", "mean",
                      "sd", "n"), rows())


def write_comparison(comparison: VariantComparison, out_dir: Path) -> tuple[Path, ...]:
    """comparison.md, comparison.html (self-contained), comparison.csv and the figure."""
    out_dir.mkdir(parents=True, exist_ok=True)
    figure = comparison_figure(comparison, out_dir / COMPARISON_FIGURE)
    document = comparison_document(comparison, figure)
    markdown = out_dir / COMPARISON_MD
    markdown.write_text(render_markdown(document), encoding="utf-8")
    html = out_dir / COMPARISON_HTML
    html.write_text(render_html(document), encoding="utf-8")
    table = comparison_csv(comparison, out_dir)
    return (markdown, html, table) + ((figure.path,) if figure is not None else ())
