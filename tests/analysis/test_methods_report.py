"""`kdspec report` of a methods block on a real MLflow store: the methods report's first screen,
its ledger against numbers recomputed by hand from the logged predictions, the family of
claims against a hand-written Holm, and flagged runs on the first screen."""

from __future__ import annotations

import contextlib
import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from kdspec.analysis.accuracy import class_accuracy
from kdspec.analysis.flagged_runs import MSG_FLAGGED
from kdspec.analysis.methods_report import MSG_COMPLETE
from kdspec.cli import main
from kdspec.dsl import compile_text
from kdspec.plan import Plan
from kdspec.tracking import schema
from tests.analysis.mlflow_store import log_study, open_client
from tests.analysis.synthetic import Predictions

pytestmark = pytest.mark.integration

SPEC = """
recipe r { epochs = 2  batch_size = 64  lr = 0.05 }
study methods {
  dataset trifeature { image_size = 32  target = shape  sensitive = color
                       generated_train = 400  generated_test = 100 }
  teacher resnet32 { recipe = r }
  student resnet20 { recipe = r }
  distill { temperatures = [4]  loss = 0.2 * hard + 0.8 * soft }
  seeds = 4
  fairness { multiclass = one_vs_rest }
  vary { distill { method = [kd, dkd, label_smoothing, random_teacher] } }
  tracking { experiment = "methods" }
}
"""
#: DKD's students lose 0.35 of class 3's ('circle') accuracy: a change beyond the NDS, KD and
#: label smoothing that 4 seeds find after Holm over the whole block.
HURT = 3
PER_CLASS = 100


