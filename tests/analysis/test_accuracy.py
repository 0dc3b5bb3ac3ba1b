"""Per-class and per-population accuracy against a hand count."""

from __future__ import annotations

import numpy as np

from kdspec.analysis.accuracy import class_accuracy, study_accuracy
from tests.analysis.synthetic import records_from_predictions, synthetic_predictions
from tests.factories import dataset_spec, tiny_plan


def test_class_accuracy_matches_a_loop_and_marks_empty_classes_nan() -> None:
    rng = np.random.default_rng(3)
    y_true = rng.integers(0, 4, 200)  # class 4 of 5 never occurs
    y_pred = rng.integers(0, 5, 200)
    overall, per_class = class_accuracy(y_true, y_pred, num_classes=5)
    assert overall == np.mean(y_true == y_pred)
    for c in range(4):
        members = y_true == c
        assert per_class[c] == np.mean(y_pred[members] == c)
    assert np.isnan(per_class[4])


def test_group_statistics_use_sample_sd_over_seeds() -> None:
    plan = tiny_plan(dataset=dataset_spec("cifar10"), seeds=(0, 1, 2), temperatures=(2.0,))
    study = plan.studies[0]
    records = records_from_predictions(plan, study, synthetic_predictions(plan, study,
                                                                          n_test=500))
    result = study_accuracy(records)
    per_run = [np.mean(r.y_true == r.y_pred) for r in records.group(result.nds.key)]
    assert result.nds.n == 3
    assert np.isclose(result.nds.mean, np.mean(per_run))
    assert np.isclose(result.nds.sd, np.std(per_run, ddof=1))
    assert result.nds.per_class.shape == (3, 10)
    assert [g.key.temperature for g in result.distilled] == [2.0]
