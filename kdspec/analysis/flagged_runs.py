"""Runs that finished but learned nothing, on the report's first screen.

``kdspec run`` tags a finished run ``kdspec.flag.at_chance`` when its test accuracy is within
reach of the best constant guess, and ``kdspec.flag.loss`` when its training loss never fell
(the runtime's rules; the report only reads the tags). Such a run is used, never dropped: the
first screen says how many there are, which and why, right under the completeness line, and
every verdict whose test reads a flagged run's role says that it rests on it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from kdspec.analysis.claims import ClaimTest
from kdspec.analysis.records import RunPredictions, StudyRecords

MSG_FLAGGED = ("Flagged: {count} of the {used} runs used finished but learned nothing "
               "(at chance, or a training loss that never fell); they are analysed as they are, "
               "and each verdict that rests on one says so.")
MSG_FLAGGED_RUN = "{who} seed {seed} (kdspec id {kdspec_id}, MLflow run {mlflow_id}): {why}"
MSG_RESTS_ON = "rests on {count} flagged run{s}: {runs}"


#: How a run's population is named (its label: ``DS T=4``; a methods block adds the arm).
Namer = Callable[[RunPredictions], str]


def population_label(run: RunPredictions) -> str:
    return run.group.label


def flagged_run_line(run: RunPredictions, who: Namer = population_label) -> str:
    """One flagged run: population, seed, both ids and every reason it carries."""
    return MSG_FLAGGED_RUN.format(who=who(run), seed=run.seed, kdspec_id=run.kdspec_id,
                                  mlflow_id=run.mlflow_run_id,
                                  why="; ".join(reason for _, reason in run.flags))


def flagged_lines(runs: Sequence[RunPredictions], used: int,
                  who: Namer = population_label) -> tuple[str, ...]:
    """The first screen's lines: a headline and one line per flagged run (none: empty)."""
    flagged = [r for r in runs if r.flags]
    if not flagged:
        return ()
    return (MSG_FLAGGED.format(count=len(flagged), used=used),
            *(flagged_run_line(r, who) for r in flagged))


def study_flagged_lines(records: StudyRecords) -> tuple[str, ...]:
    """:func:`flagged_lines` of one study's used runs."""
    return flagged_lines(records.runs, len(records.runs))


def rests_on(runs: Sequence[RunPredictions], who: Namer = population_label) -> str:
    """'' or the note a verdict carries when some of ``runs`` (those its test reads) are
    flagged."""
    flagged = list({r.kdspec_id: r for r in runs if r.flags}.values())
    if not flagged:
        return ""
    names = ", ".join(f"{who(r)} seed {r.seed}" for r in flagged)
    return MSG_RESTS_ON.format(count=len(flagged), s="" if len(flagged) == 1 else "s",
                               runs=names)


def claim_flag_note(claim: ClaimTest, records: StudyRecords) -> str:
    """The note of one claim of a study: the flagged runs among the roles its test reads."""
    return rests_on([r for r in records.runs if r.role in claim.roles])