def _exact(y_true: np.ndarray, class_acc: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Predictions right on exactly round(acc_c x n_c) samples of each class (no binomial
    noise), the others a uniformly drawn other class."""
    y_pred = (y_true + rng.integers(1, 10, y_true.size)) % 10
    for c, acc in enumerate(class_acc):
        members = np.flatnonzero(y_true == c)
        right = rng.choice(members, int(round(acc * members.size)), replace=False)
        y_pred[right] = c
    return y_pred


def block_predictions(plan: Plan) -> dict[str, Predictions]:
    """Per study, its runs' predictions; a run shared by arms (teachers, NDS) gets one set.
    Every DS is the NDS profile + 0.04; DKD's loses ``HURT``; each run adds N(0, 0.01) per
    class; no group effect."""
    rng = np.random.default_rng(0)
    y_true = np.repeat(np.arange(10), PER_CLASS)
    group = (rng.random(y_true.size) < 0.5).astype(np.int64)
    nds = np.clip(0.7 + rng.normal(0.0, 0.08, 10), 0.4, 0.9)
    teacher = np.clip(nds + 0.12, 0.0, 0.97)
    made: dict[str, np.ndarray] = {}
    out: dict[str, Predictions] = {}
    for study in plan.studies:
        out[study.name] = {}
        for run_id in study.run_ids:
            run = plan.run(run_id)
            if run_id not in made:
                profile = {"teacher": teacher, "student": nds}.get(run.role, nds + 0.04)
                if run.role == "distilled" and study.method.name == "dkd":
                    profile = profile - 0.35 * (np.arange(10) == HURT)
                noisy = np.clip(profile + rng.normal(0.0, 0.01, 10), 0.05, 0.99)
                made[run_id] = _exact(y_true, noisy, rng)
            out[study.name][run_id] = (y_true, made[run_id], {"color": group})
    return out


@dataclass(frozen=True)
class MethodsReport:
    plan: Plan
    predictions: dict[str, Predictions]
    out: Path
    code: int
    stderr: str
    flagged_run: str  # MLflow id of the flagged DS run


def _read(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def methods_report(tmp_path_factory: pytest.TempPathFactory) -> MethodsReport:
    root = tmp_path_factory.mktemp("methods-store")
    plan = compile_text(SPEC)
    client, uri = open_client(root)
    logged: set[str] = set()
    predictions = block_predictions(plan)
    for study in plan.studies:
        log_study(client, plan, study, root / "artifacts", predictions[study.name],
                  skip=frozenset(logged))
        logged |= set(study.run_ids)
    flagged = next(r for r in plan.runs_of(plan.studies[0], "distilled") if r.seed == 1)
    found = client.search_runs([e.experiment_id for e in client.search_experiments()],
                               f"tags.`{schema.TAG_RUN_ID}` = '{flagged.id}'")
    client.set_tag(found[0].info.run_id, schema.TAG_FLAG_LOSS,
                   "training loss did not fall: 2.303 in epoch 1, 2.304 in epoch 2")
    spec = root / "methods.kdspec"
    spec.write_text(SPEC)
    out = root / "reports"
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        code = main(["report", str(spec), "--tracking-uri", uri, "--out", str(out), "--no-log"])
    return MethodsReport(plan, predictions, out / "methods", code, stderr.getvalue(),
                         found[0].info.run_id)


def test_the_methods_report_is_written_beside_the_comparison(
        methods_report: MethodsReport) -> None:
    assert methods_report.code == 0
    assert "methods: 4 method arms, claims after Holm over the block" in methods_report.stderr
    names = {p.name for p in methods_report.out.iterdir()}
    assert {"methods.md", "methods.html", "methods.csv", "method_claims.csv",
            "method_class_map.csv", "method_class_map.png", "comparison.md"} <= names


def test_the_first_screen_answers_first(methods_report: MethodsReport) -> None:
    lines = [line for line in (methods_report.out / "methods.md").read_text().splitlines()
             if line]
    total = len({r for s in methods_report.plan.studies for r in s.run_ids})
    assert lines[0] == "**" + MSG_COMPLETE.format(total=total, arms=4) + ".**"
    assert lines[1] == "**" + MSG_FLAGGED.format(count=1, used=total) + "**"
    assert lines[2].startswith("- DS kd T=4 seed 1 (kdspec id ")
    assert methods_report.flagged_run in lines[2] and "training loss did not fall" in lines[2]
    finding = next(line for line in lines if line.startswith("**Main finding.**"))
    beyond_nds = finding.split("Beyond the NDS: ")[1].split(". Beyond")[0]
    assert beyond_nds.startswith("dkd changes class-level accuracy (")
    assert "circle -0." in beyond_nds
    assert "Beyond label smoothing: dkd (" in finding
    assert "Family: Holm over the" in finding and "alpha = 0.05" in finding
    assert "n = 4 seeds per comparison" in finding
    assert finding.index("Main finding") < (methods_report.out / "methods.md").read_text() \
        .index("| arm | n |")


def _holm(pvalues: list[float]) -> list[float]:
    """Holm's step-down by hand: sorted p_(i) * (m - i + 1), running maximum, capped at 1."""
    order = sorted(range(len(pvalues)), key=lambda i: pvalues[i])
    out, running = [0.0] * len(pvalues), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(pvalues) - rank) * pvalues[i]))
        out[i] = running
    return out


def test_the_family_is_holm_over_every_claim_with_a_p_value(
        methods_report: MethodsReport) -> None:
    rows = _read(methods_report.out / "method_claims.csv")
    tested = [r for r in rows if r["p"]]
    assert {r["family_size"] for r in rows} == {str(len(tested))}
    assert {r["correction"] for r in rows} == {"holm"}
    expected = _holm([float(r["p"]) for r in tested])
    assert [float(r["p_holm"]) for r in tested] == pytest.approx(expected)
    kinds = {(r["arm"], r["kind"]) for r in rows}
    assert ("dkd", "vs label_smoothing") in kinds and ("kd", "vs random_teacher") in kinds
    assert ("label_smoothing", "vs label_smoothing") not in kinds
    # The label-smoothing control's comparison with the random teacher is counted once.
    assert ("label_smoothing", "vs random_teacher") not in kinds
    assert ("random_teacher", "vs label_smoothing") in kinds
    dkd = {r["kind"]: r for r in rows if r["arm"] == "dkd"
           and ("beyond chance" in r["claim"] or r["kind"] != "paper")}
    assert dkd["paper"]["verdict"] == "supported"
    assert dkd["vs label_smoothing"]["verdict"] == "supported"
    flagged = [r for r in rows if r["flagged_runs"]]
    assert flagged and all(r["arm"] in ("kd", "label_smoothing", "random_teacher")
                           or r["kind"] != "paper" for r in flagged)


