"""The dry-run and end-of-run tables."""

from __future__ import annotations

from kdspec.commands.run_tables import dry_run_table, summary_table
from kdspec.runtime.executor import Preparation
from kdspec.runtime.lockstep_group import Outcome
from kdspec.runtime.scheduling import Action, form_groups
from kdspec.tracking.run_store import StoredRun
from tests.factories import tiny_plan


def test_dry_run_table_says_what_happens_to_each_run() -> None:
    plan = tiny_plan(seeds=(0,), temperatures=(2.0, 4.0, 8.0))
    teacher, student, *distilled = plan.runs
    stored = StoredRun("m1", teacher.id, "FINISHED", 1, 0, "1", "")
    actions = [Action(teacher, "reuse", stored=stored),
               Action(student, "resume", start_epoch=3,
                      stored=StoredRun("m2", student.id, "RUNNING", 3, 0, "1", "")),
               *(Action(r, "train") for r in distilled[:2])]
    prep = Preparation(actions, {distilled[2].id: "teacher missing"}, form_groups(plan, actions))
    lines = dry_run_table(prep, shard="0/1").splitlines()
    assert lines[0].split() == ["run", "role", "arch", "seed", "T", "action"]
    rows = {line.split()[0]: line for line in lines[2:-1]}
    assert rows[teacher.id].endswith("reuse")
    assert rows[student.id].endswith("resume at epoch 4")
    assert rows[distilled[0].id].endswith("train (lockstep x2)")
    assert " 2 " in rows[distilled[0].id] and rows[distilled[2].id].endswith("skip: teacher missing")
    assert lines[-1] == ("shard 0/1: 5 runs: 2 to train, 1 to resume, 1 to reuse, 1 blocked")


def test_summary_counts_and_reasons() -> None:
    plan = tiny_plan(seeds=(0,), temperatures=(2.0,))
    teacher, student, distilled = plan.runs
    table = summary_table([
        Outcome(teacher, "reused", mlflow_id="abc"),
        Outcome(student, "finished", test_acc=0.5, note="resumed at epoch 2"),
        Outcome(distilled, "failed", reason="non-finite training loss (nan) in epoch 1"),
    ])
    assert "0.5000" in table and "resumed at epoch 2" in table and "non-finite" in table
    assert table.splitlines()[-1] == "1 finished, 1 reused, 1 failed, 0 skipped"
