"""The methods ledger: one row per method and control arm of a block, and the method x class map
of significant changes.

Per arm, over the seeds (the unit), from the arm's own analysis:

- accuracy and worst-class accuracy of its DS: per seed the mean over the arm's temperatures,
  then mean +- sample sd (ddof = 1) over seeds, with n;
- classes changed against the NDS and against the KD arm's DS: per class a paired t-test over
  the common seeds of ``x_arm - x_ref`` (normalised class accuracy), Holm over the testable
  classes; a class counts when its adjusted p < alpha, up or down by the sign of the mean
  change (:func:`kdspec.analysis.method_design.compare_classes`, the paired part of the
  paper's class claim);
- over the first sensitive attribute, per metric: the DS's DPD/EOD, its excess over the
  no-group-effect reference, and the paired change of the excess ``DS - NDS`` (negative:
  fairer beyond what accuracy alone does);
- I(f) of the DS where the study declares individual fairness;
- the published top-1 where the design is the CIFAR-100 benchmark's
  (:mod:`kdspec.analysis.published_methods`).

The map holds, per arm and class, the mean change of the normalised class accuracy against the
NDS where it is significant after Holm over the classes (NaN elsewhere).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from kdspec.analysis.claims import fairness_seeds
from kdspec.analysis.fairness import FairnessResult
from kdspec.analysis.method_claims import MethodClaims, method_claims
from kdspec.analysis.method_design import KD, ClassComparison, MethodArm, compare_classes
from kdspec.analysis.published_methods import PublishedTop1, published_top1
from kdspec.analysis.records import GroupKey
from kdspec.plan import FairnessMetric


@dataclass(frozen=True)
class Spread:
    """Mean and sample sd (NaN for n < 2) over seeds."""

    mean: float
    sd: float
    n: int


def spread(values: Sequence[float] | np.ndarray) -> Spread:
    array = np.asarray(values, dtype=float)
    array = array[np.isfinite(array)]
    return Spread(float(array.mean()) if array.size else math.nan,
                  float(array.std(ddof=1)) if array.size >= 2 else math.nan, int(array.size))


@dataclass(frozen=True)
class ArmFairness:
    """One metric over the first sensitive attribute: the DS's value and excess, and the
    paired change of the excess DS - NDS, per seed (mean over T)."""

    value: Spread
    excess: Spread
    change: Spread


@dataclass(frozen=True)
class LedgerRow:
    """One arm's numbers."""

    arm: MethodArm
    accuracy: Spread
    worst: Spread
    vs_nds: ClassComparison
    vs_kd: ClassComparison | None
    fairness: dict[FairnessMetric, ArmFairness]
    individual: Spread | None
    published: PublishedTop1 | None


@dataclass(frozen=True)
class MethodsLedger:
    """A methods block (or one group of it, by its other settings): rows, references, the
    family of claims and the test options."""

    block: str
    settings: tuple[tuple[str, str], ...]
    rows: tuple[LedgerRow, ...]
    teacher: Spread
    nds: Spread
    nds_worst: Spread
    published_teacher: PublishedTop1 | None
    published_nds: PublishedTop1 | None
    claims: MethodClaims
    alpha: float
    normalization: str
    attribute: str | None
    metrics: tuple[FairnessMetric, ...]
    class_names: tuple[str, ...]
    #: Arms of the block that could not be reported at all (no usable run).
    not_reported: tuple[str, ...] = ()

    def row(self, method: str) -> LedgerRow | None:
        return next((r for r in self.rows if r.arm.method == method), None)

    def class_map(self) -> np.ndarray:
        """``[arms, C]`` mean change vs the NDS where significant after Holm, else NaN."""
        return np.array([np.where(r.vs_nds.significant(self.alpha), r.vs_nds.change, np.nan)
                         for r in self.rows]).reshape(len(self.rows), len(self.class_names))


def _raw_values(fairness: FairnessResult, attribute: str, metric: FairnessMetric,
                seeds: tuple[int, ...], temperatures: tuple[float, ...]) -> np.ndarray:
    table = {(r.seed, r.group): r.value(metric) for r in fairness.runs
             if r.attribute == attribute}
    return np.array([np.mean([table[(s, GroupKey("distilled", t))] for t in temperatures])
                     for s in seeds])


def arm_fairness(arm: MethodArm) -> dict[FairnessMetric, ArmFairness]:
    """Per metric over the first sensitive attribute (empty without fairness)."""
    fairness = arm.analysis.fairness
    if fairness is None or not fairness.runs:
        return {}
    attribute = fairness.attributes[0]
    out = {}
    for metric in fairness.metrics:
        seeds = fairness_seeds(fairness, arm.analysis.records, attribute, metric)
        if not seeds.seeds or not seeds.temperatures:
            continue
        ds = seeds.ds.mean(axis=1)
        out[metric] = ArmFairness(
            spread(_raw_values(fairness, attribute, metric, seeds.seeds, seeds.temperatures)),
            spread(ds), spread(ds - seeds.nds))
    return out


def arm_individual(arm: MethodArm) -> Spread | None:
    """I(f) of the DS per seed (mean over T, seeds with every T), or None when undeclared."""
    result = arm.analysis.individual_fairness
    if result is None:
        return None
    by_t = [result.per_seed(GroupKey("distilled", t)) for t in arm.study.temperatures]
    by_t = [d for d in by_t if d]
    if not by_t:
        return spread([])
    seeds = sorted(set.intersection(*(set(d) for d in by_t)))
    return spread([float(np.mean([d[s].score.value for d in by_t])) for s in seeds])


def ledger_row(arm: MethodArm, kd: MethodArm | None) -> LedgerRow:
    options = arm.study.analysis
    vs_kd = (compare_classes(arm.ds, kd.ds, alpha=options.alpha,
                             permutations=options.permutations)
             if kd is not None and kd is not arm else None)
    return LedgerRow(arm, spread(arm.ds.acc), spread(arm.ds.worst),
                     compare_classes(arm.ds, arm.nds, alpha=options.alpha,
                                     permutations=options.permutations),
                     vs_kd, arm_fairness(arm), arm_individual(arm),
                     published_top1(arm.study, "ds"))


def methods_ledger(block: str, settings: tuple[tuple[str, str], ...],
                   arms: Sequence[MethodArm], *, power: bool = True,
                   not_reported: tuple[str, ...] = ()) -> MethodsLedger:
    """The ledger of a block's arms (in plan order) with the family of claims over them."""
    kd = next((a for a in arms if a.method == KD), None)
    rows = tuple(ledger_row(arm, kd) for arm in arms)
    first = arms[0]
    reference = kd or first
    teacher = reference.analysis.accuracy.teacher
    fairness = next((a.analysis.fairness for a in arms if a.analysis.fairness is not None),
                    None)
    return MethodsLedger(
        block=block, settings=settings, rows=rows,
        teacher=spread(teacher.overall), nds=spread(reference.nds.acc),
        nds_worst=spread(reference.nds.worst),
        published_teacher=published_top1(reference.study, "teacher"),
        published_nds=published_top1(reference.study, "nds"),
        claims=method_claims(arms, power=power), alpha=first.study.analysis.alpha,
        normalization=first.study.analysis.normalization,
        attribute=fairness.attributes[0] if fairness is not None else None,
        metrics=fairness.metrics if fairness is not None else (),
        class_names=first.analysis.records.class_names, not_reported=not_reported)
