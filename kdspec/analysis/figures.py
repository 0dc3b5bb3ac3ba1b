"""The poster's four figures as PNG files at print resolution with a PDF (vector) copy beside
each (matplotlib's object API on the Agg canvas, no pyplot).

Fig. 1 disagreement heatmaps (teacher vs NDS, teacher vs DS at one T, diagonal excluded);
Fig. 2 per-class change NDS -> DS over temperatures, significant classes marked x;
Fig. 3 temperature vs test accuracy with #SC and #TC on a twin axis;
Fig. 4 the excess DPD and EOD over the no-group-effect reference vs temperature (what the
fairness claims test), with the teacher and NDS as reference lines.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from kdspec.analysis.disagreement import DisagreementResult
from kdspec.analysis.fairness import METRIC_LABELS, MetricSummary
from kdspec.analysis.records import GroupKey
from kdspec.analysis.study_analysis import StudyAnalysis
from kdspec.plan import Comparison, FairnessMetric

#: Above this many classes, axes carry no class names and cells no numbers.
LABELLED_CLASSES = 20
#: Print resolution of the PNG files (the PDF copy is vector and needs none).
DPI = 300
FIG_DISAGREEMENT = "fig1_disagreement.png"
FIG_CLASS_CHANGE = "fig2_class_change.png"
FIG_ACCURACY = "fig3_accuracy_significance.png"
FIG_FAIRNESS = "fig4_fairness.png"
TEACHER_COLOR, NDS_COLOR, DS_COLOR = "#1b9e77", "#7570b3", "#d95f02"
SC_COLOR, TC_COLOR = "#e7298a", "#66a61e"
METRIC_NAMES = {"dpd": "Demographic parity difference", "eod": "equalized odds difference"}


@dataclass(frozen=True)
class FigureFile:
    """A written figure: file name inside the report folder, its caption, and the vector copy
    (``.pdf`` beside the PNG) when one was written."""

    name: str
    path: Path
    caption: str
    vector: Path | None = None

    @property
    def files(self) -> tuple[Path, ...]:
        return (self.path,) if self.vector is None else (self.path, self.vector)


def vector_path(path: Path) -> Path:
    """The PDF copy of a PNG figure."""
    return path.with_suffix(".pdf")


def save_figure(fig: Figure, path: Path) -> None:
    """The PNG at print resolution and its PDF copy."""
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    fig.savefig(vector_path(path), bbox_inches="tight")


def _class_ticks(ax: Axes, names: tuple[str, ...], *, x: bool, y: bool) -> None:
    positions = np.arange(len(names))
    if len(names) > LABELLED_CLASSES:
        if x:
            ax.set_xticks([])
        if y:
            ax.set_yticks([])
        return
    if x:
        ax.set_xticks(positions, names, rotation=60, ha="right", fontsize=8)
    if y:
        ax.set_yticks(positions, names, fontsize=8)


def _heatmap(ax: Axes, result: DisagreementResult, names: tuple[str, ...], vmax: float,
             student: str, *, first: bool) -> object:
    matrix = result.matrix.astype(float)
    shown = np.ma.masked_where(np.eye(len(names), dtype=bool), matrix)
    small = len(names) <= LABELLED_CLASSES
    # A large matrix is drawn smaller than one pixel per cell: average cells rather than drop.
    image = ax.imshow(shown, cmap="Blues", vmin=0.0, vmax=max(vmax, 1.0),
                      interpolation="nearest" if small else "antialiased")
    ax.set_facecolor("#eeeeee")  # the masked diagonal
    if small:
        for i, j in zip(*np.nonzero(~np.eye(len(names), dtype=bool)), strict=True):
            value = matrix[i, j]
            text = f"{value:.0f}" if result.over_seeds == "sum" else f"{value:.1f}"
            ax.text(j, i, text, ha="center", va="center", fontsize=6,
                    color="white" if value > 0.6 * vmax else "black")
    _class_ticks(ax, names, x=True, y=first)
    if not first:
        ax.set_yticks([])
    ax.set_xlabel(f"{student} prediction")
    if first:
        ax.set_ylabel("teacher prediction")
    ax.set_title(f"{result.label} ({result.over_seeds} over {len(result.seeds)} seeds)",
                 fontsize=10)
    return image


def _difference_heatmap(ax: Axes, difference: np.ndarray, names: tuple[str, ...]) -> object:
    """(teacher vs DS) - (teacher vs NDS), diverging around 0, diagonal masked."""
    shown = np.ma.masked_where(np.eye(len(names), dtype=bool), difference)
    limit = max(float(np.abs(shown).max()), 1.0)
    small = len(names) <= LABELLED_CLASSES
    image = ax.imshow(shown, cmap="RdBu_r", vmin=-limit, vmax=limit,
                      interpolation="nearest" if small else "antialiased")
    ax.set_facecolor("#eeeeee")
    if small:
        for i, j in zip(*np.nonzero(~np.eye(len(names), dtype=bool)), strict=True):
            value = float(difference[i, j])
            if value:
                ax.text(j, i, f"{value:+.0f}" if float(value).is_integer() else f"{value:+.1f}",
                        ha="center", va="center", fontsize=6,
                        color="white" if abs(value) > 0.6 * limit else "black")
    _class_ticks(ax, names, x=True, y=False)
    ax.set_yticks([])
    ax.set_xlabel("student prediction")
    ax.set_title("DS - NDS (red: more disagreement after distillation)", fontsize=10)
    return image


def figure_disagreement(analysis: StudyAnalysis, path: Path) -> FigureFile | None:
    """Fig. 1: teacher vs NDS and teacher vs DS (at the figure temperature) heatmaps, and their
    difference DS - NDS when both exist."""
    temperature, how = analysis.figure_temperature()
    by_label = {(d.pair, d.temperature): d for d in analysis.disagreement}
    panels = [by_label.get(("teacher_vs_nds", None)), by_label.get(("teacher_vs_ds", temperature))]
    shown = [p for p in panels if p is not None and p.skipped is None]
    if not shown:
        return None
    names = analysis.records.class_names
    off_diagonal = np.concatenate([p.matrix[~np.eye(len(names), dtype=bool)] for p in shown])
    # One shared scale so the panels compare; with many classes the top 0.5 % of cells
    # saturate, or a few large cells would leave the rest white.
    vmax = float(off_diagonal.max() if len(names) <= LABELLED_CLASSES
                 else np.percentile(off_diagonal, 99.5))
    both = len(shown) == 2 and shown[0].seeds == shown[1].seeds
    side = 5.2 if len(names) <= LABELLED_CLASSES else 4.6
    columns = len(shown) + (1 if both else 0)
    fig = Figure(figsize=(side * columns + 1.2 * (1 + both), side + 0.6), layout="constrained")
    axes = fig.subplots(1, columns, squeeze=False)[0]
    image = None
    for index, (ax, panel) in enumerate(zip(axes, shown, strict=False)):
        student = "NDS" if panel.pair == "teacher_vs_nds" else "DS"
        image = _heatmap(ax, panel, names, vmax, student, first=index == 0)
    fig.colorbar(image, ax=list(axes[:len(shown)]), shrink=0.8,  # type: ignore[arg-type]
                 label="disagreeing test samples", location="left" if both else "right")
    if both:
        difference = shown[1].matrix.astype(float) - shown[0].matrix.astype(float)
        diff_image = _difference_heatmap(axes[-1], difference, names)
        fig.colorbar(diff_image, ax=axes[-1], shrink=0.8,  # type: ignore[arg-type]
                     label="DS - NDS disagreeing samples")
    study = analysis.records.study
    fig.suptitle(f"Class-wise disagreement: {study.teacher.arch} teacher vs {study.student.arch} "
                 f"students, {study.dataset.name}", fontsize=11)
    save_figure(fig, path)
    t_text = "" if temperature is None else f" at T = {temperature:g}"
    third = (" and their difference DS - NDS (right; same seeds, counts of test samples)"
             if both else "")
    caption = (f"Fig. 1. Class-wise disagreement (counts of test samples, {shown[0].over_seeds} "
               f"over seeds) between the {study.teacher.arch} teacher and the "
               f"{study.student.arch} non-distilled / distilled{t_text} student on "
               f"{study.dataset.name}{third}; diagonal excluded. {how}.")
    return FigureFile(path.name, path, caption)


def figure_class_change(analysis: StudyAnalysis, path: Path) -> FigureFile | None:
    """Fig. 2: heatmap class x temperature of the mean change NDS -> DS, significant marked x."""
    tests = [t for t in analysis.significance.tests if t.comparison == "nds_vs_ds"]
    if not tests or all(t.skipped for t in tests):
        return None
    names = analysis.records.class_names
    change = 100.0 * np.stack([t.mean_change for t in tests], axis=1)  # [C, n_T]
    significant = np.stack([t.significant for t in tests], axis=1)
    limit = float(np.nanmax(np.abs(change))) if np.isfinite(change).any() else 1.0
    many = len(names) > LABELLED_CLASSES
    fig = Figure(figsize=(1.0 + 0.65 * len(tests) + 2.0, 7.0 if many else 0.32 * len(names) + 1.8),
                 layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(np.ma.masked_invalid(change), cmap="RdBu", vmin=-limit, vmax=limit,
                      aspect="auto", interpolation="nearest")
    rows, cols = np.nonzero(significant)
    ax.scatter(cols, rows, marker="x", color="black", s=8 if many else 40,
               linewidths=0.7 if many else 1.5, label="significant")
    ax.set_xticks(np.arange(len(tests)), [f"{t.temperature:g}" for t in tests])
    _class_ticks(ax, names, x=False, y=True)
    ax.set_xlabel("temperature T")
    ax.set_ylabel("class")
    norm = analysis.significance.normalization
    unit = "acc_c / acc" if norm == "ratio" else "acc_c - acc"
    fig.colorbar(image, ax=ax, label=f"mean change of {unit}, DS - NDS (x100)")
    n = max(t.n_distilled for t in tests)
    ax.set_title(f"Class-wise change NDS -> DS (x = significant, {n} seeds)", fontsize=10)
    save_figure(fig, path)
    study = analysis.records.study
    caption = (f"Fig. 2. Per-class change of the normalised accuracy ({unit}) from the "
               f"non-distilled to the distilled {study.student.arch} student on "
               f"{study.dataset.name} over T; x marks classes significant by Welch's test "
               f"(alpha = {analysis.significance.alpha:g}, correction: "
               f"{analysis.significance.correction}). Red: lower after distillation.")
    return FigureFile(path.name, path, caption)


def _reference_line(ax: Axes, mean: float, sd: float, color: str, label: str) -> None:
    if np.isnan(mean):
        return
    ax.axhline(mean, color=color, linestyle="--", linewidth=1.4, label=label)
    if not np.isnan(sd):
        ax.axhspan(mean - sd, mean + sd, color=color, alpha=0.12, linewidth=0)


def figure_accuracy_significance(analysis: StudyAnalysis, path: Path) -> FigureFile | None:
    """Fig. 3: DS test accuracy vs T (mean +- sd) with teacher/NDS lines, #SC and #TC bars."""
    acc = analysis.accuracy
    present = [g for g in acc.distilled if g.n]
    if not present:
        return None
    temperatures = np.array([g.key.temperature for g in acc.distilled], dtype=float)
    positions = np.arange(len(temperatures))
    fig = Figure(figsize=(max(6.0, 0.7 * len(temperatures) + 3.0), 4.6), layout="constrained")
    ax = fig.subplots()
    counts_ax = ax.twinx()
    width = 0.38
    bars: tuple[tuple[float, Comparison, str, str], ...] = (
        (-width / 2, "nds_vs_ds", SC_COLOR, "#SC (NDS vs DS)"),
        (width / 2, "teacher_vs_ds", TC_COLOR, "#TC (teacher vs DS)"),
    )
    for offset, comparison, color, label in bars:
        counts = dict(analysis.significance.counts(comparison))
        values = [counts.get(t) for t in temperatures]
        heights = [np.nan if v is None else v for v in values]
        counts_ax.bar(positions + offset, heights, width=width, color=color, alpha=0.45,
                      label=label)
    counts_ax.set_ylabel("significantly affected classes")
    counts_ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_zorder(counts_ax.get_zorder() + 1)
    ax.patch.set_visible(False)
    means = np.array([100 * g.mean for g in acc.distilled])
    sds = np.array([100 * g.sd for g in acc.distilled])
    ax.errorbar(positions, means, yerr=np.nan_to_num(sds), color=DS_COLOR, marker="o",
                capsize=3, label="DS (mean +- sd)")
    _reference_line(ax, 100 * acc.teacher.mean, 100 * acc.teacher.sd, TEACHER_COLOR, "teacher")
    _reference_line(ax, 100 * acc.nds.mean, 100 * acc.nds.sd, NDS_COLOR, "NDS")
    ax.set_xticks(positions, [f"{t:g}" for t in temperatures])
    ax.set_xlabel("temperature T")
    ax.set_ylabel("test accuracy (%)")
    handles, labels = ax.get_legend_handles_labels()
    more_handles, more_labels = counts_ax.get_legend_handles_labels()
    fig.legend(handles + more_handles, labels + more_labels, fontsize=8,
               loc="outside lower center", ncol=5, frameon=False)
    study = analysis.records.study
    ax.set_title(f"Temperature vs test accuracy / class bias: {study.teacher.arch} -> "
                 f"{study.student.arch}, {study.dataset.name}", fontsize=10)
    save_figure(fig, path)
    caption = (f"Fig. 3. Test accuracy of the distilled {study.student.arch} (mean +- sd over "
               f"seeds) against T, with the teacher and NDS as dashed lines (band: +- sd); bars: "
               f"number of classes significantly affected NDS vs DS (#SC) and teacher vs DS (#TC).")
    return FigureFile(path.name, path, caption)


