"""One result object for one study: every statistic the report shows, computed from records."""

from __future__ import annotations

from dataclasses import dataclass

from kdspec.analysis.accuracy import AccuracyResult, study_accuracy
from kdspec.analysis.disagreement import DisagreementResult, study_disagreement
from kdspec.analysis.fairness import FairnessResult, study_fairness
from kdspec.analysis.records import StudyRecords
from kdspec.analysis.significance import SignificanceResult, study_significance


@dataclass(frozen=True)
class StudyAnalysis:
    """Accuracy, class-wise significance, disagreement and fairness of one study."""

    records: StudyRecords
    accuracy: AccuracyResult
    significance: SignificanceResult
    disagreement: tuple[DisagreementResult, ...]
    fairness: FairnessResult | None

    def figure_temperature(self) -> float | None:
        """The temperature Fig. 1 shows: the one with the most NDS-vs-DS significant classes
        (ties: the higher T); without any test, the highest temperature with DS runs."""
        counts = [(n, t) for t, n in self.significance.counts("nds_vs_ds") if n is not None]
        if counts:
            return max(counts)[1]
        present = [g.key.temperature for g in self.accuracy.distilled if g.n]
        return max(t for t in present if t is not None) if present else None


def analyse_study(records: StudyRecords) -> StudyAnalysis:
    """Compute every statistic of the report from the study's records."""
    accuracy = study_accuracy(records)
    return StudyAnalysis(
        records=records,
        accuracy=accuracy,
        significance=study_significance(accuracy, records.study.analysis),
        disagreement=study_disagreement(records),
        fairness=study_fairness(records),
    )
