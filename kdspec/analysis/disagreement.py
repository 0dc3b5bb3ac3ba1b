"""Class-wise disagreement between two models (poster Fig. 1).

For models f and g on the same test samples, ``M[i, j] = #{n : f(x_n) = i, g(x_n) = j}`` for
``i != j``; the diagonal (both predict the same class) is zero. f is always the teacher. Seeds
are paired (the teacher of seed s with the student of seed s) and the per-seed matrices are
summed or averaged over the paired seeds, as the spec's ``disagreement_over_seeds`` says.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from kdspec.analysis.records import GroupKey, StudyRecords
from kdspec.plan import DisagreementPair

MSG_NO_PAIRS = "skipped: no seed has both a {f} run and a {g} run"

PAIR_LABELS: dict[DisagreementPair, str] = {
    "teacher_vs_nds": "teacher vs NDS", "teacher_vs_ds": "teacher vs DS",
}


def disagreement_matrix(f_pred: np.ndarray, g_pred: np.ndarray, *, num_classes: int
                        ) -> np.ndarray:
    """``M[i, j] = #{n : f_pred[n] = i and g_pred[n] = j}``, diagonal set to 0.

    ``f_pred``, ``g_pred``: int arrays ``[n_test]``; returns int64 ``[num_classes, num_classes]``.
    """
    joint = np.bincount(f_pred * num_classes + g_pred, minlength=num_classes * num_classes)
    matrix = joint.reshape(num_classes, num_classes).astype(np.int64)
    np.fill_diagonal(matrix, 0)
    return matrix


@dataclass(frozen=True)
class DisagreementResult:
    """The disagreement of one pair of populations (at one temperature for teacher vs DS).

    ``matrix``: ``[C, C]`` summed or averaged over ``seeds`` (the paired seeds present);
    ``rate``: per paired seed, the share of test samples the two models disagree on, ``[n]``.
    """

    pair: DisagreementPair
    temperature: float | None
    over_seeds: Literal["sum", "mean"]
    seeds: tuple[int, ...]
    matrix: np.ndarray
    rate: np.ndarray
    skipped: str | None = None

    @property
    def label(self) -> str:
        base = PAIR_LABELS[self.pair]
        return base if self.temperature is None else f"{base} T={self.temperature:g}"

    @property
    def mean_rate(self) -> float:
        return float(self.rate.mean()) if self.rate.size else float("nan")

    def largest_cell(self) -> tuple[int, int, float] | None:
        """``(i, j, M[i, j])`` of the largest off-diagonal cell; None when the two models
        agree on every test sample (every off-diagonal cell is 0)."""
        off = self.matrix.astype(np.float64).copy()
        np.fill_diagonal(off, -np.inf)
        flat = int(np.argmax(off))
        i, j = divmod(flat, off.shape[1])
        return None if not self.matrix[i, j] > 0 else (i, j, float(self.matrix[i, j]))


def paired_disagreement(records: StudyRecords, pair: DisagreementPair, student: GroupKey, *,
                        over_seeds: Literal["sum", "mean"]) -> DisagreementResult:
    """Teacher vs one student population, seed by seed, then summed or averaged."""
    c = records.num_classes
    teachers = records.by_seed(GroupKey("teacher"))
    students = records.by_seed(student)
    seeds = tuple(sorted(set(teachers) & set(students)))
    if not seeds:
        return DisagreementResult(
            pair=pair, temperature=student.temperature, over_seeds=over_seeds, seeds=(),
            matrix=np.zeros((c, c), dtype=np.int64), rate=np.empty(0),
            skipped=MSG_NO_PAIRS.format(f="teacher", g=student.label))
    matrices = [disagreement_matrix(teachers[s].y_pred, students[s].y_pred, num_classes=c)
                for s in seeds]
    rate = np.array([float(np.mean(teachers[s].y_pred != students[s].y_pred)) for s in seeds])
    stacked = np.stack(matrices)
    matrix = stacked.sum(axis=0) if over_seeds == "sum" else stacked.mean(axis=0)
    return DisagreementResult(pair=pair, temperature=student.temperature,
                              over_seeds=over_seeds, seeds=seeds, matrix=matrix, rate=rate)


def study_disagreement(records: StudyRecords) -> tuple[DisagreementResult, ...]:
    """Every disagreement pair the study asks for: teacher vs NDS, teacher vs DS per T."""
    options = records.study.analysis
    results: list[DisagreementResult] = []
    for pair in options.disagreement:
        keys = [GroupKey("student")] if pair == "teacher_vs_nds" else list(records.distilled_keys)
        results.extend(
            paired_disagreement(records, pair, key, over_seeds=options.disagreement_over_seeds)
            for key in keys
        )
    return tuple(results)
