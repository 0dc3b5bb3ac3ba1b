"""Calibration of the per-method claims: each simulated block (``bench/method_scenarios.py``)
is analysed by the report's own statistics (``study_accuracy``, ``study_significance``,
``study_fairness`` per arm, then :func:`kdspec.analysis.method_claims.method_claims`, Holm over
the block) and the verdicts tallied per arm and claim.

Shared runs are analysed once: a run's DPD/EOD and their no-group-effect reference depend only
on its predictions (the reference's permutations are seeded), so the NDS's fairness, computed
once, is the same as each arm's report computes; the teachers' fairness is never read by a
claim and is not computed. Everything else is per arm, as ``kdspec report`` does it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from bench.method_scenarios import (
    PLANTED_TRUE,
    MethodsScenario,
    methods_plan,
    simulate_block,
)
from kdspec.analysis.accuracy import study_accuracy
from kdspec.analysis.claims import ClaimsResult
from kdspec.analysis.fairness import study_fairness
from kdspec.analysis.method_claims import method_claims
from kdspec.analysis.method_design import method_arm
from kdspec.analysis.significance import study_significance
from kdspec.analysis.study_analysis import StudyAnalysis

#: The claim kinds tallied per arm (columns of the calibration table).
KINDS = ("class change", "bias w/o accuracy", "fairer DPD", "fairer EOD",
         "vs label_smoothing", "vs random_teacher")


def kind_key(kind: str, claim: str) -> str:
    """The column of a claim: its kind for the comparisons with a control, else the paper's
    claim it is."""
    if kind != "paper":
        return kind
    text = claim.lower()
    for key, words in (("class change", "beyond chance"), ("bias w/o accuracy", "class bias"),
                       ("fairer DPD", "dpd below"), ("fairer EOD", "eod below")):
        if words in text:
            return key
    return "other"


def block_verdicts(scenario: MethodsScenario, index: int, *, permutations: int
                   ) -> list[tuple[str, str, bool]]:
    """One simulated block: (arm, claim kind, supported) for every claim with a p-value."""
    plan = methods_plan(scenario, permutations=permutations)
    rng = np.random.default_rng([index, sum(map(ord, scenario.name))])
    records = simulate_block(scenario, plan, rng)
    first = records[plan.studies[0].name]
    nds_fairness = study_fairness(replace(first, runs=tuple(r for r in first.runs
                                                             if r.role == "student")))
    arms = []
    for study in plan.studies:
        arm_records = records[study.name]
        accuracy = study_accuracy(arm_records)
        significance = study_significance(accuracy, study.analysis)
        fairness = None
        if nds_fairness is not None:
            ds_fairness = study_fairness(replace(arm_records, runs=tuple(
                r for r in arm_records.runs if r.role == "distilled")))
            assert ds_fairness is not None
            fairness = replace(ds_fairness, runs=nds_fairness.runs + ds_fairness.runs)
        analysis = StudyAnalysis(arm_records, accuracy, significance, (), fairness,
                                 ClaimsResult((), study.analysis.alpha, ""))
        arms.append(method_arm(study, analysis))
    result = method_claims(arms, power=False)
    return [(c.arm, kind_key(c.kind, c.test.claim), c.test.verdict == "supported")
            for c in result.claims if not math.isnan(c.test.p_value)]


@dataclass
class MethodsTally:
    """Counts over the replicates of one methods scenario."""

    replicates: int = 0
    supported: dict[tuple[str, str], int] = field(default_factory=dict)
    tested: set[tuple[str, str]] = field(default_factory=set)
    any_supported: int = 0
    #: Replicates in which a claim not made true by the planted effect was supported.
    any_false: int = 0

    def add(self, scenario: MethodsScenario, verdicts: list[tuple[str, str, bool]]) -> None:
        self.replicates += 1
        for arm, kind, supported in verdicts:
            self.tested.add((arm, kind))
            if supported:
                self.supported[(arm, kind)] = self.supported.get((arm, kind), 0) + 1
        self.any_supported += any(s for _, _, s in verdicts)
        self.any_false += any(s and not (arm == scenario.planted_arm and kind in PLANTED_TRUE)
                              for arm, kind, s in verdicts)

    def rate(self, arm: str, kind: str) -> float:
        return self.supported.get((arm, kind), 0) / self.replicates


def limit(alpha: float, replicates: int) -> float:
    """alpha + 2 Monte-Carlo SE: the most a null rate may be measured at."""
    return alpha + 2 * math.sqrt(alpha * (1 - alpha) / replicates)


def passes(scenario: MethodsScenario, tally: MethodsTally, alpha: float) -> bool:
    """Whether every null rate (every claim and 'any claim' in a null block; the claims the
    planted effect does not make true and 'any false claim' in a planted one) is within
    alpha + 2 SE."""
    bound = limit(alpha, tally.replicates)
    false_rates = [tally.rate(arm, kind) for arm, kind in tally.tested
                   if scenario.null or not (arm == scenario.planted_arm
                                            and kind in PLANTED_TRUE)]
    overall = (tally.any_supported if scenario.null else tally.any_false) / tally.replicates
    return all(r <= bound for r in false_rates) and overall <= bound
