"""Seed aggregates as MLflow runs, so the MLflow UI compares the DS with the NDS across T.

For each population of a study (the teacher, the NDS, the DS at each T; a variant of a study
block is a study of its own, with its own parent run), ``kdspec report`` logs one **summary
run** nested under the study's parent run: tag ``kdspec.kind = summary``, named plainly
(``summary teacher``, ``summary non-distilled student``, ``summary distilled T=4``), with the
mean, sd and n over seeds of every headline metric, rounded for reading, so the runs table
shows them as sortable columns:

- ``n`` (seeds), ``temperature`` (the DS's T; also the param ``temperature``, written to sort
  as a number);
- ``test_acc_mean`` / ``_sd``, ``worst_class_acc_mean`` / ``_sd`` (per cent, 2 decimals);
- with sensitive attributes, for the first one ``dpd_mean`` / ``_sd``, ``eod_mean`` / ``_sd``,
  ``dpd_excess_mean`` / ``_sd``, ``eod_excess_mean`` / ``_sd`` (per cent; the excess over the
  no-group-effect reference, what the fairness claims test), and for every other attribute the
  same with ``_<attribute>`` after the metric (``dpd_age_mean``);
- with individual fairness declared, ``individual_fairness_mean`` / ``_sd`` / ``_n`` (4
  significant digits).

A summary run carries none of a plan run's tags (``kdspec.run_id``, ``kdspec.role``, ...): a
search for the study's runs by role, or for ``kdspec.kind = run``, never finds it. It is found
again by its parent and its ``kdspec.summary_key`` (role and T), so
reporting again updates it (new values are logged when they changed; the table shows the
latest) instead of adding another. Only a complete study's report writes them: the numbers of
an incomplete study would read as results.

To show them without setting columns by hand, the report also stores a **shared view** of the
runs table on the experiment (MLflow's ``mlflow.sharedViewState.<key>`` experiment tag: the
study's summary runs only, sorted by T, their metrics as columns) and links it from the
experiment's description, which the UI shows above the runs table: from the experiment list,
one click opens the experiment, a second the link.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass

from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

from kdspec.analysis.records import GroupKey
from kdspec.analysis.study_analysis import StudyAnalysis
from kdspec.plan import stable_hash
from kdspec.tracking import schema
from kdspec.tracking.client import UI_WORKFLOW_QUERY, log_batch, search_runs, tag_filter

#: Decimals of the per-cent metrics; significant digits of I(f).
PERCENT_DECIMALS = 2
SIGNIFICANT_DIGITS = 4
ROLE_NAMES = {"teacher": "teacher", "student": "non-distilled student",
              "distilled": "distilled"}
#: The MLflow UI reads a shared view of an experiment's runs table from this experiment tag
#: prefix plus a key, named in the URL as ``viewStateShareKey``.
SHARED_VIEW_PREFIX = "mlflow.sharedViewState."
#: The line that opens kdspec's part of the experiment description; one link per study under it.
DESCRIPTION_HEADING = "**Seed summaries** (mean, sd and n over seeds; written by `kdspec report`):"
MSG_LINK = "- [study {study}: its summary runs by role and T]({path})"
MSG_NOTE = (
    "kdspec summary of study **{study}**: {population}, mean, sd and n over its {n} seeds of "
    "the headline metrics, written by `kdspec report` (accuracies, DPD and EOD in per cent; "
    "the excess is over the no-group-effect reference, what the report's fairness claims "
    "test). Its runs are the study's runs with role {role}{temperature}.")


@dataclass(frozen=True)
class SummaryRow:
    """One summary run: which population, its name, params and rounded metrics."""

    key: GroupKey
    name: str
    params: dict[str, str]
    metrics: dict[str, float]

    @property
    def summary_key(self) -> str:
        """``teacher:``, ``student:``, ``distilled:4``."""
        t = self.key.temperature
        return f"{self.key.role}:" + ("" if t is None else f"{t:g}")


def summary_name(key: GroupKey) -> str:
    """``summary teacher``, ``summary non-distilled student``, ``summary distilled T=4``."""
    name = f"summary {ROLE_NAMES[key.role]}"
    return name if key.temperature is None else f"{name} T={key.temperature:g}"


def _percent(value: float) -> float | None:
    return None if math.isnan(value) else round(100.0 * value, PERCENT_DECIMALS)


def _significant(value: float) -> float | None:
    if math.isnan(value):
        return None
    return float(f"{value:.{SIGNIFICANT_DIGITS}g}")


def _put(metrics: dict[str, float], name: str, value: float | None) -> None:
    if value is not None:
        metrics[name] = value


def _population_metrics(analysis: StudyAnalysis, key: GroupKey) -> dict[str, float]:
    """Every headline metric of one population, rounded; undefined ones left out."""
    metrics: dict[str, float] = {}
    group = next(g for g in analysis.accuracy.groups if g.key == key)
    metrics["n"] = float(group.n)
    if key.temperature is not None:
        metrics[schema.METRIC_TEMPERATURE] = float(key.temperature)
    _put(metrics, "test_acc_mean", _percent(group.mean))
    _put(metrics, "test_acc_sd", _percent(group.sd))
    worst = group.worst_class
    _put(metrics, "worst_class_acc_mean", _percent(float(worst.mean())) if group.n else None)
    _put(metrics, "worst_class_acc_sd",
         _percent(float(worst.std(ddof=1))) if group.n >= 2 else None)
    fairness = analysis.fairness
    if fairness is not None:
        for index, attribute in enumerate(fairness.attributes):
            summary = fairness.summary(attribute, key)
            suffix = "" if index == 0 else f"_{attribute}"
            for metric in fairness.metrics:
                excess = summary.excess(metric)
                for name, value in ((f"{metric}{suffix}_mean", summary.mean(metric)),
                                    (f"{metric}{suffix}_sd", summary.sd(metric)),
                                    (f"{metric}_excess{suffix}_mean", excess.excess_mean),
                                    (f"{metric}_excess{suffix}_sd", excess.excess_sd)):
                    _put(metrics, name, _percent(value))
    individual = analysis.individual_fairness
    scored = individual.group(key) if individual is not None else None
    if scored is not None and scored.n:
        _put(metrics, "individual_fairness_mean", _significant(scored.mean))
        _put(metrics, "individual_fairness_sd", _significant(scored.sd))
        metrics["individual_fairness_n"] = float(scored.n)
    return metrics


def summary_rows(analysis: StudyAnalysis) -> list[SummaryRow]:
    """One row per population with at least one usable run, in report order."""
    rows = []
    for group in analysis.accuracy.groups:
        if not group.n:
            continue
        key = group.key
        params: dict[str, str] = {}
        if key.temperature is not None:
            params["temperature"] = schema.temperature_param(key.temperature)
        params.update({f"variant.{k}": v for k, v in analysis.records.study.variant})
        rows.append(SummaryRow(key, summary_name(key), params,
                               _population_metrics(analysis, key)))
    return rows


def _existing(client: MlflowClient, experiment_id: str, parent_run_id: str) -> dict[str, str]:
    """The summary runs already under ``parent_run_id``: summary key -> MLflow run id."""
    found = search_runs(client, tag_filter({schema.TAG_KIND: schema.KIND_SUMMARY,
                                            "mlflow.parentRunId": parent_run_id}),
                        experiment_ids=[experiment_id])
    return {r.data.tags.get(schema.TAG_SUMMARY_KEY, ""): r.info.run_id for r in found}


def log_summary_runs(client: MlflowClient, analysis: StudyAnalysis,
                     parent_run_id: str) -> dict[str, str]:
    """Create or update the study's summary runs under its parent run; summary key -> MLflow
    run id. A run whose values are already logged (its ``kdspec.summary_digest``) gets no new
    point."""
    study = analysis.records.study
    experiment_id = client.get_run(parent_run_id).info.experiment_id
    existing = _existing(client, experiment_id, parent_run_id)
    logged: dict[str, str] = {}
    for row in summary_rows(analysis):
        digest = stable_hash(sorted(row.metrics.items()))
        run_id = existing.get(row.summary_key)
        if run_id is None:
            temperature = ("" if row.key.temperature is None
                           else f" at T = {row.key.temperature:g}")
            note = MSG_NOTE.format(study=study.name, population=row.name.removeprefix(
                "summary "), n=int(row.metrics["n"]), role=row.key.role,
                temperature=temperature)
            run = client.create_run(experiment_id, run_name=row.name, tags={
                "mlflow.parentRunId": parent_run_id, schema.TAG_KIND: schema.KIND_SUMMARY,
                schema.TAG_LAYOUT: schema.LAYOUT_VERSION, schema.TAG_STUDY: study.name,
                schema.TAG_SUMMARY_OF: study.study_hash, schema.TAG_SUMMARY_KEY: row.summary_key,
                schema.TAG_NOTE: note})
            run_id = run.info.run_id
            log_batch(client, run_id, params=row.params)
        elif client.get_run(run_id).data.tags.get(schema.TAG_SUMMARY_DIGEST) == digest:
            logged[row.summary_key] = run_id
            continue
        now = int(time.time() * 1000)
        log_batch(client, run_id, metrics=[Metric(k, v, now, 0) for k, v in row.metrics.items()],
                  tags={schema.TAG_SUMMARY_DIGEST: digest})
        client.set_terminated(run_id, status="FINISHED")
        logged[row.summary_key] = run_id
    return logged


#: The view's first columns, in reading order (the table scrolls sideways for the rest): T, n,
#: accuracy, then what the fairness claims test, then the raw values.
LEADING_COLUMNS = ("temperature", "n", "test_acc_mean", "test_acc_sd", "worst_class_acc_mean",
                   "dpd_excess_mean", "dpd_excess_sd", "eod_excess_mean", "eod_excess_sd",
                   "individual_fairness_mean", "individual_fairness_sd", "dpd_mean", "eod_mean")


def column_order(names: set[str]) -> list[str]:
    """The summary metrics as the view shows them: ``LEADING_COLUMNS`` first, the rest by
    name."""
    leading = [name for name in LEADING_COLUMNS if name in names]
    return leading + sorted(names - set(leading))


def view_key(analysis: StudyAnalysis) -> str:
    """The shared view's key of a study's summary runs."""
    return f"kdspec-summary-{analysis.records.study.study_hash[:12]}"


def view_path(experiment_id: str, key: str) -> str:
    """The UI's address of a shared view, relative to the server (``#/experiments/...``)."""
    return f"#/experiments/{experiment_id}/runs?viewStateShareKey={key}&{UI_WORKFLOW_QUERY}"


