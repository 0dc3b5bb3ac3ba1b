"""Which variants of a ``vary`` block make a methods comparison, and their ledgers.

A block is a methods block when its variants name two or more methods (``vary { distill {
method = [...] } }``, alone or with other keys). Its variants are grouped by their settings
other than the method; every group with two or more methods whose studies could be reported
gets a :class:`kdspec.analysis.method_ledger.MethodsLedger` (arms in plan order), its claims
under Holm over that group.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from kdspec.analysis.method_design import method_arm, method_groups
from kdspec.analysis.method_ledger import MethodsLedger, methods_ledger
from kdspec.analysis.study_analysis import StudyAnalysis
from kdspec.plan import Study


def block_ledgers(block: str, variants: Sequence[Study],
                  analyses: Mapping[str, StudyAnalysis], *, power: bool = True
                  ) -> list[MethodsLedger]:
    """The ledgers of a block's method groups (empty when the block varies no method or fewer
    than two methods could be reported)."""
    out = []
    for settings, studies in method_groups(variants):
        arms = [method_arm(s, analyses[s.name]) for s in studies if s.name in analyses]
        missing = tuple(s.method.name for s in studies if s.name not in analyses)
        if len({arm.method for arm in arms}) > 1:
            out.append(methods_ledger(block, settings, arms, power=power,
                                      not_reported=missing))
    return out
