"""What ``kdspec run`` will do with each run, and who does it: pure functions of the plan and of
what the MLflow store holds (no training, no MLflow calls), so every decision is unit-tested.

- Action per run: what :func:`kdspec.tracking.ownership.run_state` says of it, in the
  executor's words: reuse a FINISHED run, leave one another process is training right now
  ("elsewhere"), resume a killed/failed one from its checkpoint, or train.
- Lockstep groups: the runnable distilled runs sharing seed, teacher, architecture and recipe.
- Work units and shards: a unit is a teacher with every run that learns from it (or one run with
  no teacher and no pupils); units go to shards by a deterministic longest-first balance over the
  WHOLE plan, so every machine computes the same split whatever the store holds, and a distilled
  run always lands on the shard that trains its teacher.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from kdspec.catalogue.registry import short_arch
from kdspec.distillation_methods import (
    reads_teacher_at_setup,
    reads_teacher_while_training,
    uses_temperature,
)
from kdspec.plan import DatasetSpec, Plan, Run
from kdspec.runtime.models.cost import study_forward_flops
from kdspec.tracking.leases import now_ms
from kdspec.tracking.ownership import DEFAULT_LEASE_TIMEOUT_S, RunState, RunStateKind, run_state
from kdspec.tracking.run_store import StoredRun

ActionKind = Literal["reuse", "resume", "train", "elsewhere"]
#: What this process does with a run in each state of :func:`kdspec.tracking.ownership.run_state`
#: (a blocked run is not an action: the executor skips it or waits for its teacher).
ACTION_OF_STATE: dict[RunStateKind, ActionKind] = {
    "finished": "reuse", "live": "elsewhere", "resumable": "resume", "fresh": "train"}


@dataclass(frozen=True)
class Action:
    """What happens to one run. ``start_epoch`` > 0 only for "resume"; ``stored`` is the MLflow
    run reused, resumed or held elsewhere; ``stale`` are unfinished runs a fresh training
    replaces; ``superseded`` are FINISHED runs a ``--force`` retraining replaces once it
    finishes."""

    run: Run
    kind: ActionKind
    start_epoch: int = 0
    stored: StoredRun | None = None
    stale: tuple[StoredRun, ...] = ()
    superseded: tuple[StoredRun, ...] = ()

    @classmethod
    def of(cls, state: RunState) -> Action:
        """The action for a run's state (a blocked state has none: ValueError)."""
        if state.kind == "blocked":
            raise ValueError(f"{state.run.id} is blocked: its teacher is not finished")
        return cls(state.run, ACTION_OF_STATE[state.kind], start_epoch=state.start_epoch,
                   stored=state.stored if state.kind != "fresh" else None, stale=state.stale,
                   superseded=state.superseded)

    def describe(self) -> str:
        """The dry-run wording: "train", "reuse", "resume at epoch k", "running elsewhere"."""
        if self.kind == "resume":
            return f"resume at epoch {self.start_epoch + 1}"
        if self.kind == "elsewhere" and self.stored is not None:
            lease = self.stored.lease
            return (f"running elsewhere ({lease.host} pid {lease.pid}, epoch "
                    f"{self.stored.epochs_done}, heartbeat {lease.age_s(now_ms()):.0f} s ago)")
        return self.kind


def decide_action(run: Run, stored: Sequence[StoredRun], *, force: bool,
                  lease_timeout_s: float = DEFAULT_LEASE_TIMEOUT_S,
                  at_ms: int | None = None) -> Action:
    """The action for ``run`` given its stored runs: :func:`run_state` (the one rule), in the
    executor's words."""
    return Action.of(run_state(run, stored, at_ms=now_ms() if at_ms is None else at_ms,
                               timeout_s=lease_timeout_s, force=force))


@dataclass(frozen=True)
class Group:
    """Runs trained together on one batch stream (a solo run is a group of one)."""

    actions: tuple[Action, ...]

    @property
    def runs(self) -> tuple[Run, ...]:
        return tuple(a.run for a in self.actions)

    @property
    def start_epoch(self) -> int:
        return self.actions[0].start_epoch

    @property
    def label(self) -> str:
        """``distilled lenet5 seed 0 T=2,4``; a group of other methods than kd names each
        member's: ``distilled lenet5 seed 0: kd T=4, dkd T=4, at``."""
        first = self.actions[0].run
        if first.role != "distilled":
            return f"{first.role} {short_arch(first.arch)} seed {first.seed}"
        head = f"distilled {short_arch(first.arch)} seed {first.seed}"
        methods = [a.run.method for a in self.actions]
        if all(m is None or m.name == "kd" for m in methods):
            return f"{head} T=" + ",".join(f"{a.run.temperature:g}" for a in self.actions)
        return f"{head}: " + ", ".join(
            (m.name if m is not None else "kd")
            + (f" T={a.run.temperature:g}" if m is None or uses_temperature(m) else "")
            for a, m in zip(self.actions, methods, strict=True))


def lockstep_key(run: Run) -> tuple[str, ...]:
    """Distilled runs with equal keys can share batches and one teacher forward per batch,
    whatever their methods (a group's teacher forward reads what all of them need)."""
    return (run.teacher_id or "", run.arch, str(run.seed), run.recipe.model_dump_json())


