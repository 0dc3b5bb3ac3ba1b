"""Build one study's report: read MLflow, analyse, write files, log them back to MLflow.

Files written into the output folder: ``report.md``, ``report.html`` (self-contained), the
figures ``fig*.png`` and the tables ``*.csv``. When the study's parent run exists and every
planned run is finished, these files are logged as its artifacts under ``report/``, the study's
curves as parent-run metrics (#SC/#TC, mean accuracy and mean DPD/EOD per role and T; see
``summary_metrics``), each run's ``dpd``/``eod`` as metrics of that run, and one summary run per
population (mean, sd and n over seeds; :mod:`kdspec.analysis.summary_runs`), so the MLflow UI
can compare them. The report of an incomplete study is logged under ``report-partial/`` only
(:func:`log_partial_report`): it never replaces a complete report, and logs no metric.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

from mlflow.entities import Metric
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from kdspec.analysis.csv_tables import write_tables
from kdspec.analysis.figures import write_figures
from kdspec.analysis.latex_tables import write_latex_tables
from kdspec.analysis.records import GroupKey
from kdspec.analysis.report_document import build_document
from kdspec.analysis.report_html import render_html
from kdspec.analysis.report_markdown import render_markdown
from kdspec.analysis.significance import COUNT_LABELS
from kdspec.analysis.store_reader import RunRead, read_study_records
from kdspec.analysis.study_analysis import StudyAnalysis, analyse_study
from kdspec.analysis.summary_runs import log_summary_runs, publish_summary_view
from kdspec.errors import ReportError
from kdspec.plan import Plan, Study, stable_hash
from kdspec.tracking import schema
from kdspec.tracking.client import log_batch, open_client, quiet_artifacts

MSG_NOTHING_TO_REPORT = (
    "study '{study}': none of its {total} runs can be used ({missing} missing, "
    "{not_finished} not finished, {bad} with unreadable predictions) in {uri}"
)
MSG_CANNOT_WRITE = "cannot write the report into {path}: {error}"
MSG_LOG_FAILED = "the report was written but could not be logged to MLflow run {run}: {error}"
METRIC_PREFIX = {"nds_vs_ds": "n_sc", "teacher_vs_ds": "n_tc"}


@dataclass(frozen=True)
class ReportOutput:
    """What ``build_report`` produced for one study."""

    study: str
    out_dir: Path
    files: tuple[Path, ...]
    analysis: StudyAnalysis
    logged_run_id: str | None
    warnings: tuple[str, ...]
    #: The MLflow UI's shared view of the study's summary runs (relative to the UI's address);
    #: None when none was logged (an incomplete study, --no-log, no parent run).
    summary_view: str | None = None

    @property
    def complete(self) -> bool:
        """Whether the study was complete (its verdicts final)."""
        return self.analysis.records.complete


def _metric_name(prefix: str, temperature: float) -> str:
    return f"{prefix}_T{temperature:g}"


def _per_temperature(prefix: str, temperature: float, value: float, now: int) -> list[Metric]:
    """``<prefix>_T<T>`` (step 0) and, for an integer T, ``<prefix>`` at step T, so the MLflow
    UI can plot the value against T."""
    out = [Metric(_metric_name(prefix, temperature), value, now, 0)]
    if float(temperature).is_integer():
        out.append(Metric(prefix, value, now, int(temperature)))
    return out


def summary_metrics(analysis: StudyAnalysis) -> tuple[list[Metric], dict[str, list[Metric]]]:
    """Parent-run metrics and per-run metrics (dpd/eod) to log.

    Parent: #SC/#TC per T (``n_sc``, ``n_tc``); mean accuracy of the teacher and the NDS
    (``acc_teacher``, ``acc_nds``) and of the DS per T (``acc_ds``); mean DPD/EOD of the
    teacher, the NDS and the DS per T over the first sensitive attribute (``dpd_nds``,
    ``dpd_ds``, ...). Per run: ``dpd``/``eod`` and their excess over the no-group-effect
    reference ``dpd_excess``/``eod_excess`` (first attribute), and each with ``_<attribute>``.
    Shares, not per cent. Individual fairness, when declared: see
    :func:`_individual_fairness_metrics`.
    """
    now = int(time.time() * 1000)
    parent: list[Metric] = []
    for comparison in COUNT_LABELS:
        for temperature, count in analysis.significance.counts(comparison):
            if count is not None:
                parent += _per_temperature(METRIC_PREFIX[comparison], temperature,
                                           float(count), now)
    accuracy = analysis.accuracy
    for name, group in (("acc_teacher", accuracy.teacher), ("acc_nds", accuracy.nds)):
        if group.n:
            parent.append(Metric(name, group.mean, now, 0))
    for group in accuracy.distilled:
        if group.n and group.key.temperature is not None:
            parent += _per_temperature("acc_ds", group.key.temperature, group.mean, now)
    per_run: dict[str, list[Metric]] = {}
    fairness = analysis.fairness
    if fairness is not None:
        first = fairness.attributes[0]
        for metric in fairness.metrics:
            for role, key in (("teacher", GroupKey("teacher")), ("nds", GroupKey("student"))):
                value = fairness.summary(first, key).mean(metric)
                if not math.isnan(value):
                    parent.append(Metric(f"{metric}_{role}", value, now, 0))
            for group in accuracy.distilled:
                value = fairness.summary(first, group.key).mean(metric)
                if not math.isnan(value) and group.key.temperature is not None:
                    parent += _per_temperature(f"{metric}_ds", group.key.temperature, value,
                                               now)
        for row in fairness.runs:
            metrics = per_run.setdefault(row.mlflow_run_id, [])
            for name in fairness.metrics:
                for label, value in ((name, row.value(name)),
                                     (f"{name}_excess", row.excess(name))):
                    if math.isnan(value):
                        continue
                    metrics.append(Metric(f"{label}_{row.attribute}", value, now, 0))
                    if row.attribute == first:
                        metrics.append(Metric(label, value, now, 0))
    parent += _individual_fairness_metrics(analysis, per_run, now)
    return parent, per_run


def _individual_fairness_metrics(analysis: StudyAnalysis, per_run: dict[str, list[Metric]],
                                 now: int) -> list[Metric]:
    """Parent: ``individual_fairness_teacher``/``_nds`` and ``individual_fairness_ds`` per T;
    per run (added to ``per_run``): ``individual_fairness`` and ``mean_top_probability``."""
    result = analysis.individual_fairness
    if result is None:
        return []
    parent: list[Metric] = []
    for group in result.groups:
        if not group.n:
            continue
        if group.key.temperature is None:
            role = "teacher" if group.key.role == "teacher" else "nds"
            parent.append(Metric(f"individual_fairness_{role}", group.mean, now, 0))
        else:
            parent += _per_temperature("individual_fairness_ds", group.key.temperature,
                                       group.mean, now)
    for row in result.runs:
        if row.mlflow_run_id:
            per_run.setdefault(row.mlflow_run_id, []).extend([
                Metric("individual_fairness", row.score.value, now, 0),
                Metric("mean_top_probability", row.confidence, now, 0)])
    return parent


def metrics_digest(parent: list[Metric], per_run: dict[str, list[Metric]]) -> str:
    """A hash of every summary value (not its timestamp): the same report logs no new points."""
    payload = {"parent": sorted((m.key, m.value, m.step) for m in parent),
               "runs": {run: sorted((m.key, m.value, m.step) for m in metrics)
                        for run, metrics in per_run.items()}}
    return stable_hash(payload)


def log_partial_report(client: MlflowClient, analysis: StudyAnalysis, files: tuple[Path, ...],
                       parent_run_id: str) -> None:
    """An incomplete study's report: its files under ``report-partial/`` of the parent run and
    the tag ``kdspec.report_partial`` saying where the study stood; no metric and no summary
    run (they would read as the study's results), and nothing under ``report/``, which holds
    the last complete report, if any."""
    with quiet_artifacts():
        for path in files:
            client.log_artifact(parent_run_id, str(path),
                                artifact_path=schema.ARTIFACT_PARTIAL_REPORT_DIR)
    client.set_tag(parent_run_id, schema.TAG_REPORT_PARTIAL,
                   analysis.records.state.headline())


def log_report(client: MlflowClient, analysis: StudyAnalysis, files: tuple[Path, ...],
               parent_run_id: str) -> str | None:
    """Log a complete study's report files under ``report/`` of the parent run, and the
    summary metrics unless the parent run's ``kdspec.report_digest`` says these very values
    are logged already (metrics append to a history: reporting twice must not draw every point
    twice), and the summary runs with their shared view in the UI, whose address (relative to
    the UI) it returns. An incomplete study's report goes to :func:`log_partial_report`
    instead (None)."""
    if not analysis.records.complete:
        log_partial_report(client, analysis, files, parent_run_id)
        return None
    with quiet_artifacts():
        for path in files:
            client.log_artifact(parent_run_id, str(path),
                                artifact_path=schema.ARTIFACT_REPORT_DIR)
    if schema.TAG_REPORT_PARTIAL in client.get_run(parent_run_id).data.tags:
        client.delete_tag(parent_run_id, schema.TAG_REPORT_PARTIAL)
    log_summary_runs(client, analysis, parent_run_id)
    view = publish_summary_view(client, analysis,
                                client.get_run(parent_run_id).info.experiment_id)
    parent, per_run = summary_metrics(analysis)
    digest = metrics_digest(parent, per_run)
    if client.get_run(parent_run_id).data.tags.get(schema.TAG_REPORT_DIGEST) == digest:
        return view
    for run_id, metrics in [(parent_run_id, parent), *per_run.items()]:
        log_batch(client, run_id, metrics=metrics)
    client.set_tag(parent_run_id, schema.TAG_REPORT_DIGEST, digest)
    return view


def write_report_files(analysis: StudyAnalysis, out_dir: Path) -> tuple[Path, ...]:
    """Figures, CSV tables, report.md and report.html into ``out_dir`` (created)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    figures = write_figures(analysis, out_dir)
    tables = write_tables(analysis, out_dir) + write_latex_tables(analysis, out_dir)
    document = build_document(analysis, figures)
    markdown = out_dir / "report.md"
    markdown.write_text(render_markdown(document), encoding="utf-8")
    html = out_dir / "report.html"
    html.write_text(render_html(document), encoding="utf-8")
    return (markdown, html, *(p for f in figures for p in f.files), *tables)


def build_report(plan: Plan, study: Study, *, tracking_uri: str, out_dir: Path,
                 log_to_mlflow: bool = True,
                 already_read: dict[str, RunRead] | None = None) -> ReportOutput:
    """Write the report of one study into ``out_dir`` (created) and log it to MLflow.

    ``already_read``: the runs read for earlier studies from the same store (see
    ``read_study_records``). Raises ReportError when not a single run of the study can be used.
    """
    records = read_study_records(plan, study, tracking_uri=tracking_uri,
                                 already_read=already_read)
    if not records.runs:
        kinds = [p.kind for p in records.problems]
        raise ReportError(MSG_NOTHING_TO_REPORT.format(
            study=study.name, total=len(study.run_ids), missing=kinds.count("missing"),
            not_finished=kinds.count("not_finished"), bad=kinds.count("bad_artifact"),
            uri=tracking_uri))
    analysis = analyse_study(records)
    try:
        files = write_report_files(analysis, out_dir)
    except OSError as err:
        raise ReportError(MSG_CANNOT_WRITE.format(path=out_dir, error=err.strerror or err)
                          ) from err
    warnings: list[str] = []
    logged = view = None
    if log_to_mlflow and records.parent_run_id:
        try:
            view = log_report(open_client(tracking_uri, create=False), analysis, files,
                              records.parent_run_id)
            logged = records.parent_run_id
        except (MlflowException, OSError) as err:
            warnings.append(MSG_LOG_FAILED.format(run=records.parent_run_id,
                                                  error=str(err).splitlines()[0]))
    return ReportOutput(study=study.name, out_dir=out_dir, files=files, analysis=analysis,
                        logged_run_id=logged, warnings=tuple(warnings), summary_view=view)
