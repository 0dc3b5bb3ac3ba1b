"""Reuse / resume / train decisions, lockstep groups and shard assignment (no training, no MLflow)."""

from __future__ import annotations

import pytest

from kdspec.plan import Plan, RuntimeSpec
from kdspec.runtime.scheduling import (
    Action,
    assign_units,
    decide_action,
    form_groups,
    group_epoch_costs,
    group_remaining_cost,
    run_cost,
    runs_of_share,
    work_units,
)
from kdspec.tracking.run_store import StoredRun
from tests.factories import tiny_plan, tiny_recipe


def _stored(kid: str, status: str, epochs_done: int = 0, start: int = 0) -> StoredRun:
    return StoredRun(mlflow_id=f"m-{kid}-{status}-{start}", kdspec_id=kid, status=status,
                     epochs_done=epochs_done, start_time=start, experiment_id="1", failure="")


@pytest.fixture
def plan() -> Plan:
    return tiny_plan(seeds=(0, 1, 2), temperatures=(2.0, 4.0, 8.0),
                     student_recipe=tiny_recipe(epochs=5))


def test_finished_run_is_reused_unless_forced(plan: Plan) -> None:
    run = plan.runs[0]
    stored = [_stored(run.id, "FAILED", 1, 1), _stored(run.id, "FINISHED", 0, 2)]
    assert decide_action(run, stored, force=False).kind == "reuse"
    forced = decide_action(run, stored, force=True)
    assert forced.kind == "train" and forced.stale == (stored[0],)


def test_killed_run_resumes_from_its_newest_checkpoint(plan: Plan) -> None:
    run = plan.runs_of(plan.studies[0], "student")[0]
    old = _stored(run.id, "FAILED", 1, 1)
    new = _stored(run.id, "RUNNING", 3, 2)
    action = decide_action(run, [old, new], force=False)
    assert action.kind == "resume" and action.start_epoch == 3 and action.stored is new
    assert action.stale == (old,)
    assert action.describe() == "resume at epoch 4"


def test_unfinished_run_without_checkpoint_is_retrained(plan: Plan) -> None:
    run = plan.runs[0]
    action = decide_action(run, [_stored(run.id, "RUNNING", 0)], force=False)
    assert action.kind == "train" and len(action.stale) == 1
    assert decide_action(run, [], force=False).kind == "train"


def test_distilled_runs_of_a_seed_form_one_group_after_teachers(plan: Plan) -> None:
    actions = [decide_action(r, [], force=False) for r in plan.runs]
    groups = form_groups(plan, actions)
    sizes = [len(g.actions) for g in groups]
    assert sizes == [1] * 6 + [3] * 3  # 3 teachers, 3 students, one group of 3 T per seed
    for group in groups[6:]:
        assert len({r.seed for r in group.runs}) == 1
        assert {r.temperature for r in group.runs} == {2.0, 4.0, 8.0}


def test_lockstep_off_trains_each_distilled_run_alone() -> None:
    plan = tiny_plan(runtime=RuntimeSpec(lockstep=False))
    groups = form_groups(plan, [decide_action(r, [], force=False) for r in plan.runs])
    assert all(len(g.actions) == 1 for g in groups)


def test_reused_runs_are_not_grouped_and_mismatched_resume_restarts_the_group(plan: Plan) -> None:
    d0 = [r for r in plan.runs_of(plan.studies[0], "distilled") if r.seed == 0]
    actions = [
        Action(d0[0], "reuse", stored=_stored(d0[0].id, "FINISHED")),
        Action(d0[1], "resume", start_epoch=2, stored=_stored(d0[1].id, "RUNNING", 2)),
        Action(d0[2], "train"),
    ]
    (group,) = form_groups(plan, actions)
    assert group.runs == (d0[1], d0[2])
    assert all(a.kind == "train" and a.start_epoch == 0 for a in group.actions)
    assert group.actions[0].stale[0].mlflow_id == actions[1].stored.mlflow_id  # type: ignore[union-attr]


def test_equal_resume_points_keep_the_group_resuming(plan: Plan) -> None:
    d0 = [r for r in plan.runs_of(plan.studies[0], "distilled") if r.seed == 0]
    actions = [Action(r, "resume", start_epoch=2, stored=_stored(r.id, "RUNNING", 2)) for r in d0]
    (group,) = form_groups(plan, actions)
    assert group.start_epoch == 2 and all(a.kind == "resume" for a in group.actions)


def test_units_keep_a_teacher_with_its_students(plan: Plan) -> None:
    units = work_units(plan)
    assert len(units) == 6  # 3 teacher units + 3 non-distilled students
    for unit in units:
        ids = {r.id for r in unit}
        assert all(r.teacher_id in ids for r in unit if r.teacher_id is not None)


@pytest.mark.parametrize("count", [1, 2, 3, 4, 7])
def test_shards_partition_the_plan_deterministically(plan: Plan, count: int) -> None:
    shares = [runs_of_share(plan, i, count) for i in range(count)]
    ids = [r.id for share in shares for r in share]
    assert sorted(ids) == sorted(r.id for r in plan.runs)  # every run exactly once
    assert shares == [runs_of_share(plan, i, count) for i in range(count)]
    for share in shares:
        here = {r.id for r in share}
        assert all(r.teacher_id in here for r in share if r.teacher_id is not None)
        positions = [plan.runs.index(r) for r in share]
        assert positions == sorted(positions)  # dependency order kept


def test_two_shards_balance_three_seeds_by_cost(plan: Plan) -> None:
    first, second = assign_units(plan, 2)
    # Teacher units (resnet20 + 3 distilled) dominate: two on one shard, one plus the cheap
    # non-distilled students on the other.
    teachers = [sum(1 for r in share if r.role == "teacher") for share in (first, second)]
    assert sorted(teachers) == [1, 2]


def test_a_lockstep_group_pays_for_one_teacher_forward_per_batch(plan: Plan) -> None:
    """The ETA's units: a group of K distilled runs costs K student steps plus one teacher
    forward per sample (resnet20 teacher, lenet5 students at 32 px, by hand from run_cost)."""
    actions = [decide_action(r, [], force=False) for r in plan.runs]
    groups = form_groups(plan, actions)
    teacher = next(r for r in plan.runs if r.role == "teacher")
    student = next(r for r in plan.runs if r.role == "student")
    teacher_forward = run_cost(plan, teacher) / (3 * teacher.recipe.epochs)
    student_step = run_cost(plan, student) / student.recipe.epochs
    group = groups[6]  # the 3 temperatures of seed 0
    costs = group_epoch_costs(plan, group)
    assert sum(costs.values()) == pytest.approx(3 * student_step + teacher_forward)
    assert group_remaining_cost(plan, group) == pytest.approx(5 * sum(costs.values()))
    solo = groups[0]
    assert group_remaining_cost(plan, solo) == pytest.approx(run_cost(plan, solo.runs[0]))


def test_a_resumed_group_counts_only_the_epochs_left(plan: Plan) -> None:
    d0 = [r for r in plan.runs_of(plan.studies[0], "distilled") if r.seed == 0]
    actions = [Action(r, "resume", start_epoch=2, stored=_stored(r.id, "RUNNING", 2)) for r in d0]
    (group,) = form_groups(plan, actions)
    per_epoch = sum(group_epoch_costs(plan, group).values())
    assert group_remaining_cost(plan, group) == pytest.approx(3 * per_epoch)  # epochs 3..5