def form_groups(plan: Plan, actions: Sequence[Action]) -> list[Group]:
    """Group the runs to train (``actions`` without reuses) in plan order.

    Distilled runs of one lockstep key form one group when their study allows lockstep, and
    their studies write to the same experiment and train with the same runtime settings (the
    variants of a ``vary`` over the method do). A group resumes only when all its members saved
    the same epoch; otherwise every member restarts from scratch (their unfinished runs become
    stale).
    """
    order = {r.id: i for i, r in enumerate(plan.runs)}
    pending = sorted((a for a in actions if a.kind in ("train", "resume")),
                     key=lambda a: order[a.run.id])
    buckets: dict[tuple[str, ...], list[Action]] = {}
    groups: list[list[Action]] = []
    for action in pending:
        run = action.run
        study = plan.study_of(run.id)
        if run.role == "distilled" and study.runtime.lockstep:
            key = (*lockstep_key(run), study.tracking.model_dump_json(),
                   study.runtime.model_dump_json())
            if key not in buckets:
                buckets[key] = []
                groups.append(buckets[key])
            buckets[key].append(action)
        else:
            groups.append([action])
    return [Group(_align_resume(members)) for members in groups]


def _align_resume(members: list[Action]) -> tuple[Action, ...]:
    starts = {a.start_epoch for a in members}
    if len(starts) == 1:
        return tuple(members)
    restarted = []
    for a in members:
        stale = a.stale + ((a.stored,) if a.kind == "resume" and a.stored is not None else ())
        restarted.append(Action(a.run, "train", stale=stale, superseded=a.superseded))
    return tuple(restarted)


def work_units(plan: Plan) -> list[list[Run]]:
    """The plan's runs cut into units that never depend on each other: each teacher with its
    distilled runs, and every other run on its own; in plan order."""
    units: dict[str, list[Run]] = {}
    for run in plan.runs:
        anchor = run.teacher_id if run.teacher_id is not None else run.id
        units.setdefault(anchor, []).append(run)
    return list(units.values())


def _reads_teacher(run: Run) -> bool:
    """Whether ``run`` needs its teacher's forward at every step (a label-smoothing run does
    not; a fitnet or crd run's own modules cost next to nothing beside the models)."""
    return run.method is not None and reads_teacher_while_training(run.method)


def run_cost(plan: Plan, run: Run) -> float:
    """Rough training cost of a run in forward FLOPs of one image: ``epochs x (3 x F_arch +
    F_teacher)``, a training step being about three forwards and a distilled step adding the
    teacher's forward (a matched label-smoothing run: one teacher forward per image, once).
    Only the relative sizes matter (for balancing shards)."""
    data = plan.study_of(run.id).dataset
    cost = 3.0 * _flops(run.arch, data)
    once = 0.0
    if run.teacher_id is not None and _reads_teacher(run):
        cost += _flops(plan.run(run.teacher_id).arch, data)
    elif run.teacher_id is not None and run.method is not None \
            and reads_teacher_at_setup(run.method):
        once = _flops(plan.run(run.teacher_id).arch, data)
    return run.recipe.epochs * cost + once


def group_epoch_costs(plan: Plan, group: Group) -> dict[str, float]:
    """Each member's cost of one epoch trained in ``group`` (the units of :func:`run_cost`):
    ``3 x F_arch`` plus its share of the teacher's forward, which a lockstep group computes
    once per batch for all its K members that read it. The plan's ETA is measured in these."""
    readers = [r for r in group.runs if r.teacher_id is not None and _reads_teacher(r)]
    costs = {}
    for run in group.runs:
        data = plan.study_of(run.id).dataset
        cost = 3.0 * _flops(run.arch, data)
        if run.teacher_id is not None and _reads_teacher(run):
            cost += _flops(plan.run(run.teacher_id).arch, data) / len(readers)
        costs[run.id] = cost
    return costs


def group_remaining_cost(plan: Plan, group: Group) -> float:
    """What is left of ``group``: its epochs from where it starts (resumed groups count only
    the epochs still to train)."""
    per_epoch = group_epoch_costs(plan, group)
    return sum(per_epoch[r.id] * max(r.recipe.epochs - group.start_epoch, 0)
               for r in group.runs)


def _flops(arch: str, data: DatasetSpec) -> float:
    """A forward's FLOPs measured at the study's input (1 where unknown: only the relative
    sizes matter)."""
    flops = study_forward_flops(arch, data)
    return 1.0 if flops is None else flops


def assign_units(plan: Plan, count: int) -> list[list[Run]]:
    """Split the plan's units over ``count`` shards: largest unit first, each to the shard with
    the least work so far (ties: lowest index). Deterministic for a given plan."""
    units = work_units(plan)
    costs = [sum(run_cost(plan, r) for r in unit) for unit in units]
    order = sorted(range(len(units)), key=lambda i: (-costs[i], i))
    loads = [0.0] * count
    shards: list[list[int]] = [[] for _ in range(count)]
    for i in order:
        target = min(range(count), key=lambda s: (loads[s], s))
        loads[target] += costs[i]
        shards[target].append(i)
    position = {r.id: i for i, r in enumerate(plan.runs)}
    result = []
    for members in shards:
        runs = [r for i in members for r in units[i]]
        result.append(sorted(runs, key=lambda r: position[r.id]))
    return result


def runs_of_share(plan: Plan, index: int, count: int) -> list[Run]:
    """The runs of share ``index`` of ``count`` (in plan order)."""
    return assign_units(plan, count)[index]
