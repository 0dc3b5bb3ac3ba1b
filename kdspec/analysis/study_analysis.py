"""One result object for one study: every statistic the report shows, computed from records."""

from __future__ import annotations

from dataclasses import dataclass

from kdspec.analysis.accuracy import AccuracyResult, study_accuracy
from kdspec.analysis.attribute_accuracy import AttributeAccuracy, study_attribute_accuracy
from kdspec.analysis.claims import ClaimsResult, study_claims
from kdspec.analysis.disagreement import DisagreementResult, study_disagreement
from kdspec.analysis.fairness import FairnessResult, study_fairness
from kdspec.analysis.individual_fairness import (
    IndividualFairnessResult,
    study_individual_fairness,
)
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
    claims: ClaimsResult
    #: Accuracy within each group of every sensitive attribute (empty without one).
    attribute_accuracy: tuple[AttributeAccuracy, ...] = ()
    #: Individual fairness per run and population (None unless the study declares it).
    individual_fairness: IndividualFairnessResult | None = None

    def figure_temperature(self) -> tuple[float | None, str]:
        """The temperature Fig. 1 shows and how it was picked: the spec's
        ``figure_temperature``; else the one with the most NDS-vs-DS significant classes (ties:
        the higher T); without any test, the highest temperature with DS runs."""
        chosen = self.records.study.analysis.figure_temperature
        if chosen is not None:
            return chosen, "T is set by the spec (analysis figure_temperature)"
        counts = [(n, t) for t, n in self.significance.counts("nds_vs_ds") if n is not None]
        if counts:
            return max(counts)[1], ("T is the temperature with the most NDS-vs-DS significant "
                                    "classes (ties: the higher T; set analysis "
                                    "figure_temperature to choose)")
        present = [g.key.temperature for g in self.accuracy.distilled if g.n]
        if not present:
            return None, ""
        return max(t for t in present if t is not None), (
            "T is the highest temperature with distilled runs (no significance test ran)")


def analyse_study(records: StudyRecords) -> StudyAnalysis:
    """Compute every statistic of the report from the study's records."""
    accuracy = study_accuracy(records)
    significance = study_significance(accuracy, records.study.analysis)
    fairness = study_fairness(records)
    individual = study_individual_fairness(records)
    return StudyAnalysis(
        records=records,
        accuracy=accuracy,
        significance=significance,
        disagreement=study_disagreement(records),
        fairness=fairness,
        claims=study_claims(records, accuracy, significance, fairness, individual=individual),
        attribute_accuracy=study_attribute_accuracy(records),
        individual_fairness=individual,
    )
