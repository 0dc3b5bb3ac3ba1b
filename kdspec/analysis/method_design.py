"""The arms of a methods block, arranged by seed for paired tests between them.

A ``vary { distill { method = [...] } }`` block makes one study per method or control arm; they
share the teachers and the non-distilled students (NDS) by run id, so a seed's NDS and its
distilled students (DS) of every arm start from the same weights and batches. The seed is the
unit: an arm's DS of seed s is compared with the NDS of seed s, or with another arm's DS of
seed s, never with the DS of another seed.

Per seed, an arm's DS values are the mean over the arm's temperatures with DS runs (as the
paper's class claim does): normalised class accuracy ``x_c = mean_T acc_c / acc`` (``ratio``)
or ``mean_T (acc_c - acc)`` (``difference``), overall accuracy ``mean_T acc``, and the worst
class ``mean_T min_c acc_c``. A seed without a DS at every one of those temperatures is left
out of the arm and named.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from kdspec.analysis.accuracy import GroupAccuracy
from kdspec.analysis.class_change import (
    CountTest,
    combined_p,
    paired_class_tests,
    relabelled_count_test,
)
from kdspec.analysis.records import RunPredictions
from kdspec.analysis.significance import normalise_class_accuracy
from kdspec.analysis.study_analysis import StudyAnalysis
from kdspec.distillation_methods import CONTROL_MODELS
from kdspec.plan import Normalization, Study

#: The key a ``vary`` block sets to make one variant per method.
METHOD_KEY = "distill.method"
LABEL_SMOOTHING = "label_smoothing"
RANDOM_TEACHER = "random_teacher"
KD = "kd"


@dataclass(frozen=True)
class SeedArrays:
    """One population of one arm, per seed (seed order): ``x`` ``[n, C]`` normalised class
    accuracy, ``class_acc`` ``[n, C]`` class accuracy, ``acc`` ``[n]`` and ``worst`` ``[n]``
    (fractions), each the mean over the arm's temperatures for a DS; ``runs``: the runs read."""

    label: str
    seeds: tuple[int, ...]
    x: np.ndarray
    class_acc: np.ndarray
    acc: np.ndarray
    worst: np.ndarray
    runs: tuple[RunPredictions, ...]
    left_out: tuple[str, ...] = ()

    @property
    def n(self) -> int:
        return len(self.seeds)


@dataclass(frozen=True)
class MethodArm:
    """One study of the block: its method or control, its analysis and its DS and NDS."""

    method: str
    study: Study
    analysis: StudyAnalysis
    ds: SeedArrays
    nds: SeedArrays

    @property
    def control(self) -> bool:
        return self.method in CONTROL_MODELS

    @property
    def label(self) -> str:
        return f"{self.method} (control)" if self.control else self.method


def population_arrays(groups: Sequence[GroupAccuracy], label: str,
                      normalization: Normalization, runs: Sequence[RunPredictions]
                      ) -> SeedArrays:
    """The seeds that have a run in every one of ``groups`` (one per temperature, or the NDS
    alone), with their values averaged over the groups."""
    groups = [g for g in groups if g.n]
    if not groups:
        empty = np.empty((0, 0))
        return SeedArrays(label, (), empty, empty, np.empty(0), np.empty(0), ())
    every = sorted(set().union(*(g.seeds for g in groups)))
    seeds = [s for s in every if all(s in g.seeds for g in groups)]
    left_out = tuple(f"seed {s}: no {', '.join(g.key.label for g in groups if s not in g.seeds)}"
                     for s in every if s not in seeds)
    rows = [[g.seeds.index(s) for s in seeds] for g in groups]
    x = np.mean([normalise_class_accuracy(g.per_class[r], g.overall[r],
                                          normalization=normalization)
                 for g, r in zip(groups, rows, strict=True)], axis=0)
    class_acc = np.mean([g.per_class[r] for g, r in zip(groups, rows, strict=True)], axis=0)
    acc = np.mean([g.overall[r] for g, r in zip(groups, rows, strict=True)], axis=0)
    worst = np.mean([g.worst_class[r] for g, r in zip(groups, rows, strict=True)], axis=0)
    keys = {g.key for g in groups}
    used = tuple(run for run in runs if run.group in keys and run.seed in seeds)
    return SeedArrays(label, tuple(seeds), np.atleast_2d(x), np.atleast_2d(class_acc),
                      np.atleast_1d(acc), np.atleast_1d(worst), used, left_out)