@dataclass(frozen=True)
class FairnessSeries:
    """What one panel of Fig. 4 plots, in per cent: the DS per T (mean and sd over seeds) and
    the teacher and NDS (mean, sd). ``excess``: the values are the excess over the
    no-group-effect reference, what the fairness claims test; False only where no run has a
    reference (the raw value is then plotted, and the caption says the claims do not test it)."""

    attribute: str
    metric: FairnessMetric
    excess: bool
    ds_means: np.ndarray
    ds_sds: np.ndarray
    teacher: tuple[float, float]
    nds: tuple[float, float]


def fairness_series(analysis: StudyAnalysis, attribute: str, metric: FairnessMetric
                    ) -> FairnessSeries:
    """One panel of Fig. 4: the excess DPD/EOD (value minus the no-group-effect reference) of
    every population, as the claims test it, or the raw value where no reference exists."""
    fairness = analysis.fairness
    assert fairness is not None
    temperatures = [g.key.temperature for g in analysis.accuracy.distilled]
    populations = [fairness.summary(attribute, GroupKey("distilled", t)).excess(metric)
                   for t in temperatures]
    teacher = fairness.summary(attribute, GroupKey("teacher")).excess(metric)
    nds = fairness.summary(attribute, GroupKey("student")).excess(metric)
    excess = not all(np.isnan(m.excess_mean) for m in (*populations, teacher, nds))

    def pair(summary: MetricSummary) -> tuple[float, float]:
        if excess:
            return 100 * summary.excess_mean, 100 * summary.excess_sd
        return 100 * summary.mean, 100 * summary.sd

    ds = [pair(m) for m in populations]
    return FairnessSeries(attribute, metric, excess,
                          np.array([m for m, _ in ds]), np.array([sd for _, sd in ds]),
                          pair(teacher), pair(nds))


