"""The report's first section: what the study was, what it says about the paper's claims and
what to conclude, with every abbreviation spelled out once.

Each sentence is computed from the analysis (verdicts after family-wise control, accuracies,
flags); "nothing" is a possible conclusion and is said plainly.
"""

from __future__ import annotations

import math
import re

from kdspec.analysis.claims import ClaimTest
from kdspec.analysis.flagged_runs import claim_flag_note
from kdspec.analysis.paper_results import PAPER
from kdspec.analysis.report_findings import mean_sd
from kdspec.analysis.report_model import Section, Table
from kdspec.analysis.study_analysis import StudyAnalysis

TERMS = (
    "NDS: non-distilled student, the student architecture trained on the labels alone.",
    "DS: distilled student, trained with the Hinton KD loss at temperature T on the "
    "teacher of its seed.",
    "#SC: the number of classes whose normalised accuracy differs significantly between the "
    "NDS and the DS (Welch's t-test per class); #TC: the same between the teacher and the DS.",
    "DPD: demographic parity difference, the largest gap between groups in how often a class "
    "is predicted; EOD: equalized odds difference, the largest gap between groups in the "
    "true- or false-positive rate. Lower is fairer; the excess is the part above what a model "
    "with no group effect scores on the same test set.",
)


#: A verdict of an incomplete study: what the runs finished so far say, not a result.
PROVISIONAL = "provisional: "
MSG_PROVISIONAL = (
    "{headline}. Every verdict here is provisional: it rests on the runs finished so far, and "
    "the missing runs can change any of them, so \"not supported\" now says nothing against "
    "the paper. So far: {supported} supported, {not_supported} not supported, {inconclusive} "
    "inconclusive. Report again once `kdspec status` shows every run finished.")


def verdict_label(claim: ClaimTest, *, provisional: bool, whole_flag: bool = False,
                  rests: str = "") -> str:
    """The verdict, ``provisional: ...`` for an incomplete study, the claim's flag (its name
    only, "levelling down", "flatter outputs": the text before its first colon, unless
    ``whole_flag``) and ``rests``, the note naming the flagged runs its test reads."""
    flag = claim.flag if whole_flag else claim.flag.split(":", 1)[0]
    return ((PROVISIONAL if provisional else "") + claim.verdict
            + (f" ({flag})" if claim.flag else "") + (f"; {rests}" if rests else ""))


def _p(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.3g}"


def conclusion(analysis: StudyAnalysis) -> str:
    """What a reader should take away, in two or three sentences (for an incomplete study:
    that the verdicts are provisional, and where the study stands)."""
    claims = analysis.claims
    supported = [c for c in claims.claims if c.verdict == "supported"]
    inconclusive = [c for c in claims.claims if c.verdict == "inconclusive"]
    alpha = claims.alpha
    if not analysis.records.complete:
        return MSG_PROVISIONAL.format(
            headline=analysis.records.state.headline(), supported=len(supported),
            not_supported=claims.count("not supported"), inconclusive=len(inconclusive))
    parts: list[str] = []
    if supported:
        names = "; ".join(c.claim.rstrip(".") for c in supported)
        parts.append(f"Supported at alpha = {alpha:g} after Holm over the study's claims: "
                     f"{names}.")
        flagged = [c for c in supported if c.flag]
        if flagged:
            parts.append(f"But read the fairness verdicts with care: {flagged[0].flag}.")
    else:
        parts.append(f"Nothing the paper claims is supported by this study at alpha = "
                     f"{alpha:g} after Holm over its claims.")
    tested = [c for c in claims.claims if c.verdict != "inconclusive"]
    if tested and len(supported) < len(tested):
        parts.append("A claim that is not supported is not evidence against the paper when "
                     "the study has little power: the seeds column says how many seeds 80 % "
                     "power would take.")
    if inconclusive:
        parts.append(f"{len(inconclusive)} claim(s) this design cannot answer (too few seeds "
                     "or temperatures; see the claims section).")
    return " ".join(parts)


def summary_section(analysis: StudyAnalysis) -> Section:
    """The first screen: the paper, what was compared, the verdicts, what to conclude."""
    records = analysis.records
    study = records.study
    acc = analysis.accuracy
    present = [g for g in acc.distilled if g.n]
    ds_range = ""
    if present:
        low = min(present, key=lambda g: g.mean)
        high = max(present, key=lambda g: g.mean)
        ds_range = (f", DS {mean_sd(low.mean, low.sd)} % (T = {low.key.temperature:g}) to "
                    f"{mean_sd(high.mean, high.sd)} % (T = {high.key.temperature:g})")
    known = [f"{name} {mean_sd(g.mean, g.sd)} %" for name, g in
             (("teacher", acc.teacher), ("NDS", acc.nds)) if g.n]
    accuracy = ", ".join(known) + ds_range.replace(", ", "" if not known else ", ", 1)
    what = (f"This report tests the claims of {PAPER} on the study '{study.name}': teacher "
            f"{study.teacher.arch} -> student {study.student.arch} on {study.dataset.name}, "
            f"{len(study.seeds)} seeds, T = {', '.join(f'{t:g}' for t in study.temperatures)}; "
            f"{len(records.runs)} of {len(study.run_ids)} planned runs were used."
            + (f" Test accuracy: {accuracy}." if accuracy else ""))
    paragraphs = [what]
    if study.note:
        paragraphs.append(f"The spec says: {study.note}")
    provisional = not records.complete
    rows = tuple((c.claim, verdict_label(c, provisional=provisional,
                                         rests=claim_flag_note(c, records)),
                  _p(c.p_adjusted),
                  re.split(r" \(|: ", c.seeds_needed)[0]) for c in analysis.claims.claims)
    table = Table(("claim of the paper", "verdict", "p after Holm", "seeds for 80 % power"),
                  rows, "Each claim's test, assumption, power and result are in the claims "
                  "section below.")
    return Section("What this study says", finding=conclusion(analysis),
                   paragraphs=tuple(paragraphs), bullets=TERMS, tables=(table,))