def method_arm(study: Study, analysis: StudyAnalysis) -> MethodArm:
    """The arm of one variant: its DS (mean over T) and its NDS, per seed."""
    normalization = study.analysis.normalization
    accuracy, runs = analysis.accuracy, analysis.records.runs
    ds = population_arrays(accuracy.distilled, f"DS {study.method.name}", normalization, runs)
    nds = population_arrays([accuracy.nds], "NDS", normalization, runs)
    return MethodArm(study.method.name, study, analysis, ds, nds)


def method_groups(variants: Sequence[Study]) -> list[tuple[tuple[tuple[str, str], ...],
                                                            list[Study]]]:
    """The variants of a block split by their settings other than the method; a group with
    two or more methods is a methods comparison (empty when the block does not vary the
    method)."""
    groups: dict[tuple[tuple[str, str], ...], list[Study]] = {}
    for study in variants:
        others = tuple((k, v) for k, v in study.variant if k != METHOD_KEY)
        groups.setdefault(others, []).append(study)
    return [(k, v) for k, v in groups.items() if len({s.method.name for s in v}) > 1]


@dataclass(frozen=True)
class ClassComparison:
    """An arm's DS against a reference population (NDS or another arm's DS) on the seeds both
    have: per class the mean paired change, Holm-adjusted p over the classes and whether it is
    significant; the relabelled count test; their Bonferroni combination."""

    reference: str
    seeds: tuple[int, ...]
    change: np.ndarray  # [C] mean over seeds of arm - reference
    adjusted: np.ndarray  # [C] Holm over the testable classes (NaN: not testable)
    testable: np.ndarray  # [C] bool
    count: CountTest | None
    p_paired: float
    p_value: float  # combined (Bonferroni over the two tests); NaN: fewer than 2 seeds
    differences: np.ndarray  # [n, C] per-seed arm - reference

    def significant(self, alpha: float) -> np.ndarray:
        return np.nan_to_num(self.adjusted, nan=1.0) < alpha

    def changed(self, alpha: float) -> tuple[int, int]:
        """How many classes rose and fell significantly (after Holm over the classes)."""
        hit = self.significant(alpha)
        return int((hit & (self.change > 0)).sum()), int((hit & (self.change < 0)).sum())


def compare_classes(arm: SeedArrays, reference: SeedArrays, *, alpha: float,
                    permutations: int) -> ClassComparison:
    """The paired class tests of :mod:`kdspec.analysis.class_change` of ``arm`` against
    ``reference`` on their common seeds: per class a paired t-test over seeds of
    ``x_arm - x_ref``, Holm over the classes, p_paired = the smallest adjusted p; the count of
    classes at Welch p < alpha against every split of the 2n models; p = min(1, 2 min(...))."""
    common = [s for s in arm.seeds if s in reference.seeds]
    num_classes = arm.x.shape[1] if arm.n else reference.x.shape[1] if reference.n else 0
    if len(common) < 2:
        nan = np.full(num_classes, np.nan)
        return ClassComparison(reference.label, tuple(common), nan, nan,
                               np.zeros(num_classes, bool), None, np.nan, np.nan,
                               np.empty((len(common), num_classes)))
    a = arm.x[[arm.seeds.index(s) for s in common]]
    r = reference.x[[reference.seeds.index(s) for s in common]]
    differences = a - r
    adjusted, testable = paired_class_tests(differences)
    p_paired = float(np.nanmin(adjusted)) if testable.any() else np.nan
    count = relabelled_count_test(r, a, alpha=alpha, permutations=permutations)
    return ClassComparison(reference.label, tuple(common), differences.mean(axis=0), adjusted,
                           testable, count, p_paired,
                           combined_p(p_paired, count.p_value) if testable.any() else np.nan,
                           differences)