def _per_seed(predictions: Predictions, plan: Plan, study_name: str, role: str
              ) -> tuple[np.ndarray, np.ndarray]:
    """Per seed (seed order): overall accuracy and ratio-normalised class accuracy."""
    study = plan.study(study_name)
    runs = sorted(plan.runs_of(study, role), key=lambda r: r.seed)  # type: ignore[arg-type]
    acc, x = [], []
    for run in runs:
        y_true, y_pred, _ = predictions[run.id]
        overall, per_class = class_accuracy(y_true, y_pred, num_classes=10)
        acc.append(overall)
        x.append(per_class / overall)
    return np.array(acc), np.array(x)


def test_the_ledger_matches_numbers_recomputed_from_the_predictions(
        methods_report: MethodsReport) -> None:
    plan, predictions = methods_report.plan, methods_report.predictions["methods-v2"]
    acc, x = _per_seed(predictions, plan, "methods-v2", "distilled")
    _, nds_x = _per_seed(predictions, plan, "methods-v2", "student")
    rows = {(r["arm"], r["quantity"]): r for r in _read(methods_report.out / "methods.csv")}
    assert float(rows[("dkd", "accuracy")]["mean"]) == pytest.approx(acc.mean())
    assert float(rows[("dkd", "accuracy")]["sd"]) == pytest.approx(acc.std(ddof=1))
    p = stats.ttest_rel(x, nds_x, axis=0).pvalue
    adjusted = np.array(_holm(list(p)))
    change = (x - nds_x).mean(axis=0)
    up = int(((adjusted < 0.05) & (change > 0)).sum())
    down = int(((adjusted < 0.05) & (change < 0)).sum())
    assert int(rows[("dkd", "classes_up_vs_nds")]["mean"]) == up
    assert int(rows[("dkd", "classes_down_vs_nds")]["mean"]) == down
    assert down >= 1
    cells = {(r["arm"], r["class"]): r for r in _read(methods_report.out
                                                      / "method_class_map.csv")}
    circle = cells[("dkd", "circle")]
    assert float(circle["p_holm"]) == pytest.approx(adjusted[HURT])
    assert circle["significant"] == "true"
    assert float(circle["significant_change"]) == pytest.approx(change[HURT])
    kd_circle = cells[("kd", "circle")]
    assert (kd_circle["significant_change"] == "") == (kd_circle["significant"] == "false")


def test_excess_fairness_change_is_the_paired_mean(methods_report: MethodsReport) -> None:
    rows = {(r["arm"], r["quantity"]): r for r in _read(methods_report.out / "methods.csv")}
    excess = float(rows[("kd", "dpd_excess")]["mean"])
    change = float(rows[("kd", "dpd_excess_ds_minus_nds")]["mean"])
    assert math.isfinite(excess) and math.isfinite(change)
    assert rows[("kd", "dpd_excess")]["n"] == "4"
    assert ("kd", "published_top1") not in rows  # Trifeature is not the CIFAR-100 benchmark


def test_a_flagged_run_is_named_by_every_study_report_that_uses_it(
        methods_report: MethodsReport) -> None:
    text = (methods_report.out.parent / "methods-v1" / "report.md").read_text()
    lines = [line for line in text.splitlines() if line]
    assert lines[1].startswith("**Flagged: 1 of the")
    assert methods_report.flagged_run in lines[2]
    assert "rests on 1 flagged run: DS T=4 seed 1" in text
    assert "flagged:" in methods_report.stderr
