"""`kdspec report` of a spec with `vary`: a report per variant and their comparison."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from kdspec.analysis.records import GroupKey
from kdspec.analysis.study_analysis import analyse_study
from kdspec.analysis.variant_comparison import compare_variants
from kdspec.cli import main
from kdspec.dsl import compile_text
from kdspec.plan import Plan
from tests.analysis.mlflow_store import log_study, open_client
from tests.analysis.synthetic import (
    PlantedEffects,
    records_from_predictions,
    synthetic_predictions,
)

SPEC = """
recipe r { epochs = 2  batch_size = 64  lr = 0.05 }
study sweep {
  dataset trifeature { image_size = 32  target = shape  sensitive = color
                       generated_train = 400  generated_test = 100 }
  teacher resnet20 { recipe = r }
  student lenet5 { recipe = r }
  distill { temperatures = [2, 4]  loss = 0.2 * hard + 0.8 * soft }
  seeds = 3
  fairness { multiclass = one_vs_rest }
  vary { student { lr = [0.01, 0.05] } }
  tracking { experiment = "sweep" }
}
"""
#: Variant 1's students are weak (distillation helps a lot), variant 2's nearly teacher-level.
EFFECTS = {"sweep-v1": PlantedEffects(nds_acc=0.55), "sweep-v2": PlantedEffects(nds_acc=0.84)}


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def _fill(tmp_path: Path) -> tuple[Plan, str, dict[str, dict]]:
    plan = compile_text(SPEC)
    client, uri = open_client(tmp_path)
    logged: set[str] = set()
    all_predictions = {}
    for study in plan.studies:
        # One seed for every variant: the same test labels, as one dataset gives.
        predictions = synthetic_predictions(plan, study, n_test=600, seed=0,
                                            effects=EFFECTS[study.name])
        all_predictions[study.name] = predictions
        log_study(client, plan, study, tmp_path / "artifacts", predictions,
                  skip=frozenset(logged))
        logged |= set(study.run_ids)
    return plan, uri, all_predictions


def test_each_variant_is_reported_and_then_compared(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    plan, uri, _ = _fill(tmp_path)
    spec = tmp_path / "sweep.kdspec"
    spec.write_text(SPEC)
    out = tmp_path / "reports"
    assert main(["report", str(spec), "--tracking-uri", uri, "--out", str(out),
                 "--no-log"]) == 0
    err = capsys.readouterr().err
    assert "sweep: 2 of 2 variants compared" in err
    for name in ("sweep-v1", "sweep-v2"):
        assert (out / name / "report.md").exists()
    folder = out / "sweep"
    assert {p.name for p in folder.iterdir()} == {"comparison.md", "comparison.html",
                                                   "comparison.csv", "comparison.png"}
    text = (folder / "comparison.md").read_text()
    assert "| variant | student.lr |" in text and "| sweep-v2 | 0.05 |" in text
    # The comparison reads the same numbers as each variant's own report.
    rows = _rows(folder / "comparison.csv")
    for name in ("sweep-v1", "sweep-v2"):
        own = {(r["role"], r["temperature"]): r
               for r in _rows(out / name / "accuracy.csv")}
        mine = {(r["population"], r["temperature"]): r for r in rows
                if r["variant"] == name and r["metric"] == "accuracy"}
        assert float(mine[("DS T=4", "4.0")]["mean"]) == pytest.approx(
            float(own[("DS", "4.0")]["mean_accuracy"]))
        assert float(mine[("NDS", "")]["mean"]) == pytest.approx(
            float(own[("NDS", "")]["mean_accuracy"]))


def test_gains_and_fairness_changes_are_against_the_variants_own_nds(tmp_path: Path) -> None:
    plan, _, predictions = _fill(tmp_path)
    analyses = {s.name: analyse_study(records_from_predictions(plan, s, predictions[s.name]))
                for s in plan.studies}
    comparison = compare_variants("sweep", plan.families()["sweep"], analyses)
    assert comparison.keys == ("student.lr",) and comparison.not_reported == ()
    assert comparison.attribute == "color" and comparison.temperatures == (2.0, 4.0)
    weak, strong = comparison.rows
    for row, name in ((weak, "sweep-v1"), (strong, "sweep-v2")):
        study = plan.study(name)
        nds = np.mean([np.mean(predictions[name][r.id][0] == predictions[name][r.id][1])
                       for r in plan.runs_of(study, "student")])
        ds = np.mean([np.mean(predictions[name][r.id][0] == predictions[name][r.id][1])
                      for r in plan.runs_of(study, "distilled", 4.0)])
        assert row.gain(4.0) == pytest.approx(100 * (ds - nds))
        fairness = analyses[name].fairness
        assert fairness is not None
        expected = 100 * (fairness.summary("color", GroupKey("distilled", 4.0)).mean("dpd")
                          - fairness.summary("color", GroupKey("student")).mean("dpd"))
        assert row.fairness_change("dpd", 4.0) == pytest.approx(expected)
    # The planted effect: distillation helps the weak students far more.
    assert weak.gain(4.0) > 10 > strong.gain(4.0)


def test_a_variant_without_runs_is_named_not_compared(tmp_path: Path) -> None:
    plan, _, predictions = _fill(tmp_path)
    [first, second] = plan.families()["sweep"]
    analyses = {first.name: analyse_study(records_from_predictions(plan, first,
                                                                   predictions[first.name]))}
    comparison = compare_variants("sweep", (first, second), analyses)
    assert [r.study for r in comparison.rows] == [first.name]
    assert comparison.not_reported == (second.name,)
