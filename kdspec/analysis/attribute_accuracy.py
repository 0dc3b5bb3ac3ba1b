"""Test accuracy within each group of a sensitive attribute, per population of seeds.

DPD and EOD say how unequal a model is; this says where its accuracy is: for every sensitive
attribute of the study and every group (value) of it, the accuracy of each run on the test
samples of that group, then mean and sd over seeds per population (teacher, NDS, DS per T).
A "fairer" distilled student whose every group lost accuracy (levelling down) shows here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kdspec.analysis.records import GroupKey, RunPredictions, StudyRecords


@dataclass(frozen=True)
class PopulationGroupAccuracy:
    """One population's accuracy per group: ``per_run`` has shape ``[n_runs, n_groups]``
    (NaN where a run has no sample of a group), runs in seed order."""

    key: GroupKey
    seeds: tuple[int, ...]
    per_run: np.ndarray

    @property
    def mean(self) -> np.ndarray:
        """Mean over seeds per group (every run has the same test split, so the same groups)."""
        if not len(self.per_run):
            return np.full(self.per_run.shape[1], np.nan)
        return np.asarray(self.per_run.mean(axis=0))

    @property
    def sd(self) -> np.ndarray:
        """Sample sd (ddof = 1) over seeds per group; NaN with fewer than 2 runs."""
        if len(self.per_run) < 2:
            return np.full(self.per_run.shape[1], np.nan)
        return np.asarray(self.per_run.std(axis=0, ddof=1))


@dataclass(frozen=True)
class AttributeAccuracy:
    """Accuracy per group of one sensitive attribute, for every population of the study."""

    attribute: str
    groups: tuple[int, ...]  # the attribute's values present in the test split, ascending
    samples: tuple[int, ...]  # test samples per group
    populations: tuple[PopulationGroupAccuracy, ...]


def run_group_accuracy(run: RunPredictions, values: np.ndarray, groups: tuple[int, ...]
                       ) -> np.ndarray:
    """Accuracy of one run on the test samples of each group (NaN for an empty group)."""
    hits = run.y_true == run.y_pred
    out = np.full(len(groups), np.nan)
    for i, group in enumerate(groups):
        mask = values == group
        if mask.any():
            out[i] = float(hits[mask].mean())
    return out


def attribute_accuracy(records: StudyRecords, attribute: str) -> AttributeAccuracy | None:
    """Accuracy per group of ``attribute`` for every population; None when no run kept it."""
    carrying = [r for r in records.runs if attribute in r.attributes]
    if not carrying:
        return None
    reference = carrying[0].attributes[attribute]
    groups = tuple(int(g) for g in np.unique(reference))
    samples = tuple(int((reference == g).sum()) for g in groups)
    keys = [GroupKey("teacher"), GroupKey("student"), *records.distilled_keys]
    populations = []
    for key in keys:
        runs = [r for r in records.group(key) if attribute in r.attributes]
        per_run = (np.stack([run_group_accuracy(r, r.attributes[attribute], groups)
                             for r in runs]) if runs else np.empty((0, len(groups))))
        populations.append(PopulationGroupAccuracy(key, tuple(r.seed for r in runs), per_run))
    return AttributeAccuracy(attribute, groups, samples, tuple(populations))


def study_attribute_accuracy(records: StudyRecords) -> tuple[AttributeAccuracy, ...]:
    """Accuracy per group of every sensitive attribute the study names (its fairness section's,
    else its dataset's)."""
    study = records.study
    attributes = (study.fairness.sensitive if study.fairness is not None
                  else study.dataset.sensitive)
    found = (attribute_accuracy(records, a) for a in attributes)
    return tuple(a for a in found if a is not None)


__all__ = ["AttributeAccuracy", "PopulationGroupAccuracy", "attribute_accuracy",
           "run_group_accuracy", "study_attribute_accuracy"]
