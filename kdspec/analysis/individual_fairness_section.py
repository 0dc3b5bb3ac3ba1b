"""The report's "Individual fairness" section: I(f) per population with its declaration, the
paper's Table 4 beside it where the paper has the design, and the runs that had no outputs."""

from __future__ import annotations

import math

from kdspec.analysis.individual_fairness import IndividualFairnessResult
from kdspec.analysis.records import GroupKey
from kdspec.analysis.report_model import Section, Table
from kdspec.analysis.study_analysis import StudyAnalysis


def _value(value: float, digits: int = 4) -> str:
    return "n/a" if math.isnan(value) else f"{value:.{digits}f}"


def _mean_sd(mean: float, sd: float) -> str:
    if math.isnan(mean):
        return "n/a"
    return _value(mean) if math.isnan(sd) else f"{_value(mean)} +- {_value(sd)}"


def _paper_value(result: IndividualFairnessResult, key: GroupKey) -> str:
    paper = result.paper
    if paper is None:
        return ""
    if key.role == "teacher":
        return _value(paper.teacher)
    if key.role == "student":
        return _value(paper.nds)
    value = paper.distilled.get(float(key.temperature or 0.0))
    return "" if value is None else _value(value)


def _finding(result: IndividualFairnessResult, temperatures: tuple[float, ...]) -> str:
    nds = result.group(GroupKey("student"))
    present = [g for t in temperatures if (g := result.group(GroupKey("distilled", t)))
               and g.n]
    if nds is None or not nds.n or not present:
        return "Not enough runs with individual-fairness outputs for a comparison."
    low, high = present[0], present[-1]
    direction = ("falls" if high.mean < low.mean else "rises" if high.mean > low.mean
                 else "stays")
    return (f"DS I(f) {direction} from {_value(low.mean)} at {low.key.label} to "
            f"{_value(high.mean)} at {high.key.label} (NDS {_value(nds.mean)}); lower is "
            "fairer. Whether a change with T is beyond seed noise is the claims section's "
            "test; the confidence column says whether the outputs only got flatter.")


def individual_fairness_section(analysis: StudyAnalysis) -> Section | None:
    """None for a study that does not declare individual fairness."""
    result = analysis.individual_fairness
    if result is None:
        return None
    paper = result.paper
    rows = []
    for group in result.groups:
        row = [group.key.label, str(group.n), _mean_sd(group.mean, group.sd),
               _value(group.confidence, 3)]
        if paper is not None:
            row.append(_paper_value(result, group.key))
        rows.append(tuple(row))
    header = ["model", "n", "I(f) (mean +- sd over seeds)", "mean top-class probability"]
    if paper is not None:
        header.append("paper Table 4")
    pairs = sorted({r.score.pairs_used for r in result.runs})
    zero = max((r.score.zero_distance for r in result.runs), default=0)
    declared = result.declaration.describe(text=analysis.records.study.dataset.is_text)
    caption = (f"I(f) = mean over pairs of D(f(x), f(x')) / d(x, x'), lower is fairer "
               f"(Dwork et al., 2012). Declared: {declared}. Pairs per run: "
               f"{', '.join(str(p) for p in pairs) or 'none'}"
               + (f"; up to {zero} pairs at input distance 0 left out" if zero else "")
               + ". Per run in individual_fairness.csv.")
    if paper is not None:
        caption += (" The paper's Table 4 does not say what f, d or the pairs are, so its "
                    "values compare in direction, not in size.")
    bullets = tuple(f"left out: {line}" for line in result.left_out)
    return Section("Individual fairness",
                   finding=_finding(result, analysis.records.study.temperatures),
                   bullets=bullets, tables=(Table(tuple(header), tuple(rows), caption),))
