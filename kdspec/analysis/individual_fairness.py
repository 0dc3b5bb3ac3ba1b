"""Individual fairness of each run, and its summary per population of seeds.

After Dwork et al. (2012), as the paper's authors state it: ``I(f) = mean over pairs (x, x') of
D(f(x), f(x')) / d(x, x')``, lower is fairer. The pairs, their input distances ``d`` and the
model's outputs on the sampled test images are what the run stored
(:mod:`kdspec.runtime.individual_outputs`); the study's ``individual_fairness`` declaration
says what ``f`` and ``D`` are:

- ``probabilities``: ``f(x)`` the softmax vector, ``D`` the total variation distance
  (half the L1 distance, in [0, 1]);
- ``confidence``: ``f(x)`` the top-class probability, ``D`` the absolute difference.

Pairs at input distance 0 (duplicate images) have no ratio and are left out and counted. With
``same_label``, only the stored pairs whose two images share the true class are averaged: an
accurate, confident model's outputs differ across a class boundary by design, and over all
nearest pairs I(f) then mostly counts how often neighbours in input space differ in class. A
constant model scores 0, whatever the pairs. ``I`` falls when a model's outputs become flatter
(a uniform predictor is perfectly "fair"), so each run's mean top-class probability is kept
beside it: a DS whose ``I`` falls with T while its confidence falls too may only be flatter.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np

from kdspec.analysis.paper_results import PaperIndividualFairness, paper_individual_fairness
from kdspec.analysis.records import GroupKey, RunPredictions, StoredIndividualOutputs, StudyRecords
from kdspec.plan import IndividualFairnessSpec, IndividualOutput


@dataclass(frozen=True)
class PairScore:
    """``I(f)`` over one set of pairs: the value, pairs used, pairs left out at distance 0."""

    value: float
    pairs_used: int
    zero_distance: int


def output_differences(probabilities: np.ndarray, pairs: np.ndarray, output: IndividualOutput
                       ) -> np.ndarray:
    """``D(f(x), f(x'))`` for every pair: total variation of the probability vectors, or the
    absolute difference of the top-class probabilities."""
    first, second = probabilities[pairs[:, 0]], probabilities[pairs[:, 1]]
    if output == "probabilities":
        return 0.5 * np.abs(first - second).sum(axis=1)
    return np.abs(first.max(axis=1) - second.max(axis=1))


def individual_fairness(probabilities: np.ndarray, pairs: np.ndarray, distances: np.ndarray,
                        output: IndividualOutput) -> PairScore:
    """Mean of ``D / d`` over the pairs with ``d > 0`` (NaN when no pair has one)."""
    usable = np.isfinite(distances) & (distances > 0)
    if not usable.any():
        return PairScore(math.nan, 0, int((~usable).sum()))
    ratios = output_differences(probabilities, pairs[usable], output) / distances[usable]
    return PairScore(float(ratios.mean()), int(usable.sum()), int((~usable).sum()))


@dataclass(frozen=True)
class RunIndividualFairness:
    """One run's ``I(f)`` and mean top-class probability on the sampled images."""

    kdspec_id: str
    group: GroupKey
    seed: int
    score: PairScore
    confidence: float
    mlflow_run_id: str = ""


@dataclass(frozen=True)
class GroupIndividualFairness:
    """Mean and sample sd over seeds of one population (NaN sd with fewer than 2 runs)."""

    key: GroupKey
    n: int
    mean: float
    sd: float
    confidence: float  # mean over seeds of the runs' mean top-class probability


@dataclass(frozen=True)
class IndividualFairnessResult:
    """Every run's individual fairness, per-population summaries, and what kept runs out."""

    declaration: IndividualFairnessSpec
    runs: tuple[RunIndividualFairness, ...]
    groups: tuple[GroupIndividualFairness, ...]
    left_out: tuple[str, ...]  # one line per run without usable outputs
    paper: PaperIndividualFairness | None

    def group(self, key: GroupKey) -> GroupIndividualFairness | None:
        return next((g for g in self.groups if g.key == key), None)

    def per_seed(self, key: GroupKey) -> dict[int, RunIndividualFairness]:
        return {r.seed: r for r in self.runs if r.group == key}


def _declared(stored: StoredIndividualOutputs, spec: IndividualFairnessSpec) -> bool:
    """Whether the run's pairs were made as the study declares (distance, pairs, samples,
    neighbours; ``output`` and ``same_label`` are choices of the analysis alone)."""
    try:
        made = IndividualFairnessSpec.model_validate(json.loads(stored.declaration))
    except ValueError:
        return False
    return made.stored_part() == spec.stored_part()


def run_individual_fairness(run: RunPredictions, spec: IndividualFairnessSpec
                            ) -> RunIndividualFairness | str:
    """The run's score, or why it has none."""
    who = f"{run.group.label} seed {run.seed} ({run.kdspec_id})"
    stored = run.individual
    if stored is None:
        return (f"{who}: stored no individual-fairness outputs (it finished before the study "
                "declared individual_fairness, or under another study that did not)")
    if not _declared(stored, spec):
        return f"{who}: its pairs were made under another declaration ({stored.declaration})"
    pairs, distances = stored.pairs, stored.distances
    if spec.same_label:
        labels = run.y_true[stored.indices]
        same = labels[pairs[:, 0]] == labels[pairs[:, 1]]
        pairs, distances = pairs[same], distances[same]
    score = individual_fairness(stored.probabilities, pairs, distances, spec.output)
    confidence = float(stored.probabilities.max(axis=1).mean())
    return RunIndividualFairness(run.kdspec_id, run.group, run.seed, score, confidence,
                                 run.mlflow_run_id)


def study_individual_fairness(records: StudyRecords) -> IndividualFairnessResult | None:
    """Individual fairness of every run of a study that declares it (None otherwise)."""
    spec = records.study.individual_fairness
    if spec is None:
        return None
    runs: list[RunIndividualFairness] = []
    left_out: list[str] = []
    for run in records.runs:
        result = run_individual_fairness(run, spec)
        if isinstance(result, str):
            left_out.append(result)
        elif math.isnan(result.score.value):
            left_out.append(f"{run.group.label} seed {run.seed} ({run.kdspec_id}): every pair "
                            "is at input distance 0")
        else:
            runs.append(result)
    keys = [GroupKey("teacher"), GroupKey("student"), *records.distilled_keys]
    groups = []
    for key in keys:
        values = np.array([r.score.value for r in runs if r.group == key])
        confidence = np.array([r.confidence for r in runs if r.group == key])
        groups.append(GroupIndividualFairness(
            key, int(values.size),
            float(values.mean()) if values.size else math.nan,
            float(values.std(ddof=1)) if values.size > 1 else math.nan,
            float(confidence.mean()) if confidence.size else math.nan))
    study = records.study
    return IndividualFairnessResult(
        declaration=spec, runs=tuple(runs), groups=tuple(groups), left_out=tuple(left_out),
        paper=paper_individual_fairness(study.dataset.name, study.teacher.arch,
                                        study.student.arch))
