"""Where a study stands when it is reported: how many of its planned runs are finished, being
trained, resumable (interrupted or failed), not started or blocked, read from the store's runs
(their MLflow status and lease tags). A report of an incomplete study says so on its first line,
labels its verdicts provisional, exits with its own code and never replaces a complete report in
MLflow.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from kdspec.tracking.leases import DEFAULT_LEASE_TIMEOUT_S, lease_holder
from kdspec.tracking.store import StoredRun

#: A planned run's state in the store: the kinds of the tracking layer's run-state rule.
RunStateKind = Literal["finished", "live", "resumable", "fresh", "blocked"]
STATE_ORDER: tuple[RunStateKind, ...] = ("finished", "live", "resumable", "blocked", "fresh")
#: How the report names each state.
STATE_WORDS: dict[RunStateKind, str] = {
    "finished": "finished", "live": "training", "resumable": "interrupted or failed",
    "blocked": "blocked", "fresh": "not started"}
MSG_INCOMPLETE = "Incomplete: {finished} of {total} runs finished"
MSG_UNUSABLE = "{count} finished but unusable"


def run_state_kind(stored: Sequence[StoredRun], *, at_ms: int,
                   timeout_s: float = DEFAULT_LEASE_TIMEOUT_S) -> RunStateKind:
    """The state of one planned run from every stored run of its kdspec id (oldest first).

    LEAD: switch to ``kdspec.tracking.ownership.run_state(run, stored, at_ms=at_ms,
    timeout_s=timeout_s).kind`` once that module is on main; this function is the only place
    the report decides a run's state, and reads the same records (``stored_run``) and the same
    lease rule (``lease_holder``) until then. It never answers "blocked" (that needs the plan's
    teacher links, which ``run_state`` has)."""
    if any(s.status == "FINISHED" for s in stored):
        return "finished"
    if lease_holder(stored, at_ms=at_ms, timeout_s=timeout_s) is not None:
        return "live"
    return "resumable" if stored else "fresh"


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
