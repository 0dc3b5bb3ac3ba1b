"""Where a study stands when it is reported: how many of its planned runs are finished, being
trained, resumable (interrupted or failed), not started or blocked, read from the store's runs
(their MLflow status and lease tags), by the rule ``kdspec run`` decides with
(:func:`kdspec.tracking.ownership.run_state`). A report of an incomplete study says so on its first line,
labels its verdicts provisional, exits with its own code and never replaces a complete report in
MLflow.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from kdspec.plan import Plan
from kdspec.tracking.ownership import RunState, RunStateKind

STATE_ORDER: tuple[RunStateKind, ...] = ("finished", "live", "resumable", "blocked", "fresh")
#: How the report names each state.
STATE_WORDS: dict[RunStateKind, str] = {
    "finished": "finished", "live": "training", "resumable": "interrupted or failed",
    "blocked": "blocked", "fresh": "not started"}
MSG_INCOMPLETE = "Incomplete: {finished} of {total} runs finished"
MSG_UNUSABLE = "{count} finished but unusable"


def report_state(state: RunState) -> RunStateKind:
    """How the report counts a run in ``state`` (:func:`kdspec.tracking.ownership.run_state`):
    as it is, except that a run tried before and not finished ("fresh" with an earlier
    attempt: killed or failed before its first checkpoint) counts with the interrupted and
    failed ones, not as not started."""
    return "resumable" if state.kind == "fresh" and state.stored is not None else state.kind


def blocked_by_teacher(states: Mapping[str, RunStateKind], plan: Plan, run_ids: Sequence[str]
                       ) -> list[RunStateKind]:
    """The states of ``run_ids`` in order, a not-started distilled run whose teacher has not
    finished counted as blocked (what ``run_state`` says when given its teacher's state)."""
    out: list[RunStateKind] = []
    for run_id in run_ids:
        state = states[run_id]
        teacher = plan.run(run_id).teacher_id
        if state == "fresh" and teacher is not None and states.get(teacher) != "finished":
            state = "blocked"
        out.append(state)
    return out


@dataclass(frozen=True)
class StudyProgress:
    """How many of a study's planned runs are in each state, and how many finished runs the
    report could not use (unreadable predictions, another test set)."""

    total: int
    counts: tuple[tuple[RunStateKind, int], ...]
    unusable: int = 0

    @classmethod
    def of(cls, states: Sequence[RunStateKind], *, unusable: int = 0) -> StudyProgress:
        return cls(len(states), tuple((k, states.count(k)) for k in STATE_ORDER), unusable)

    def count(self, kind: RunStateKind) -> int:
        return dict(self.counts).get(kind, 0)

    @property
    def complete(self) -> bool:
        """Every planned run finished, and every finished run usable."""
        return self.count("finished") == self.total and not self.unusable

    def headline(self) -> str:
        """``Incomplete: 12 of 55 runs finished: 3 training, 40 not started`` (states with no
        run left out), or ``Complete: all 55 runs finished``."""
        if self.complete:
            return f"Complete: all {self.total} runs finished"
        finished = self.count("finished")
        parts = [f"{n} {STATE_WORDS[k]}" for k, n in self.counts if k != "finished" and n]
        if self.unusable:
            parts.append(MSG_UNUSABLE.format(count=self.unusable))
        return (MSG_INCOMPLETE.format(finished=finished, total=self.total)
                + (": " + ", ".join(parts) if parts else ""))


def complete_progress(total: int) -> StudyProgress:
    """A study all of whose ``total`` runs are finished (records built without a store: the
    simulations and the analysis tests)."""
    return StudyProgress.of(["finished"] * total)
