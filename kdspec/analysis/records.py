"""Typed records the analysis works on: what was read from MLflow for one study.

The store reader turns MLflow runs and their ``predictions.npz`` artifacts into these frozen
records; every statistic downstream takes them (or arrays cut from them), never MLflow objects.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from kdspec.analysis.study_progress import StudyProgress, complete_progress
from kdspec.plan import Role, Study

#: The three populations the analysis compares. "student" in the plan is the non-distilled
#: student (NDS); "distilled" runs are the distilled students (DS), one group per temperature.
ROLE_LABELS: dict[Role, str] = {"teacher": "teacher", "student": "NDS", "distilled": "DS"}


@dataclass(frozen=True, order=True)
class GroupKey:
    """One population of seeds: a role, and for distilled students one temperature."""

    role: Role
    temperature: float | None = None

    @property
    def label(self) -> str:
        """Human name: ``teacher``, ``NDS`` or ``DS T=4``."""
        base = ROLE_LABELS[self.role]
        return base if self.temperature is None else f"{base} T={self.temperature:g}"


@dataclass(frozen=True)
class StoredIndividualOutputs:
    """What a run stored for individual fairness (see :mod:`kdspec.runtime.individual_outputs`):
    float ``[n, C]`` probabilities on the sampled test images, int ``[P, 2]`` pairs of positions
    into them, float ``[P]`` input distances, the declaration they were made under (JSON) and
    the sampled images' test indices."""

    probabilities: np.ndarray
    pairs: np.ndarray
    distances: np.ndarray
    declaration: str
    #: The test-sample index of each sampled image (row of ``probabilities``).
    indices: np.ndarray


@dataclass(frozen=True)
class RunPredictions:
    """The test predictions of one finished run.

    ``y_true`` and ``y_pred`` are int64 arrays of shape ``[n_test]``; ``attributes`` maps each
    per-sample test attribute (``attr/<name>`` in the artifact) to an int array of the same length.
    """

    kdspec_id: str
    mlflow_run_id: str
    role: Role
    seed: int
    temperature: float | None
    y_true: np.ndarray
    y_pred: np.ndarray
    attributes: dict[str, np.ndarray] = field(default_factory=dict)
    #: Accuracy on the held-out validation split (``val_acc``); None without one.
    val_accuracy: float | None = None
    #: Outputs for individual fairness; None when the run stored none.
    individual: StoredIndividualOutputs | None = None
    #: Why the finished run is suspect, from its ``kdspec.flag.*`` tags: (kind, reason) pairs,
    #: kind ``at_chance`` or ``loss`` (empty: not flagged).
    flags: tuple[tuple[str, str], ...] = ()

    @property
    def group(self) -> GroupKey:
        return GroupKey(self.role, self.temperature)


ProblemKind = Literal["missing", "not_finished", "bad_artifact", "duplicate"]


@dataclass(frozen=True)
class RunProblem:
    """A plan run the report could not use as is (or used with a caveat).

    ``kind``: ``missing`` (no MLflow run with this kdspec id), ``not_finished`` (only RUNNING,
    FAILED or KILLED runs), ``bad_artifact`` (predictions missing or unreadable), ``duplicate``
    (several FINISHED runs: the newest was used; a caveat, not an exclusion).
    """

    kind: ProblemKind
    kdspec_id: str
    role: Role
    seed: int
    temperature: float | None
    reason: str
    mlflow_run_id: str | None = None

    @property
    def excluded(self) -> bool:
        """Whether the run is missing from the analysis (a duplicate is still analysed)."""
        return self.kind != "duplicate"

    def describe(self) -> str:
        """One line naming the run: role, seed, temperature, kdspec id, MLflow id and reason."""
        who = GroupKey(self.role, self.temperature).label
        mlflow_part = f", MLflow run {self.mlflow_run_id}" if self.mlflow_run_id else ""
        return f"{who} seed {self.seed} (kdspec id {self.kdspec_id}{mlflow_part}): {self.reason}"


@dataclass(frozen=True)
class StudyRecords:
    """Everything read from the store for one study.

    ``runs`` holds one record per usable plan run, in plan order; ``problems`` every run that is
    missing or unusable (and duplicates); ``parent_run_id`` the study's parent MLflow run, if any;
    ``progress`` how many planned runs are in each state in the store (None: records not read
    from a store, taken as complete); ``overrides`` the ``--set`` the plan was compiled with.
    """

    study: Study
    runs: tuple[RunPredictions, ...]
    problems: tuple[RunProblem, ...]
    parent_run_id: str | None
    tracking_uri: str
    progress: StudyProgress | None = None
    overrides: tuple[str, ...] = ()

    @property
    def state(self) -> StudyProgress:
        """Where the study stands (complete when the records were not read from a store)."""
        return self.progress or complete_progress(len(self.study.run_ids))

    @property
    def complete(self) -> bool:
        """Whether every planned run is finished and usable: verdicts are final."""
        return self.state.complete

    @property
    def num_classes(self) -> int:
        return self.study.dataset.num_classes

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.study.dataset.class_names

    def group(self, key: GroupKey) -> tuple[RunPredictions, ...]:
        """The runs of one population, in seed order."""
        return tuple(
            sorted((r for r in self.runs if r.group == key), key=lambda r: r.seed)
        )

    def by_seed(self, key: GroupKey) -> dict[int, RunPredictions]:
        """The runs of one population keyed by seed."""
        return {r.seed: r for r in self.group(key)}

    @property
    def flagged(self) -> tuple[RunPredictions, ...]:
        """The used runs that finished but carry a flag (at chance, a loss that never fell)."""
        return tuple(r for r in self.runs if r.flags)

    @property
    def distilled_keys(self) -> tuple[GroupKey, ...]:
        """One key per temperature of the study, in the study's order (present or not)."""
        return tuple(GroupKey("distilled", t) for t in self.study.temperatures)