def publish_summary_view(client: MlflowClient, analysis: StudyAnalysis, experiment_id: str
                         ) -> str:
    """Store the shared view of the study's summary runs on the experiment and link it from the
    experiment's description (kdspec's lines there replaced, the rest kept); returns its
    address relative to the UI."""
    study = analysis.records.study
    metrics = column_order({name for row in summary_rows(analysis) for name in row.metrics})
    columns = [f"metrics.`{name}`" for name in metrics]
    state = {
        "searchFilter": tag_filter({schema.TAG_KIND: schema.KIND_SUMMARY,
                                    schema.TAG_SUMMARY_OF: study.study_hash}),
        "orderByKey": f"metrics.`{schema.METRIC_TEMPERATURE}`", "orderByAsc": True,
        "selectedColumns": columns, "columnOrder": columns,
    }
    key = view_key(analysis)
    client.set_experiment_tag(experiment_id, SHARED_VIEW_PREFIX + key, json.dumps(state))
    path = view_path(experiment_id, key)
    note = client.get_experiment(experiment_id).tags.get(schema.TAG_NOTE, "")
    client.set_experiment_tag(experiment_id, schema.TAG_NOTE,
                              described(note, study.name, path))
    return path


def described(note: str, study: str, path: str) -> str:
    """The experiment description with this study's link under kdspec's heading: a link of
    the same study replaced, other studies' links and the user's own text kept."""
    link = MSG_LINK.format(study=study, path=path)
    own = MSG_LINK.format(study=study, path="")[:-1]  # up to the link's address
    lines = note.splitlines()
    if DESCRIPTION_HEADING not in lines:
        return "\n".join([*lines, *([""] if lines else []), DESCRIPTION_HEADING, link])
    kept = [line for line in lines if not line.startswith(own)]
    at = kept.index(DESCRIPTION_HEADING) + 1
    while at < len(kept) and kept[at].startswith("- [study "):
        at += 1
    return "\n".join([*kept[:at], link, *kept[at:]])