def figure_fairness(analysis: StudyAnalysis, path: Path) -> FigureFile | None:
    """Fig. 4: the excess DPD and EOD (%) over the no-group-effect reference vs T per
    sensitive attribute (what the fairness claims test), teacher and NDS as reference lines."""
    fairness = analysis.fairness
    if fairness is None or not fairness.runs:
        return None
    attributes = [a for a in fairness.attributes if any(r.attribute == a for r in fairness.runs)]
    temperatures = [g.key.temperature for g in analysis.accuracy.distilled]
    metrics = fairness.metrics
    fig = Figure(figsize=(5.0 * len(metrics), 3.8 * len(attributes)), layout="constrained")
    axes = fig.subplots(len(attributes), len(metrics), squeeze=False)
    plotted_excess = True
    for row, attribute in zip(axes, attributes, strict=True):
        for ax, metric in zip(row, metrics, strict=True):
            series = fairness_series(analysis, attribute, metric)
            plotted_excess = plotted_excess and series.excess
            title = ("excess " if series.excess else "") + METRIC_LABELS[metric]
            positions = np.arange(len(temperatures))
            ax.errorbar(positions, series.ds_means, yerr=np.nan_to_num(series.ds_sds),
                        color=DS_COLOR, marker="o", capsize=3, label="DS")
            for (mean, sd), color, label in ((series.teacher, TEACHER_COLOR, "teacher"),
                                             (series.nds, NDS_COLOR, "NDS")):
                _reference_line(ax, mean, sd, color, label)
            if series.excess:
                ax.axhline(0.0, color="#444444", linewidth=0.8, linestyle=":",
                           label="no group effect")
            ax.set_xticks(positions, [f"{t:g}" for t in temperatures])
            ax.set_xlabel("temperature T")
            ax.set_ylabel(f"{title} (%)")
            ax.set_title(f"{title} over '{attribute}' (lower is fairer)", fontsize=10)
            ax.legend(fontsize=8)
    save_figure(fig, path)
    study = analysis.records.study
    how = f", one-vs-rest {fairness.aggregate} over classes" if fairness.multiclass else ""
    names = " and ".join(METRIC_NAMES[m] for m in metrics)
    if plotted_excess:
        caption = (f"Fig. 4. Excess {names.lower()} (%, lower is fairer{how}) of the "
                   f"distilled {study.student.arch} against T on {study.dataset.name}: each "
                   "run's value minus what a model with no group effect scores with the same "
                   "predictions on this test set (dotted: 0, no group effect); dashed: teacher "
                   "and NDS (band: +- sd over seeds). This is what the fairness claims test. "
                   "The raw values, in the fairness table, also fall when the students only "
                   "get more accurate, so a raw gap falling with T is not by itself a fairer "
                   "student.")
    else:
        caption = (f"Fig. 4. {names} (%, lower is fairer{how}) of the distilled "
                   f"{study.student.arch} against T on {study.dataset.name}; dashed: teacher "
                   "and NDS (band: +- sd over seeds). Raw values: no run has a no-group-effect "
                   "reference here, so this is not what the fairness claims test (they test "
                   "the excess over that reference) and a gap falling with T may be accuracy "
                   "alone.")
    return FigureFile(path.name, path, caption)


#: In the paper's order (Fig. 1 to 4), which is also the order the report shows them in.
FIGURE_FILES = {
    FIG_DISAGREEMENT: figure_disagreement,
    FIG_CLASS_CHANGE: figure_class_change,
    FIG_ACCURACY: figure_accuracy_significance,
    FIG_FAIRNESS: figure_fairness,
}
FIGURE_ORDER = tuple(FIGURE_FILES)


def write_figures(analysis: StudyAnalysis, out_dir: Path) -> list[FigureFile]:
    """Write every figure the data allows into ``out_dir``; skipped figures are left out."""
    written = []
    for name, draw in FIGURE_FILES.items():
        figure = draw(analysis, out_dir / name)
        if figure is not None:
            vector = vector_path(figure.path)
            written.append(replace(figure, vector=vector) if vector.exists() else figure)
    return written
