"""Synthetic test predictions for a plan, with effects planted on purpose.

Each run's class accuracies are drawn around a per-class profile: the teacher's, the NDS's, and
for a distilled student at temperature T ``NDS_c + w(T) * (teacher_c - NDS_c)`` with ``w`` rising
in T (so #SC rises and #TC falls, the poster's trend). ``hurt_class`` loses ``hurt_amount`` of
accuracy in every distilled student. A binary attribute (half the samples) has a
share ``gap`` of its correct predictions turned into class 0; the gap shrinks with T for DS.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kdspec.analysis.records import RunPredictions, StudyRecords
from kdspec.plan import Plan, Run, Study

Predictions = dict[str, tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]]


@dataclass(frozen=True)
class PlantedEffects:
    """What the synthetic students do differently; defaults give a clear poster-like trend."""

    teacher_acc: float = 0.85
    nds_acc: float = 0.72
    class_spread: float = 0.12  # per-class deviation of the teacher-minus-NDS gap
    seed_noise: float = 0.01  # sd of a run's class accuracy around its profile
    hurt_class: int | None = None
    hurt_amount: float = 0.2
    teacher_gap: float = 0.06
    nds_gap: float = 0.15


def _weight(temperature: float, temperatures: tuple[float, ...]) -> float:
    """How far a DS at T has moved from the NDS towards the teacher: 0.15 .. 0.9."""
    low, high = min(temperatures), max(temperatures)
    share = 0.0 if high == low else (temperature - low) / (high - low)
    return 0.15 + 0.75 * share


def predict_with_accuracy(y_true: np.ndarray, class_acc: np.ndarray, rng: np.random.Generator
                          ) -> np.ndarray:
    """Predictions that are right for sample n with probability ``class_acc[y_true[n]]``."""
    num_classes = class_acc.size
    right = rng.random(y_true.size) < class_acc[y_true]
    wrong = (y_true + rng.integers(1, num_classes, y_true.size)) % num_classes
    return np.where(right, y_true, wrong)


def synthetic_predictions(plan: Plan, study: Study, *, n_test: int, seed: int = 0,
                          effects: PlantedEffects = PlantedEffects()) -> Predictions:
    """``kdspec run id -> (y_true, y_pred, {attribute: ...})`` for every run of the study.

    The attribute is the study's first sensitive attribute, or ``group`` when it has none.
    """
    rng = np.random.default_rng(seed)
    c = study.dataset.num_classes
    attribute = study.fairness.sensitive[0] if study.fairness else "group"
    y_true = rng.integers(0, c, n_test)
    group = (rng.random(n_test) < 0.5).astype(np.int64)
    nds_profile = np.clip(effects.nds_acc + rng.normal(0, 0.08, c), 0.05, 0.97)
    gap = np.clip(effects.teacher_acc - effects.nds_acc
                  + rng.normal(0, effects.class_spread, c), -0.3, 0.4)
    teacher_profile = np.clip(nds_profile + gap, 0.05, 0.99)

    def profile_and_gap(run: Run) -> tuple[np.ndarray, float]:
        if run.role == "teacher":
            return teacher_profile, effects.teacher_gap
        if run.role == "student":
            return nds_profile, effects.nds_gap
        assert run.temperature is not None
        w = _weight(run.temperature, study.temperatures)
        profile = nds_profile + w * (teacher_profile - nds_profile)
        if effects.hurt_class is not None:
            profile = profile.copy()
            profile[effects.hurt_class] -= effects.hurt_amount
        return profile, effects.nds_gap * (1.0 - 0.7 * w)

    out: Predictions = {}
    for run_id in study.run_ids:
        run = plan.run(run_id)
        profile, group_gap = profile_and_gap(run)
        class_acc = np.clip(profile + rng.normal(0, effects.seed_noise, c), 0.01, 0.995)
        y_pred = predict_with_accuracy(y_true, class_acc, rng)
        unfair = (group == 1) & (y_pred == y_true) & (rng.random(n_test) < group_gap)
        y_pred = np.where(unfair, 0, y_pred)
        out[run_id] = (y_true, y_pred, {attribute: group})
    return out


def records_from_predictions(plan: Plan, study: Study, predictions: Predictions
                             ) -> StudyRecords:
    """StudyRecords built straight from synthetic predictions (no MLflow), for the statistics."""
    runs = tuple(
        RunPredictions(kdspec_id=rid, mlflow_run_id=f"mlflow-{rid}", role=plan.run(rid).role,
                       seed=plan.run(rid).seed, temperature=plan.run(rid).temperature,
                       y_true=predictions[rid][0], y_pred=predictions[rid][1],
                       attributes=predictions[rid][2])
        for rid in study.run_ids if rid in predictions
    )
    return StudyRecords(study=study, runs=runs, problems=(), parent_run_id=None,
                        tracking_uri="sqlite:///unused.db")
