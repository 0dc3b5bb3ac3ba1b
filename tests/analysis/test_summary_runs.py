"""Seed aggregates in MLflow: one summary run per population under the study's parent run (mean,
sd and n over seeds, rounded), updated rather than duplicated by a second report, and a shared
view of the runs table, linked from the experiment's description, that the real MLflow UI opens
on those runs with their metrics as columns (headless Chromium)."""

from __future__ import annotations

import csv
import re
import shutil
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from kdspec.analysis.records import GroupKey
from kdspec.analysis.study_analysis import analyse_study
from kdspec.analysis.summary_runs import (
    DESCRIPTION_HEADING,
    described,
    summary_name,
    summary_rows,
)
from kdspec.cli import main
from kdspec.tracking import schema
from tests.analysis.conftest import FilledStore, small_study_plan
from tests.analysis.synthetic import (
    PlantedEffects,
    records_from_predictions,
    synthetic_predictions,
)
from tests.chromium import dump_dom, needs_chromium
from tests.mlflow_server import start_server

NAMES = ["summary teacher", "summary non-distilled student", "summary distilled T=2",
         "summary distilled T=4"]


def _summary_runs(client: MlflowClient, store: FilledStore) -> list:  # type: ignore[type-arg]
    experiment = client.get_run(store.parent_run_id).info.experiment_id
    return client.search_runs([experiment], f"tags.`{schema.TAG_KIND}` = 'summary'")


def test_each_population_gets_mean_sd_and_n_rounded() -> None:
    plan = small_study_plan()
    study = plan.studies[0]
    analysis = analyse_study(records_from_predictions(
        plan, study, synthetic_predictions(plan, study, n_test=1500,
                                           effects=PlantedEffects(hurt_class=3))))
    rows = summary_rows(analysis)
    assert [r.name for r in rows] == NAMES
    assert summary_name(GroupKey("distilled", 2.5)) == "summary distilled T=2.5"
    ds = rows[2]
    accuracy = next(g for g in analysis.accuracy.groups if g.key == GroupKey("distilled", 2.0))
    fairness = analysis.fairness.summary("color", GroupKey("distilled", 2.0))
    assert ds.metrics["n"] == 3 and ds.metrics["temperature"] == 2.0
    assert ds.metrics["test_acc_mean"] == round(100 * accuracy.mean, 2)
    assert ds.metrics["test_acc_sd"] == round(100 * accuracy.sd, 2)
    assert ds.metrics["dpd_mean"] == round(100 * fairness.mean("dpd"), 2)
    assert ds.metrics["eod_excess_sd"] == round(100 * fairness.excess("eod").excess_sd, 2)
    assert {"worst_class_acc_mean", "worst_class_acc_sd", "dpd_excess_mean", "eod_mean"} <= \
        set(ds.metrics)
    assert "temperature" not in rows[0].metrics and rows[0].params == {}
    assert ds.params == {"temperature": "0002"}
    assert all(v == round(v, 2) for r in rows for v in r.metrics.values())


def test_a_complete_report_logs_them_under_the_parent_and_a_second_one_updates_them(
        complete_store: FilledStore, complete_report: tuple[Path, int, str, str],
        tmp_path: Path) -> None:
    assert complete_report[1] == 0
    assert "seed summaries in the MLflow UI (make ui): http://127.0.0.1:5000/#/experiments/" \
        in complete_report[3]
    client = MlflowClient(tracking_uri=complete_store.uri)
    runs = _summary_runs(client, complete_store)
    assert sorted(r.info.run_name for r in runs) == sorted(NAMES)
    for run in runs:
        assert run.data.tags["mlflow.parentRunId"] == complete_store.parent_run_id
        assert run.info.status == "FINISHED" and run.data.metrics["n"] == 3
        assert not {schema.TAG_RUN_ID, schema.TAG_ROLE} & set(run.data.tags)  # not a plan run
    with (complete_report[0] / "accuracy.csv").open(newline="") as handle:
        accuracy = {(r["role"], r["temperature"]): r for r in csv.DictReader(handle)}
    ds4 = next(r for r in runs if r.info.run_name == "summary distilled T=4")
    assert ds4.data.metrics["test_acc_mean"] == pytest.approx(
        100 * float(accuracy[("DS", "4.0")]["mean_accuracy"]), abs=0.005)
    assert main(["report", str(complete_store.plan_json), "--tracking-uri",
                 complete_store.uri, "--out", str(tmp_path / "again"), "--quiet"]) == 0
    again = _summary_runs(client, complete_store)
    assert sorted(r.info.run_id for r in again) == sorted(r.info.run_id for r in runs)
    assert len(client.get_metric_history(ds4.info.run_id, "test_acc_mean")) == 1


