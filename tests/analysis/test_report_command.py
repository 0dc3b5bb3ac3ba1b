"""`kdspec report` end to end against sqlite stores the tests filled themselves."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from kdspec.analysis.records import GroupKey
from kdspec.cli import main
from kdspec.plan import Plan
from tests.analysis.conftest import FilledStore
from tests.analysis.mlflow_store import log_study, open_client
from tests.analysis.synthetic import synthetic_predictions
from tests.factories import tiny_plan

REPORT_FILES = {
    "report.md", "report.html", "accuracy.csv", "accuracy_runs.csv", "significance.csv",
    "fairness.csv", "disagreement.csv", "fig1_disagreement.png", "fig2_class_change.png",
    "fig3_accuracy_significance.png", "fig4_fairness.png",
}


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_complete_study_writes_every_file(complete_report: tuple[Path, int, str, str]) -> None:
    out, code, stdout, stderr = complete_report
    assert code == 0 and stdout == ""
    assert "12 of 12 runs" in stderr
    assert {p.name for p in out.iterdir()} >= REPORT_FILES


def test_accuracy_csv_matches_the_logged_predictions(
        complete_store: FilledStore, complete_report: tuple[Path, int, str, str]) -> None:
    out = complete_report[0]
    rows = {(r["role"], r["temperature"]): r for r in _rows(out / "accuracy.csv")}
    plan, study = complete_store.plan, complete_store.study
    accs = [np.mean(complete_store.predictions[r.id][0] == complete_store.predictions[r.id][1])
            for r in plan.runs_of(study, "distilled", 4.0)]
    row = rows[("DS", "4.0")]
    assert int(row["n"]) == 3
    assert float(row["mean_accuracy"]) == pytest.approx(np.mean(accs))
    assert float(row["sd_accuracy"]) == pytest.approx(np.std(accs, ddof=1))


def test_significance_csv_has_one_row_per_temperature_comparison_and_class(
        complete_report: tuple[Path, int, str, str]) -> None:
    rows = _rows(complete_report[0] / "significance.csv")
    assert len(rows) == 2 * 2 * 10
    cat = [r for r in rows if r["class_name"] == "circle" and r["comparison"] == "nds_vs_ds"]
    assert [r["significant"] for r in cat] == ["true", "true"]
    assert all(float(r["mean_change"]) < 0 and float(r["ci_high"]) < 0 for r in cat)


def test_report_text_states_options_n_and_findings(
        complete_report: tuple[Path, int, str, str]) -> None:
    text = (complete_report[0] / "report.md").read_text()
    for needed in ("alpha = 0.05", "correction: none", "normalisation 'ratio'",
                   "n per group (runs used): teacher: 3, NDS: 3, DS T=2: 3, DS T=4: 3",
                   "sum over paired seeds", "'circle' is significant at 2 of 2 temperatures",
                   "## Fairness", "fig1_disagreement.png"):
        assert needed in text, needed
    assert text.count("**Main finding.**") == 8  # every section but Setup
    first_screen = text[:text.index("## Setup")]
    assert "What is Left After Distillation" in first_screen and "TMLR 2025" in first_screen
    assert "NDS: non-distilled student" in first_screen and "| claim of the paper |" in first_screen
    assert "## The paper's claims, tested on this study" in text


def test_summary_metrics_and_report_are_logged_to_mlflow(
        complete_store: FilledStore, complete_report: tuple[Path, int, str, str]) -> None:
    out = complete_report[0]
    client = MlflowClient(tracking_uri=complete_store.uri)
    parent = client.get_run(complete_store.parent_run_id)
    rows = _rows(out / "significance.csv")
    n_sc_t2 = sum(r["significant"] == "true" for r in rows
                  if r["comparison"] == "nds_vs_ds" and r["temperature"] == "2.0")
    assert parent.data.metrics["n_sc_T2"] == n_sc_t2
    assert {"n_tc_T2", "n_sc_T4", "n_tc_T4", "n_sc", "n_tc"} <= set(parent.data.metrics)
    logged = {a.path for a in client.list_artifacts(complete_store.parent_run_id, "report")}
    assert {f"report/{name}" for name in REPORT_FILES} <= logged
    fairness = [r for r in _rows(out / "fairness.csv") if r["role"] == "DS" and not r["class"]]
    ds_run = client.get_run(fairness[0]["mlflow_run_id"])
    assert ds_run.data.metrics["dpd"] == pytest.approx(float(fairness[0]["dpd"]))
    assert ds_run.data.metrics["eod_color"] == pytest.approx(float(fairness[0]["eod"]))


def test_the_study_curves_are_on_the_parent_run_and_a_second_report_adds_no_points(
        complete_store: FilledStore, complete_report: tuple[Path, int, str, str],
        tmp_path: Path) -> None:
    out = complete_report[0]
    client = MlflowClient(tracking_uri=complete_store.uri)
    parent_id = complete_store.parent_run_id
    metrics = client.get_run(parent_id).data.metrics
    accuracy = {(r["role"], r["temperature"]): float(r["mean_accuracy"])
                for r in _rows(out / "accuracy.csv")}
    assert metrics["acc_nds"] == pytest.approx(accuracy[("NDS", "")])
    assert metrics["acc_teacher"] == pytest.approx(accuracy[("teacher", "")])
    assert metrics["acc_ds_T4"] == pytest.approx(accuracy[("DS", "4.0")])
    history = client.get_metric_history(parent_id, "acc_ds")
    assert sorted(m.step for m in history) == [2, 4]
    assert {"dpd_nds", "eod_teacher", "dpd_ds_T2", "eod_ds"} <= set(metrics)
    # The same report again: same values, so no second point per step.
    assert main(["report", str(complete_store.plan_json), "--tracking-uri",
                 complete_store.uri, "--out", str(tmp_path / "again"), "--quiet"]) == 0
    assert len(client.get_metric_history(parent_id, "acc_ds")) == 2
    assert len(client.get_metric_history(parent_id, "n_sc")) == 2


def test_partial_study_reports_what_it_can_and_names_what_is_missing(
        messy_store: tuple[str, Plan, dict[str, str]], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    uri, plan, ids = messy_store
    plan_json = tmp_path / "plan.json"
    plan_json.write_text(plan.to_json())
    out = tmp_path / "report"
    assert main(["report", str(plan_json), "--tracking-uri", uri, "--out", str(out),
                 "--no-log"]) == 3  # reported, but incomplete
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err and captured.out == ""
    text = (out / "report.md").read_text()
    assert text.startswith("**Incomplete: 10 of 12 runs finished: 1 interrupted or failed, "
                           "1 not started, 2 finished but unusable.")
    for key in ("missing", "failed", "corrupt", "other_set"):
        assert ids[key] in text, key
    assert ids["mlflow:corrupt"] in text
    assert "8 of 12 planned runs" in text and "4 are missing or unusable" in text
    # Every DS run at T = 4 is unusable: its comparisons are skipped, with the reason.
    assert "skipped: fewer than 2 runs on a side (NDS n=3, DS T=4 n=0)" in text
    assert "FINISHED MLflow runs share this kdspec id" in text
    significance = _rows(out / "significance.csv")
    skipped = [r for r in significance if r["temperature"] == "4.0"]
    assert skipped and all(r["skipped"] and r["significant"] == "false" for r in skipped)
    assert (out / "fig2_class_change.png").exists()


def test_nothing_to_report_is_one_error_line_and_exit_1(
        complete_store: FilledStore, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = tiny_plan(name="never-run", seeds=(7, 8))  # run ids the store has never seen
    plan_json = tmp_path / "plan.json"
    plan_json.write_text(other.to_json())
    code = main(["report", str(plan_json), "--tracking-uri", complete_store.uri,
                 "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith("kdspec report: error: study 'never-run': none of its")
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_default_out_dir_is_reports_slash_spec_slash_study(complete_store: FilledStore,
                                                            tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["report", str(complete_store.plan_json), "--tracking-uri",
                 complete_store.uri, "--quiet", "--no-log"]) == 0
    assert (tmp_path / "reports" / complete_store.plan_json.stem / complete_store.study.name
            / "report.html").exists()
    assert GroupKey("distilled", 2.0).label == "DS T=2"


def test_an_unwritable_out_dir_is_one_error_line(
        complete_store: FilledStore, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    code = main(["report", str(complete_store.plan_json), "--tracking-uri",
                 complete_store.uri, "--out", str(blocker / "report"), "--no-log"])
    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith(f"kdspec report: error: cannot write the report into {blocker}")
    assert "Traceback" not in err


def test_disagreement_csv_holds_the_summed_hand_count(
        complete_store: FilledStore, complete_report: tuple[Path, int, str, str]) -> None:
    plan, study, preds = complete_store.plan, complete_store.study, complete_store.predictions
    teachers = {r.seed: preds[r.id][1] for r in plan.runs_of(study, "teacher")}
    students = {r.seed: preds[r.id][1] for r in plan.runs_of(study, "distilled", 2.0)}
    cat, dog = 3, 5
    by_hand = sum(int(np.sum((teachers[s] == cat) & (students[s] == dog))) for s in teachers)
    rows = _rows(complete_report[0] / "disagreement.csv")
    row = next(r for r in rows if r["pair"] == "teacher_vs_ds" and r["temperature"] == "2.0"
               and r["teacher_class"] == "circle" and r["student_class"] == "rhombus")
    assert int(row["value"]) == by_hand > 0
    assert not any(r["teacher_class"] == r["student_class"] for r in rows)


def test_a_teacher_shared_by_two_studies_is_downloaded_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = tiny_plan(name="first", student_arch="lenet5")
    second = tiny_plan(name="second", student_arch="resnet20")
    runs = {r.id: r for r in (*first.runs, *second.runs)}
    plan = Plan(studies=(first.studies[0], second.studies[0]), runs=tuple(runs.values()))
    teachers = {r.id for r in plan.runs if r.role == "teacher"}
    assert teachers <= set(plan.studies[0].run_ids) & set(plan.studies[1].run_ids)
    client, uri = open_client(tmp_path)
    for index, study in enumerate(plan.studies):
        log_study(client, plan, study, tmp_path / "artifacts",
                  synthetic_predictions(plan, study, n_test=200),
                  skip=frozenset(teachers) if index else frozenset())
    downloads: list[str] = []
    original = MlflowClient.download_artifacts

    def counting(self: MlflowClient, run_id: str, path: str, dst_path: str | None = None) -> str:
        downloads.append(run_id)
        return original(self, run_id, path, dst_path)

    monkeypatch.setattr(MlflowClient, "download_artifacts", counting)
    plan_json = tmp_path / "plan.json"
    plan_json.write_text(plan.to_json())
    assert main(["report", str(plan_json), "--tracking-uri", uri, "--out",
                 str(tmp_path / "out"), "--no-log", "--quiet"]) == 0
    assert len(downloads) == len(set(downloads)) == len(plan.runs)
    for study in plan.studies:
        assert (tmp_path / "out" / study.name / "report.md").exists()


def test_plan_pilot_reads_the_finished_runs_and_says_how_many_seeds_each_claim_needs(
        complete_store: FilledStore, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", str(complete_store.plan_json), "--pilot", "--tracking-uri",
                 complete_store.uri]) == 0
    out = capsys.readouterr().out
    assert f"pilot e2e: 12 of 12 runs FINISHED in {complete_store.uri} (seeds 0, 1, 2)" in out
    pilot = out[out.index("pilot e2e"):]
    assert pilot.count("  - ") == 8  # 4 class claims + 2 fairness claims x 2 metrics
    assert pilot.count("seeds for 80 % power:") == 8
    assert "for the paper's effect" not in pilot  # resnet56 -> resnet20: not a Table 2 design
    client, empty = open_client(tmp_path)
    client.search_experiments()  # creates the (empty) store
    assert main(["plan", str(complete_store.plan_json), "--pilot", "--tracking-uri",
                 empty]) == 0
    assert "no FINISHED run of the study" in capsys.readouterr().out
