"""The report's tables as CSV files: accuracy, significance, fairness, disagreement.

Floats are written with ``repr`` precision; NaN is written as an empty cell; temperatures of
non-distilled roles are empty.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from kdspec.analysis.records import ROLE_LABELS
from kdspec.analysis.study_analysis import StudyAnalysis

Cell = str | int | float | bool | None


def _cell(value: Cell) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "" if math.isnan(value) else repr(value)
    return str(value)


def write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[Cell]]) -> Path:
    """Write ``rows`` under ``header`` (NaN and None as empty cells)."""
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows([_cell(v) for v in row] for row in rows)
    return path


def write_accuracy_csv(analysis: StudyAnalysis, out_dir: Path) -> list[Path]:
    """``accuracy.csv`` (one row per population) and ``accuracy_runs.csv`` (one row per run)."""
    groups = analysis.accuracy.groups
    summary = write_csv(
        out_dir / "accuracy.csv",
        ["role", "temperature", "n", "mean_accuracy", "sd_accuracy", "seeds",
         "mean_worst_class_accuracy", "sd_worst_class_accuracy"],
        ([ROLE_LABELS[g.key.role], g.key.temperature, g.n, g.mean, g.sd,
          " ".join(str(s) for s in g.seeds),
          float(g.worst_class.mean()) if g.n else None,
          float(g.worst_class.std(ddof=1)) if g.n >= 2 else None] for g in groups),
    )
    by_id = {r.kdspec_id: r for r in analysis.records.runs}
    per_run = write_csv(
        out_dir / "accuracy_runs.csv",
        ["role", "temperature", "seed", "kdspec_run_id", "mlflow_run_id", "accuracy"],
        ([ROLE_LABELS[g.key.role], g.key.temperature, seed, rid,
          by_id[rid].mlflow_run_id, float(acc)]
         for g in groups
         for seed, rid, acc in zip(g.seeds, g.run_ids, g.overall, strict=True)),
    )
    return [summary, per_run]


def write_significance_csv(analysis: StudyAnalysis, out_dir: Path) -> Path:
    """One row per temperature, comparison and class."""
    names = analysis.records.class_names
    sig = analysis.significance

    def rows() -> Iterable[Sequence[Cell]]:
        for t in sig.tests:
            for c, name in enumerate(names):
                yield [t.temperature, t.comparison, c, name, t.n_reference, t.n_distilled,
                       sig.normalization, sig.correction, sig.alpha, float(t.statistic[c]),
                       float(t.df[c]), float(t.pvalue[c]), float(t.adjusted[c]),
                       bool(t.significant[c]), bool(t.significant_bh[c]),
                       float(t.mean_change[c]), float(t.ci_low[c]),
                       float(t.ci_high[c]), bool(t.testable[c]), t.skipped]

    return write_csv(
        out_dir / "significance.csv",
        ["temperature", "comparison", "class_index", "class_name", "n_reference",
         "n_distilled", "normalization", "correction", "alpha", "statistic", "df", "p_value",
         "adjusted_p_value", "significant", "significant_bh", "mean_change", "ci_low",
         "ci_high", "testable",
         "skipped"],
        rows(),
    )


def write_fairness_csv(analysis: StudyAnalysis, out_dir: Path) -> Path | None:
    """One row per run and attribute (class empty; with the run's no-group-effect reference,
    excess and group-effect p-value, and its bootstrap range), plus one per class for a
    multiclass target. Values are shares (0..1), not per cent."""
    fairness = analysis.fairness
    if fairness is None:
        return None
    names = analysis.records.class_names

    def rows() -> Iterable[Sequence[Cell]]:
        for r in fairness.runs:
            head = [r.attribute, ROLE_LABELS[r.group.role], r.group.temperature,
                    r.seed, r.kdspec_id, r.mlflow_run_id]
            ref = r.reference
            yield [*head, "", r.dpd, ref.dpd_reference, ref.dpd_excess, ref.dpd_p,
                   r.dpd_ci.low, r.dpd_ci.high, r.eod, ref.eod_reference, ref.eod_excess,
                   ref.eod_p, r.eod_ci.low, r.eod_ci.high]
            if r.dpd_per_class is not None and r.eod_per_class is not None:
                for c, name in enumerate(names):
                    yield [*head, name, float(r.dpd_per_class[c]), None, None, None, None,
                           None, float(r.eod_per_class[c]), None, None, None, None, None]

    return write_csv(
        out_dir / "fairness.csv",
        ["attribute", "role", "temperature", "seed", "kdspec_run_id", "mlflow_run_id", "class",
         "dpd", "dpd_reference", "dpd_excess", "dpd_group_effect_p", "dpd_bootstrap_low",
         "dpd_bootstrap_high", "eod", "eod_reference", "eod_excess", "eod_group_effect_p",
         "eod_bootstrap_low", "eod_bootstrap_high"],
        rows(),
    )


def write_disagreement_csv(analysis: StudyAnalysis, out_dir: Path) -> Path:
    """The non-zero off-diagonal cells of every disagreement matrix (long form)."""
    names = analysis.records.class_names

    def rows() -> Iterable[Sequence[Cell]]:
        for d in analysis.disagreement:
            if d.skipped:
                continue
            # Summed counts are integers; averaged ones are not.
            values = d.matrix.astype(np.int64) if d.over_seeds == "sum" else d.matrix
            rows_i, cols_j = np.nonzero(values)
            head = [d.pair, d.temperature, d.over_seeds, len(d.seeds)]
            # Python scalars in one call each (a million cells at ImageNet scale).
            for i, j, value in zip(rows_i.tolist(), cols_j.tolist(),
                                   values[rows_i, cols_j].tolist(), strict=True):
                yield [*head, names[i], names[j], value]

    return write_csv(
        out_dir / "disagreement.csv",
        ["pair", "temperature", "over_seeds", "n_seeds", "teacher_class", "student_class",
         "value"],
        rows(),
    )


def write_group_accuracy_csv(analysis: StudyAnalysis, out_dir: Path) -> Path | None:
    """``accuracy_by_group.csv``: one row per sensitive attribute, group and run."""
    if not analysis.attribute_accuracy:
        return None

    def rows() -> Iterable[Sequence[Cell]]:
        for table in analysis.attribute_accuracy:
            for pop in table.populations:
                for seed, values in zip(pop.seeds, pop.per_run, strict=True):
                    for group, count, value in zip(table.groups, table.samples, values,
                                                   strict=True):
                        yield [table.attribute, ROLE_LABELS[pop.key.role], pop.key.temperature,
                               seed, group, count, float(value)]

    return write_csv(out_dir / "accuracy_by_group.csv",
                     ["attribute", "role", "temperature", "seed", "group", "test_samples",
                      "accuracy"], rows())


def write_individual_fairness_csv(analysis: StudyAnalysis, out_dir: Path) -> Path | None:
    """``individual_fairness.csv``: one row per run with individual-fairness outputs."""
    result = analysis.individual_fairness
    if result is None:
        return None
    rows = [[ROLE_LABELS[r.group.role], r.group.temperature, r.seed, r.kdspec_id,
             r.score.value, r.score.pairs_used, r.score.zero_distance, r.confidence]
            for r in result.runs]
    return write_csv(out_dir / "individual_fairness.csv",
                     ["role", "temperature", "seed", "kdspec_id", "individual_fairness",
                      "pairs_used", "pairs_at_distance_0", "mean_top_probability"], rows)


def write_tables(analysis: StudyAnalysis, out_dir: Path) -> list[Path]:
    """Every CSV the data allows; returns their paths."""
    paths = write_accuracy_csv(analysis, out_dir)
    by_group = write_group_accuracy_csv(analysis, out_dir)
    if by_group is not None:
        paths.append(by_group)
    paths.append(write_significance_csv(analysis, out_dir))
    fairness = write_fairness_csv(analysis, out_dir)
    if fairness is not None:
        paths.append(fairness)
    paths.append(write_disagreement_csv(analysis, out_dir))
    individual = write_individual_fairness_csv(analysis, out_dir)
    if individual is not None:
        paths.append(individual)
    return paths