def test_the_description_links_each_study_once_and_keeps_the_users_text() -> None:
    first = described("", "alpha", "#/experiments/1/runs?viewStateShareKey=a")
    assert first == (f"{DESCRIPTION_HEADING}\n- [study alpha: its summary runs by role and T]"
                     "(#/experiments/1/runs?viewStateShareKey=a)")
    both = described(first, "beta", "#/b")
    again = described(both, "alpha", "#/a2")
    assert again.count("study alpha") == 1 and "#/a2" in again and "#/b" in again
    mine = described("My notes on these runs.", "alpha", "#/a")
    assert mine.startswith("My notes on these runs.\n\n" + DESCRIPTION_HEADING)


def _page_text(page: str) -> str:
    page = re.sub(r"<(style|script)\b.*?</\1>", " ", page, flags=re.S)
    return " ".join(re.sub(r"<[^>]+>", " ", page).split())


@pytest.mark.integration
@pytest.mark.extended  # a browser
@needs_chromium
def test_the_mlflow_ui_shows_the_summary_runs_with_their_columns(
        complete_store: FilledStore, complete_report: tuple[Path, int, str, str],
        tmp_path: Path) -> None:
    """The real UI on the store the report wrote: the experiment page shows the description's
    link (click 2 after opening the experiment), and the link opens the runs table on the
    four summary runs, sorted by T, with n, accuracy and fairness columns."""
    client = MlflowClient(tracking_uri=complete_store.uri)
    experiment = client.get_run(complete_store.parent_run_id).info.experiment_id
    link = re.search(r"\]\((#/experiments/[^)]+)\)",
                     client.get_experiment(experiment).tags[schema.TAG_NOTE])
    assert link is not None
    (tmp_path / "server").mkdir()
    shutil.copy(Path(complete_store.uri.removeprefix("sqlite:///")),
                tmp_path / "server" / "server.db")
    server = start_server(tmp_path / "server")
    try:
        experiment_page = dump_dom(
            f"{server.url}/#/experiments/{experiment}/runs?workflowType=machine_learning",
            tmp_path / "profile-1", budget_ms=30000, timeout_s=120, window="1800,1200",
            compositor=False)
        view = dump_dom(f"{server.url}/{link.group(1)}", tmp_path / "profile-2",
                        budget_ms=30000, timeout_s=120, window="1800,1200", compositor=False)
    finally:
        server.stop()
    assert f'href="{link.group(1).replace("&", "&amp;")}"' in experiment_page
    text = _page_text(view)
    (tmp_path / "view.txt").write_text(text)
    assert "4 matching runs" in text, text[:3000]
    order = [text.index(name) for name in ("summary distilled T=2", "summary distilled T=4")]
    assert order == sorted(order)  # sorted by T
    header = text[text.index(" Metrics ") + len(" Metrics "):text.index(" Hide run ")]
    for column in ("temperature", "n", "test_acc_mean", "test_acc_sd", "worst_class_acc_mean",
                   "dpd_excess_mean", "eod_excess_mean"):
        assert f" {column} " in f" {header} ", (column, header)
    ds4 = next(r for r in _summary_runs(client, complete_store)
               if r.info.run_name == "summary distilled T=4")
    assert f"{ds4.data.metrics['test_acc_mean']:g}" in text
