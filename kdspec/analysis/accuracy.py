"""Overall and per-class test accuracy, per run and per population of seeds."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from kdspec.analysis.records import GroupKey, RunPredictions, StudyRecords


def class_accuracy(y_true: np.ndarray, y_pred: np.ndarray, *, num_classes: int
                   ) -> tuple[float, np.ndarray]:
    """Overall accuracy and per-class accuracy (recall) of one run.

    ``acc = mean(y_pred == y_true)``; ``acc_c = #{y_true = c, y_pred = c} / #{y_true = c}``,
    shape ``[num_classes]``, NaN for a class with no test sample. Counted with ``bincount``.
    """
    correct = y_true == y_pred
    support = np.bincount(y_true, minlength=num_classes)
    hits = np.bincount(y_true[correct], minlength=num_classes)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_class = np.where(support > 0, hits / np.maximum(support, 1), np.nan)
    overall = float(correct.mean()) if correct.size else float("nan")
    return overall, per_class.astype(np.float64)


@dataclass(frozen=True)
class GroupAccuracy:
    """The accuracies of one population of seeds.

    ``overall``: shape ``[n]``, one per seed; ``per_class``: shape ``[n, num_classes]``;
    ``seeds`` and ``run_ids`` (kdspec ids) in the same order.
    """

    key: GroupKey
    seeds: tuple[int, ...]
    run_ids: tuple[str, ...]
    overall: np.ndarray
    per_class: np.ndarray
    #: Accuracy on the held-out validation split per seed (empty when the study has none).
    validation: np.ndarray = field(default_factory=lambda: np.empty(0))

    @property
    def n(self) -> int:
        return len(self.seeds)

    @property
    def mean(self) -> float:
        """Mean overall accuracy over seeds (NaN if there is no run)."""
        return float(self.overall.mean()) if self.n else float("nan")

    @property
    def sd(self) -> float:
        """Sample standard deviation (ddof = 1) over seeds; NaN for fewer than 2 runs."""
        return float(self.overall.std(ddof=1)) if self.n >= 2 else float("nan")

    @property
    def worst_class(self) -> np.ndarray:
        """Each run's lowest per-class accuracy (classes without a test sample ignored),
        shape ``[n]``."""
        if not self.n or not np.isfinite(self.per_class).any():
            return np.full(self.n, np.nan)
        return np.asarray(np.nanmin(self.per_class, axis=1))

    def lowest_class_on_average(self) -> tuple[int, float] | None:
        """The class with the lowest mean accuracy over seeds, and that mean."""
        if not self.n or not np.isfinite(self.per_class).any():
            return None
        means = np.nanmean(self.per_class, axis=0)
        c = int(np.nanargmin(means))
        return c, float(means[c])


def group_accuracy(key: GroupKey, runs: tuple[RunPredictions, ...], *, num_classes: int
                   ) -> GroupAccuracy:
    """Stack the per-run accuracies of one population (runs in seed order)."""
    pairs = [class_accuracy(r.y_true, r.y_pred, num_classes=num_classes) for r in runs]
    overall = np.array([p[0] for p in pairs], dtype=np.float64)
    per_class = (np.stack([p[1] for p in pairs]) if pairs
                 else np.empty((0, num_classes), dtype=np.float64))
    validation = (np.array([r.val_accuracy for r in runs], dtype=np.float64)
                  if runs and all(r.val_accuracy is not None for r in runs) else np.empty(0))
    return GroupAccuracy(key=key, seeds=tuple(r.seed for r in runs),
                         run_ids=tuple(r.kdspec_id for r in runs), overall=overall,
                         per_class=per_class, validation=validation)


@dataclass(frozen=True)
class AccuracyResult:
    """Accuracy of every population of the study: teacher, NDS, and DS per temperature."""

    teacher: GroupAccuracy
    nds: GroupAccuracy
    distilled: tuple[GroupAccuracy, ...]  # one per study temperature, in the study's order

    @property
    def groups(self) -> tuple[GroupAccuracy, ...]:
        return (self.teacher, self.nds, *self.distilled)

    def best_distilled(self) -> GroupAccuracy | None:
        """The temperature with the highest mean DS accuracy (None when no DS run exists)."""
        present = [g for g in self.distilled if g.n]
        return max(present, key=lambda g: g.mean) if present else None


def study_accuracy(records: StudyRecords) -> AccuracyResult:
    """Per-run and per-population accuracy of a study's records."""
    c = records.num_classes

    def build(key: GroupKey) -> GroupAccuracy:
        return group_accuracy(key, records.group(key), num_classes=c)

    return AccuracyResult(
        teacher=build(GroupKey("teacher")),
        nds=build(GroupKey("student")),
        distilled=tuple(build(k) for k in records.distilled_keys),
    )
