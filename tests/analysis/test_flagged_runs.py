"""Flagged runs (``kdspec.flag.*`` tags) on the report's first screen and in the verdicts."""

from __future__ import annotations

import numpy as np

from kdspec.analysis.claims import ClaimTest
from kdspec.analysis.flagged_runs import (
    MSG_FLAGGED,
    MSG_RESTS_ON,
    claim_flag_note,
    flagged_lines,
    rests_on,
)
from kdspec.analysis.records import RunPredictions, StudyRecords
from kdspec.analysis.report_html import render_html
from kdspec.analysis.report_markdown import render_markdown
from kdspec.analysis.report_model import ReportDocument
from tests.factories import tiny_plan

LOSS = ("loss", "training loss did not fall: 2.3 in epoch 1, 2.31 in epoch 3")
CHANCE = ("at_chance", "at chance: 10.2 % on 10 classes")


def _records(flags: dict[tuple[str, int], tuple[tuple[str, str], ...]]) -> StudyRecords:
    plan = tiny_plan()
    study = plan.studies[0]
    y = np.arange(10)
    runs = tuple(RunPredictions(kdspec_id=r.id, mlflow_run_id=f"m-{r.id}", role=r.role,
                                seed=r.seed, temperature=r.temperature, y_true=y, y_pred=y,
                                flags=flags.get((r.role, r.seed), ()))
                 for r in (plan.run(i) for i in study.run_ids))
    return StudyRecords(study=study, runs=runs, problems=(), parent_run_id=None,
                        tracking_uri="sqlite:///unused.db")


def test_no_flag_no_line() -> None:
    records = _records({})
    assert flagged_lines(records.runs, len(records.runs)) == ()
    assert rests_on(records.runs) == ""
    assert render_markdown(ReportDocument("t", status="Complete.")).splitlines()[2] == "# t"


def test_each_flagged_run_is_listed_with_its_reasons_under_the_status_line() -> None:
    records = _records({("student", 1): (LOSS,), ("teacher", 0): (CHANCE, LOSS)})
    lines = flagged_lines(records.runs, len(records.runs))
    assert lines[0] == MSG_FLAGGED.format(count=2, used=len(records.runs))
    teacher = next(r for r in records.runs if r.role == "teacher" and r.seed == 0)
    assert lines[1] == (f"teacher seed 0 (kdspec id {teacher.kdspec_id}, MLflow run "
                        f"m-{teacher.kdspec_id}): {CHANCE[1]}; {LOSS[1]}")
    assert lines[2].startswith("NDS seed 1 (")
    markdown = render_markdown(ReportDocument("t", status="Complete.", notices=lines))
    assert markdown.splitlines()[:5] == ["**Complete.**", "", f"**{lines[0]}**", "",
                                         f"- {lines[1]}"]
    html = render_html(ReportDocument("t", status="Complete.", notices=lines))
    assert html.index("Complete.") < html.index("Flagged: 2 of") < html.index("<h1>")


def test_a_verdict_names_the_flagged_runs_of_the_roles_its_test_reads() -> None:
    records = _records({("teacher", 0): (CHANCE,), ("distilled", 1): (LOSS,)})
    nds_claim = ClaimTest("c", "t", "a", "r", 0.5)
    teacher_claim = ClaimTest("c", "t", "a", "r", 0.5, roles=("teacher", "distilled"))
    assert claim_flag_note(nds_claim, records) == MSG_RESTS_ON.format(
        count=2, s="s", runs="DS T=2 seed 1, DS T=4 seed 1")
    assert claim_flag_note(teacher_claim, records).startswith("rests on 3 flagged runs: teacher")
    assert rests_on([r for r in records.runs if r.role == "student"]) == ""
