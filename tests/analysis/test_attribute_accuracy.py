"""Accuracy within each group of a sensitive attribute, and each model's worst class, against
hand counts; and the report's tables and CSV built from them."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from kdspec.analysis.accuracy import study_accuracy
from kdspec.analysis.attribute_accuracy import study_attribute_accuracy
from kdspec.analysis.csv_tables import write_group_accuracy_csv
from kdspec.analysis.report_document import accuracy_section
from kdspec.analysis.study_analysis import analyse_study
from kdspec.plan import FairnessSpec
from tests.analysis.synthetic import records_from_predictions, synthetic_predictions
from tests.factories import dataset_spec, tiny_plan


def _records():  # type: ignore[no-untyped-def]
    plan = tiny_plan(dataset=dataset_spec("cifar10", sensitive=("group",)), seeds=(0, 1, 2),
                     temperatures=(2.0, 4.0), fairness=FairnessSpec(sensitive=("group",)))
    study = plan.studies[0]
    return records_from_predictions(plan, study, synthetic_predictions(plan, study,
                                                                       n_test=600))


def test_group_accuracy_matches_a_hand_count_per_run() -> None:
    records = _records()
    (table,) = study_attribute_accuracy(records)
    assert table.attribute == "group" and table.groups == (0, 1)
    first = records.runs[0]
    values = first.attributes["group"]
    assert table.samples == (int((values == 0).sum()), int((values == 1).sum()))
    for pop in table.populations:
        runs = records.group(pop.key)
        assert pop.seeds == tuple(r.seed for r in runs)
        for run, row in zip(runs, pop.per_run, strict=True):
            for g in (0, 1):
                members = run.attributes["group"] == g
                assert row[g] == np.mean(run.y_pred[members] == run.y_true[members])
        np.testing.assert_allclose(pop.mean, pop.per_run.mean(axis=0))
        np.testing.assert_allclose(pop.sd, pop.per_run.std(axis=0, ddof=1))


def test_the_worst_class_is_each_runs_lowest_class_accuracy() -> None:
    records = _records()
    nds = study_accuracy(records).nds
    for run, worst in zip(records.group(nds.key), nds.worst_class, strict=True):
        by_class = [np.mean(run.y_pred[run.y_true == c] == c) for c in range(10)]
        assert worst == min(by_class)
    lowest = nds.lowest_class_on_average()
    assert lowest is not None
    assert lowest[0] == int(np.argmin(nds.per_class.mean(axis=0)))


def test_the_report_shows_worst_class_and_group_tables_and_writes_their_csv(
        tmp_path: Path) -> None:
    analysis = analyse_study(_records())
    section = accuracy_section(analysis)
    main, by_group = section.tables
    assert "worst class % (mean +- sd)" in main.header
    assert by_group.header[0] == "model (by 'group')" and len(by_group.rows) == 4
    path = write_group_accuracy_csv(analysis, tmp_path)
    assert path is not None
    with path.open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 4 * 3 * 2  # populations x seeds x groups
    run = analysis.records.group(analysis.accuracy.nds.key)[0]
    members = run.attributes["group"] == 1
    row = next(r for r in rows if r["role"] == "NDS" and r["seed"] == str(run.seed)
               and r["group"] == "1")
    assert float(row["accuracy"]) == np.mean(run.y_pred[members] == run.y_true[members])


def test_a_study_without_sensitive_attributes_has_no_group_table() -> None:
    plan = tiny_plan(dataset=dataset_spec("cifar10"), seeds=(0, 1), temperatures=(2.0,))
    study = plan.studies[0]
    records = records_from_predictions(plan, study, synthetic_predictions(plan, study,
                                                                          n_test=200))
    analysis = analyse_study(records)
    assert analysis.attribute_accuracy == ()
    assert len(accuracy_section(analysis).tables) == 1
