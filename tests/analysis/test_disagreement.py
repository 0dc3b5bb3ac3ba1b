"""Disagreement matrices against a hand count, and the over-seeds sum/mean."""

from __future__ import annotations

import numpy as np

from kdspec.analysis.disagreement import MSG_NO_PAIRS, disagreement_matrix, study_disagreement
from kdspec.analysis.records import GroupKey, StudyRecords
from kdspec.plan import AnalysisSpec
from tests.analysis.synthetic import records_from_predictions, synthetic_predictions
from tests.factories import dataset_spec, tiny_plan


def test_matrix_matches_a_hand_count() -> None:
    f = np.array([0, 0, 1, 2, 2, 2, 1])
    g = np.array([0, 1, 1, 0, 1, 1, 2])
    # Off-diagonal pairs (f, g): (0,1), (2,0), (2,1), (2,1), (1,2); (0,0) and (1,1) agree.
    expected = np.array([[0, 1, 0],
                         [0, 0, 1],
                         [1, 2, 0]])
    np.testing.assert_array_equal(disagreement_matrix(f, g, num_classes=3), expected)


def test_matrix_equals_a_loop_on_random_predictions() -> None:
    rng = np.random.default_rng(5)
    f, g = rng.integers(0, 7, 1000), rng.integers(0, 7, 1000)
    loop = np.zeros((7, 7), dtype=np.int64)
    for i, j in zip(f, g, strict=True):
        if i != j:
            loop[i, j] += 1
    np.testing.assert_array_equal(disagreement_matrix(f, g, num_classes=7), loop)


def _records(over_seeds: str, drop_teacher_seed: int | None = None):
    analysis = AnalysisSpec(disagreement_over_seeds=over_seeds)  # type: ignore[arg-type]
    plan = tiny_plan(dataset=dataset_spec("cifar10"), seeds=(0, 1, 2), temperatures=(2.0, 4.0),
                     analysis=analysis)
    study = plan.studies[0]
    preds = synthetic_predictions(plan, study, n_test=400)
    if drop_teacher_seed is not None:
        preds = {k: v for k, v in preds.items()
                 if not (plan.run(k).role == "teacher" and plan.run(k).seed == drop_teacher_seed)}
    return records_from_predictions(plan, study, preds)


def test_seeds_are_paired_then_summed_or_averaged() -> None:
    summed = {d.label: d for d in study_disagreement(_records("sum"))}
    averaged = {d.label: d for d in study_disagreement(_records("mean"))}
    records = _records("sum")
    teacher = records.by_seed(GroupKey("teacher"))
    ds = records.by_seed(records.distilled_keys[1])
    by_hand = sum(disagreement_matrix(teacher[s].y_pred, ds[s].y_pred, num_classes=10)
                  for s in (0, 1, 2))
    np.testing.assert_array_equal(summed["teacher vs DS T=4"].matrix, by_hand)
    np.testing.assert_allclose(averaged["teacher vs DS T=4"].matrix, by_hand / 3)
    rates = [np.mean(teacher[s].y_pred != ds[s].y_pred) for s in (0, 1, 2)]
    assert np.isclose(summed["teacher vs DS T=4"].mean_rate, np.mean(rates))
    assert set(summed) == {"teacher vs NDS", "teacher vs DS T=2", "teacher vs DS T=4"}


def test_a_seed_without_its_teacher_is_left_out_of_the_pairs() -> None:
    results = study_disagreement(_records("sum", drop_teacher_seed=1))
    assert all(d.seeds == (0, 2) for d in results)


def test_no_teacher_at_all_skips_with_a_reason() -> None:
    records = _records("sum")
    no_teacher = StudyRecords(
        study=records.study, runs=tuple(r for r in records.runs if r.role != "teacher"),
        problems=(), parent_run_id=None, tracking_uri=records.tracking_uri)
    results = study_disagreement(no_teacher)
    assert results[0].skipped == MSG_NO_PAIRS.format(f="teacher", g="NDS")
