"""The methods report's document without a store: the answer when nothing is supported, an
incomplete block's provisional verdicts, the ledger's reference rows and its I(f)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from bench.method_scenarios import MethodsScenario, methods_plan, simulate_block
from kdspec.analysis.accuracy import study_accuracy
from kdspec.analysis.claims import ClaimsResult
from kdspec.analysis.individual_fairness import (
    IndividualFairnessResult,
    PairScore,
    RunIndividualFairness,
)
from kdspec.analysis.method_design import method_arm
from kdspec.analysis.method_ledger import arm_individual, methods_ledger
from kdspec.analysis.methods_report import (
    MSG_INCOMPLETE,
    MSG_NONE_BEYOND,
    MSG_NOT_REPORTED,
    methods_document,
    write_methods_report,
)
from kdspec.analysis.records import GroupKey
from kdspec.analysis.significance import study_significance
from kdspec.analysis.study_analysis import StudyAnalysis
from kdspec.analysis.study_progress import StudyProgress
from kdspec.plan import IndividualFairnessSpec

BLOCK = MethodsScenario("document", null=True, seeds=3, methods=("kd", "at", "label_smoothing"),
                        fairness=False)


def _ledger(late: str = ""):  # type: ignore[no-untyped-def]
    plan = methods_plan(BLOCK, permutations=99)
    records = simulate_block(BLOCK, plan, np.random.default_rng(1))
    arms = []
    for study in plan.studies:
        own = records[study.name]
        if study.method.name == late:
            states = ["finished"] * (len(study.run_ids) - 2) + ["live", "fresh"]
            own = replace(own, progress=StudyProgress.of(states))  # type: ignore[arg-type]
        accuracy = study_accuracy(own)
        arms.append(method_arm(study, StudyAnalysis(
            own, accuracy, study_significance(accuracy, study.analysis), (), None,
            ClaimsResult((), 0.05, ""))))
    return methods_ledger("sim", (), arms)


def test_nothing_supported_is_said_plainly(tmp_path: Path) -> None:
    ledger = _ledger()
    document = methods_document([ledger], tmp_path)
    finding = document.sections[0].finding or ""
    assert finding.startswith("Beyond the NDS: " + MSG_NONE_BEYOND.format(
        what="changes class-level accuracy"))
    assert "Beyond label smoothing: " + MSG_NONE_BEYOND.format(
        what="differs from label smoothing class by class") in finding
    assert "Groups over" not in finding  # no sensitive attribute
    ledger_table = document.sections[0].tables[1]
    assert [row[0] for row in ledger_table.rows] == ["teacher", "NDS", "kd", "at",
                                                     "label_smoothing (control)"]
    assert ledger_table.rows[2][6] == "-"  # KD is not compared with itself
    assert "Published top-1: none" in ledger_table.caption


def test_an_incomplete_arm_makes_every_verdict_provisional(tmp_path: Path) -> None:
    document = methods_document([_ledger(late="at")], tmp_path)
    assert document.incomplete
    assert document.status.startswith(MSG_INCOMPLETE.split("{")[0] + "at: 7 of 9 runs finished: "
                                   "1 training, 1 not started")
    grid = document.sections[0].tables[0]
    assert all(cell.startswith("provisional: ") for row in grid.rows for cell in row[1:]
               if cell != "-")
    assert (document.sections[0].finding or "").startswith("Provisional")


def test_the_files_are_written(tmp_path: Path) -> None:
    written = write_methods_report([_ledger()], tmp_path)
    assert {p.name for p in written} == {"methods.md", "methods.html", "methods.csv",
                                         "method_claims.csv", "method_class_map.csv",
                                         "method_class_map.png"}


def test_an_arm_without_a_usable_run_is_named_on_the_first_line(tmp_path: Path) -> None:
    document = methods_document([replace(_ledger(), not_reported=("dist",))], tmp_path)
    assert document.incomplete
    assert f"dist: {MSG_NOT_REPORTED}" in document.status


def test_individual_fairness_is_the_mean_over_t_then_over_complete_seeds() -> None:
    values = {(0, 2.0): 0.10, (0, 4.0): 0.06, (1, 2.0): 0.12, (1, 4.0): 0.08, (2, 2.0): 0.5}
    runs = tuple(RunIndividualFairness(f"r{s}{t}", GroupKey("distilled", t), s,
                                       PairScore(v, 10, 0), 0.9)
                 for (s, t), v in values.items())
    result = IndividualFairnessResult(IndividualFairnessSpec(), runs, (), (), None)
    arm = SimpleNamespace(analysis=SimpleNamespace(individual_fairness=result),
                          study=SimpleNamespace(temperatures=(2.0, 4.0)))
    found = arm_individual(arm)  # type: ignore[arg-type]
    assert found is not None and found.n == 2  # seed 2 has no DS at T = 4
    assert found.mean == np.mean([(0.10 + 0.06) / 2, (0.12 + 0.08) / 2])
    assert found.sd == np.std([(0.10 + 0.06) / 2, (0.12 + 0.08) / 2], ddof=1)
