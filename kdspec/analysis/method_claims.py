"""The paper's claims per method, and whether each method differs from the control arms, with
family-wise control over the whole block.

The family is every claim with a p-value of every arm of the block (methods and controls):

- the paper's claims of each arm, tested on that arm's own study exactly as its report tests
  them (:func:`kdspec.analysis.claims.claim_drafts`: class change vs the NDS, #SC/#TC trends,
  class bias without accuracy change, fairer than the NDS and fairer with T per sensitive
  attribute and metric, individual fairness with T);
- **differs from label smoothing**, for each arm other than the label-smoothing control when
  the block has one: the arm's DS against the control's DS of the same seed, by the class test
  of the paper's first claim (per-class paired t-tests over seeds with Holm over the classes,
  and the relabelled count of classes at Welch p < alpha, combined by Bonferroni:
  ``p = min(1, 2 min(p_paired, p_count))``);
- **differs from a random teacher**, the same against the random-teacher control's DS, for
  each arm but that control (and but the label-smoothing control, whose comparison with the
  random teacher is already its "differs from label smoothing" twin).

Holm's step-down over the K claims with a p-value keeps the probability that *any* claim of a
block in which no method does anything is called supported at most alpha, whatever the
dependence between them (arms share their seeds' NDS and teachers). Power is stated at the
Holm worst case alpha / K. ``bench/bench_claims.py --only methods`` measures the error rates.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from kdspec.analysis.claims import (
    ClaimDraft,
    ClaimsResult,
    ClaimTest,
    claim_drafts,
    class_mde,
    finish_claims,
)
from kdspec.analysis.flagged_runs import Namer, rests_on
from kdspec.analysis.method_design import (
    LABEL_SMOOTHING,
    RANDOM_TEACHER,
    ClassComparison,
    MethodArm,
    compare_classes,
)
from kdspec.analysis.power import sd_at, seeds_needed
from kdspec.analysis.records import RunPredictions

MSG_FAMILY = ("Holm over the {k} claims with a p-value of the {arms} arms of the block "
              "(every arm's paper claims, and each arm against the controls): family-wise "
              "error at most alpha = {alpha:g} over methods x claims")
MSG_NO_FAMILY = "no claim of the block has a p-value, so there is nothing to correct"
CONTROL_NAMES = {LABEL_SMOOTHING: "label smoothing", RANDOM_TEACHER: "a random teacher"}
DIFFERS_ASSUMPTION = (
    "Seeds independent; an arm's DS and the control's DS of one seed share the seed's starting "
    "weights and batches (paired); paired part: per-seed differences roughly normal, any "
    "dependence between classes; count part: with no difference the two arms' models are "
    "exchangeable (positive pairing makes the split conservative).")


@dataclass(frozen=True)
class MethodClaim:
    """One claim of the family: the arm it is about, its kind (``paper`` or ``vs <control>``),
    the test after Holm over the family, and the note naming flagged runs it rests on."""

    arm: str
    kind: str
    test: ClaimTest
    flagged: str = ""


@dataclass(frozen=True)
class MethodClaims:
    """Every claim of a methods block after Holm over the block."""

    claims: tuple[MethodClaim, ...]
    result: ClaimsResult
    arms: tuple[str, ...]
    comparisons: dict[tuple[str, str], ClassComparison]  # (arm, control) -> class comparison

    @property
    def alpha(self) -> float:
        return self.result.alpha

    @property
    def family(self) -> str:
        return self.result.family

    @property
    def tested(self) -> int:
        return sum(not math.isnan(c.test.p_value) for c in self.claims)

    def of(self, arm: str, kind: str = "paper") -> tuple[MethodClaim, ...]:
        return tuple(c for c in self.claims if c.arm == arm and c.kind == kind)


def differs_draft(arm: MethodArm, control: MethodArm, comparison: ClassComparison
                  ) -> ClaimDraft:
    """The claim that ``arm``'s DS differ class by class from ``control``'s DS."""
    name = CONTROL_NAMES[control.method]
    claim = f"[{arm.label}] Its distilled students differ from {name} class by class."
    test = (f"DS normalised class accuracy (mean over T) against the {control.method} "
            "control's DS of the same seed, two tests combined by Bonferroni (p = 2 x the "
            "smaller): per-class paired t-tests over seeds with Holm over the classes, and the "
            "count of classes at Welch p < alpha against every split of the 2n models.")
    if math.isnan(comparison.p_value):
        why = (f"needs 2 seeds with a DS of both arms ({len(comparison.seeds)} common)"
               if len(comparison.seeds) < 2 else "no class varies over seeds")
        return ClaimDraft(ClaimTest(claim, test, DIFFERS_ASSUMPTION,
                                    f"{len(comparison.seeds)} common seed(s)", math.nan,
                                    detail=why))
    alpha = arm.study.analysis.alpha
    up, down = comparison.changed(alpha)
    names = arm.analysis.records.class_names
    hit = np.flatnonzero(comparison.significant(alpha))
    hit = hit[np.argsort(-np.abs(comparison.change[hit]))]
    shown = ", ".join(f"{names[c]} ({comparison.change[c]:+.3f})" for c in hit[:5])
    assert comparison.count is not None
    result = (f"paired: {up + down} of {int(comparison.testable.sum())} classes differ after "
              f"Holm ({up} higher, {down} lower than {control.method})"
              + (f": {shown}" if shown else "") + f", p {comparison.p_paired:.3g}; count: "
              f"{comparison.count.count} classes at p < {alpha:g}, p "
              f"{comparison.count.p_value:.3g}; over {len(comparison.seeds)} seeds")
    differences, testable = comparison.differences, comparison.testable
    means = comparison.change
    largest = int(np.nanargmax(np.where(testable, np.abs(means), np.nan)))

    def power_at(level: float) -> tuple[str, str, float]:
        mde = class_mde(differences, testable, level / 2)
        sd = sd_at(float(differences[:, largest].std(ddof=1)), differences.shape[0])
        needed = seeds_needed(float(means[largest]), sd,
                              alpha=level / 2 / int(testable.sum()), alternative="two-sided")
        return (f"paired part: MDE {mde:.3f} of normalised class accuracy (median over "
                f"classes, 80 % power, level {level / 2:.2g} / {int(testable.sum())} classes)",
                f"{needed} seeds (for the largest observed difference, {names[largest]} "
                f"{means[largest]:+.3f})" if needed is not None else
                "more than 200 seeds (for the largest observed difference)", math.nan)

    return ClaimDraft(ClaimTest(claim, test, DIFFERS_ASSUMPTION, result, comparison.p_value),
                      power_at)


def _prefixed(draft: ClaimDraft, arm: MethodArm) -> ClaimDraft:
    return replace(draft, test=replace(draft.test, claim=f"[{arm.label}] {draft.test.claim}"))


def _runs_read(arm: MethodArm, test: ClaimTest) -> list[RunPredictions]:
    return [r for r in arm.analysis.records.runs if r.role in test.roles]


def arm_namer(arms: Sequence[MethodArm]) -> Namer:
    """Names a run of the block by its population and, for a DS, its arm (``DS dkd T=4``)."""
    method = {r.kdspec_id: arm.method for arm in arms for r in arm.ds.runs}

    def who(run: RunPredictions) -> str:
        if run.role != "distilled" or run.kdspec_id not in method:
            return run.group.label
        return run.group.label.replace("DS", f"DS {method[run.kdspec_id]}", 1)

    return who


def method_claims(arms: Sequence[MethodArm], *, power: bool = True) -> MethodClaims:
    """The family of the block: each arm's paper claims, then each arm against the controls;
    Holm over all of them (``power=False`` for simulations that need only the verdicts)."""
    drafts: list[ClaimDraft] = []
    meta: list[tuple[str, str, str]] = []
    comparisons: dict[tuple[str, str], ClassComparison] = {}
    who = arm_namer(arms)
    for arm in arms:
        a = arm.analysis
        for draft in claim_drafts(a.records, a.accuracy, a.significance, a.fairness,
                                  individual=a.individual_fairness):
            drafts.append(_prefixed(draft, arm))
            meta.append((arm.method, "paper", rests_on(_runs_read(arm, draft.test), who)))
    by_method = {arm.method: arm for arm in arms}
    for control_name in (LABEL_SMOOTHING, RANDOM_TEACHER):
        control = by_method.get(control_name)
        if control is None:
            continue
        for arm in arms:
            if arm.method == control_name or (control_name == RANDOM_TEACHER
                                              and arm.method == LABEL_SMOOTHING
                                              and LABEL_SMOOTHING in by_method):
                continue
            options = arm.study.analysis
            comparison = compare_classes(arm.ds, control.ds, alpha=options.alpha,
                                         permutations=options.permutations)
            comparisons[(arm.method, control_name)] = comparison
            drafts.append(differs_draft(arm, control, comparison))
            meta.append((arm.method, f"vs {control_name}",
                         rests_on(list(arm.ds.runs) + list(control.ds.runs), who)))
    alpha = arms[0].study.analysis.alpha if arms else 0.05
    result = finish_claims(drafts, alpha, power)
    k = sum(not math.isnan(c.p_value) for c in result.claims)
    family = (MSG_FAMILY.format(k=k, arms=len(arms), alpha=alpha) if k else MSG_NO_FAMILY)
    result = replace(result, family=family)
    claims = tuple(MethodClaim(m, kind, test, flagged)
                   for (m, kind, flagged), test in zip(meta, result.claims, strict=True))
    return MethodClaims(claims, result, tuple(arm.method for arm in arms), comparisons)
