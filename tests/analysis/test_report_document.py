"""The report document follows the spec's options: requested fairness metrics, empty groups."""

from __future__ import annotations

from pathlib import Path

import pytest

from kdspec.analysis.report_builder import summary_metrics, write_report_files
from kdspec.analysis.report_document import build_document
from kdspec.analysis.study_analysis import analyse_study
from kdspec.plan import FairnessSpec
from tests.analysis.synthetic import records_from_predictions, synthetic_predictions
from tests.factories import dataset_spec, tiny_plan


def test_only_the_requested_fairness_metric_is_reported(tmp_path: Path) -> None:
    plan = tiny_plan(dataset=dataset_spec("cifar10", sensitive=("group",)), seeds=(0, 1),
                     temperatures=(2.0, 4.0),
                     fairness=FairnessSpec(sensitive=("group",), metrics=("dpd",)))
    study = plan.studies[0]
    analysis = analyse_study(records_from_predictions(
        plan, study, synthetic_predictions(plan, study, n_test=400)))
    files = write_report_files(analysis, tmp_path)
    assert tmp_path / "fig4_fairness.png" in files
    document = build_document(analysis, [])
    fairness = next(s for s in document.sections if s.title == "Fairness")
    [values] = [t for t in fairness.tables if t.header[:2] == ("attribute", "model")]
    assert values.header == ("attribute", "model", "n", "DPD % (mean +- sd)",
                             "excess DPD % (mean +- sd)", "excess DPD 95 % CI over seeds",
                             "DPD test-set bootstrap")
    assert fairness.finding is not None
    assert "DPD" in fairness.finding and "EOD" not in fairness.finding
    _, per_run = summary_metrics(analysis)
    names = {m.key for metrics in per_run.values() for m in metrics}
    assert names == {"dpd", "dpd_group", "dpd_excess", "dpd_excess_group"}


def test_a_study_without_distilled_runs_still_gets_a_report(tmp_path: Path) -> None:
    plan = tiny_plan(dataset=dataset_spec("cifar10"), seeds=(0, 1), temperatures=(2.0,))
    study = plan.studies[0]
    predictions = synthetic_predictions(plan, study, n_test=300)
    only_baselines = {k: v for k, v in predictions.items() if plan.run(k).role != "distilled"}
    analysis = analyse_study(records_from_predictions(plan, study, only_baselines))
    files = {p.name for p in write_report_files(analysis, tmp_path)}
    # No DS: no Fig. 2-3, but the teacher-vs-NDS disagreement and the accuracy table remain.
    assert "fig1_disagreement.png" in files and "fig3_accuracy_significance.png" not in files
    text = (tmp_path / "report.md").read_text()
    assert "No distilled student could be evaluated" in text
    assert "skipped: fewer than 2 runs on a side (NDS n=2, DS T=2 n=0)" in text


@pytest.mark.parametrize("roles", [("teacher",), ("student",), ("distilled",)])
def test_a_single_population_still_reports_without_warnings(tmp_path: Path,
                                                            roles: tuple[str, ...]) -> None:
    plan = tiny_plan(dataset=dataset_spec("cifar10", sensitive=("group",)), seeds=(0, 1),
                     temperatures=(2.0, 4.0), fairness=FairnessSpec(sensitive=("group",)))
    study = plan.studies[0]
    predictions = {k: v for k, v in synthetic_predictions(plan, study, n_test=300).items()
                   if plan.run(k).role in roles}
    analysis = analyse_study(records_from_predictions(plan, study, predictions))
    write_report_files(analysis, tmp_path)
    text = (tmp_path / "report.md").read_text()
    assert "No class-wise comparison could be tested: fewer than 2 runs on a side" in text
    assert "No disagreement matrix could be computed" in text
    assert "n/a %" not in text
