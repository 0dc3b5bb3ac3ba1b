"""Simulated studies with known truth, for the calibration of the report's claims.

A study has ``seeds`` seeds; each seed has a teacher, an NDS and a DS per temperature. A model's
accuracy on class c is ``sigmoid(logit)``, with

    logit = base_c + role effect (planted) + seed part (shared by a seed's NDS and DS)
            + teacher part (shared by a seed's DS) + seed factor x loading_c (shared by a
            seed's models) + model factor x loading_c + superclass part + model noise,

and the DS accuracy may also be scaled by ``r(T)`` (an accuracy-only change: every class by the
same factor, which the ratio normalisation removes). Each model then predicts a balanced test
set of ``per_class`` samples per class: right with its class accuracy, otherwise a uniformly
drawn other class. Group fairness: a binary attribute (half the samples, independent of the
class); a model with a group gap ``g`` turns a share ``g`` of its right answers on group 1 into
wrong ones. No gap anywhere is the null of every fairness claim.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from kdspec.analysis.records import RunPredictions, StudyRecords
from kdspec.dsl import compile_text
from kdspec.plan import Plan, Study

ATTRIBUTE = "color"


@dataclass(frozen=True)
class Scenario:
    """One simulated design and what is planted in it (all logit effects scale with w(T), which
    rises linearly from 0.25 at the lowest T to 1 at the highest)."""

    name: str
    null: bool
    classes: int = 10
    seeds: int = 5
    temperatures: tuple[float, ...] = (1.0, 2.0, 4.0, 6.0, 8.0)
    per_class: int = 100
    model_sd: float = 0.15
    pair_sd: float = 0.0
    teacher_sd: float = 0.0
    seed_factor_sd: float = 0.0
    model_factor_sd: float = 0.0
    superclasses: int = 0
    superclass_sd: float = 0.0
    #: DS accuracy factor at the lowest and highest T (1, 1: no accuracy change).
    accuracy_scale: tuple[float, float] = (1.0, 1.0)
    #: Logit shift of three classes (+, -, +) in every DS, times w(T).
    few: float = 0.0
    #: sd of a per-class logit shift of every DS, times w(T).
    spread: float = 0.0
    #: Group gap of the NDS, and of the DS at the lowest and highest T.
    nds_gap: float = 0.0
    ds_gap: tuple[float, float] = (0.0, 0.0)
    fairness: bool = True
    #: Which claims are true (names as in ``claim_key``); empty for a null scenario.
    true_claims: tuple[str, ...] = field(default_factory=tuple)
    #: The paper's Trifeature design (its Table 2 effect sizes power the fairness claims).
    paper_design: bool = False


def spec_text(s: Scenario, *, permutations: int) -> str:
    """A spec for the scenario's design (never trained: it gives the plan and its options)."""
    temps = ", ".join(f"{t:g}" for t in s.temperatures)
    if s.fairness or s.paper_design:
        dataset = ("dataset trifeature { image_size = 32  target = shape  sensitive = color  "
                   "generated_train = 1000  generated_test = 1000 }")
        fairness = "fairness { metrics = [dpd, eod]  multiclass = one_vs_rest  aggregate = mean }"
        arch = "teacher resnet20 { recipe = r }\n  student lenet5 { recipe = r }"
    else:
        dataset = "dataset cifar100 { }" if s.classes == 100 else "dataset cifar10 { }"
        fairness = ""
        arch = "teacher resnet20 { recipe = r }\n  student lenet5 { recipe = r }"
    return f"""recipe r {{ epochs = 1  batch_size = 64  lr = 0.1 }}
study sim {{
  {dataset}
  {arch}
  distill {{ temperatures = [{temps}]  loss = 0.2 * hard + 0.8 * soft }}
  seeds = {s.seeds}
  {fairness}
  analysis {{ bootstrap = 0  permutations = {permutations} }}
}}
"""


def scenario_plan(s: Scenario, *, permutations: int) -> Plan:
    return compile_text(spec_text(s, permutations=permutations), f"<{s.name}>")


def _weights(temperatures: tuple[float, ...]) -> np.ndarray:
    t = np.array(temperatures)
    share = (t - t.min()) / (t.max() - t.min()) if t.max() > t.min() else np.zeros_like(t)
    return 0.25 + 0.75 * share


def simulate_records(s: Scenario, plan: Plan, rng: np.random.Generator) -> StudyRecords:
    """One simulated study's records (what the report reads from MLflow)."""
    study: Study = plan.studies[0]
    c, k = s.classes, len(s.temperatures)
    w = _weights(s.temperatures)
    base = rng.normal(1.2, 0.5, c)
    loading = rng.normal(0.0, 1.0, c)
    superclass = np.arange(c) % s.superclasses if s.superclasses else np.zeros(c, dtype=int)
    planted = np.zeros(c)
    if s.few:
        planted[:3] = s.few * np.array([1.0, -1.0, 1.0])
    if s.spread:
        planted = planted + rng.normal(0.0, s.spread, c)
    y_true = np.repeat(np.arange(c), s.per_class)
    group = (rng.random(y_true.size) < 0.5).astype(np.int64)
    scale = np.interp(w, [w.min(), w.max()], s.accuracy_scale) if k > 1 else \
        np.array([s.accuracy_scale[1]])
    gaps = np.interp(w, [w.min(), w.max()], s.ds_gap) if k > 1 else np.array([s.ds_gap[1]])

    def model_logits(seed_part: np.ndarray, seed_factor: float) -> np.ndarray:
        noise = rng.normal(0.0, s.model_sd, c)
        factor = s.model_factor_sd * rng.normal() * loading
        supers = (rng.normal(0.0, s.superclass_sd, s.superclasses)[superclass]
                  if s.superclasses else 0.0)
        return base + seed_part + seed_factor * loading + noise + factor + supers

    def predict(logits: np.ndarray, factor: float, gap: float) -> np.ndarray:
        accuracy = np.clip(factor / (1.0 + np.exp(-logits)), 0.0, 0.995)
        right = rng.random(y_true.size) < accuracy[y_true]
        right &= ~((group == 1) & (rng.random(y_true.size) < gap))
        wrong = (y_true + rng.integers(1, c, y_true.size)) % c
        return np.where(right, y_true, wrong)

    runs = []
    for seed in study.seeds:
        pair = rng.normal(0.0, s.pair_sd, c)
        teacher = rng.normal(0.0, s.teacher_sd, c)
        seed_factor = s.seed_factor_sd * rng.normal()
        for run_id in study.run_ids:
            run = plan.run(run_id)
            if run.seed != seed:
                continue
            if run.role == "teacher":
                y_pred = predict(model_logits(np.zeros(c), 0.0) + 1.0, 1.0, 0.0)
            elif run.role == "student":
                y_pred = predict(model_logits(pair, seed_factor), 1.0, s.nds_gap)
            else:
                j = s.temperatures.index(run.temperature)
                logits = model_logits(pair + teacher, seed_factor) + w[j] * planted
                y_pred = predict(logits, float(scale[j]), float(gaps[j]))
            runs.append(RunPredictions(
                kdspec_id=run.id, mlflow_run_id=f"sim-{run.id}", role=run.role, seed=seed,
                temperature=run.temperature, y_true=y_true, y_pred=y_pred,
                attributes={ATTRIBUTE: group}))
    return StudyRecords(study=study, runs=tuple(runs), problems=(), parent_run_id=None,
                        tracking_uri="sqlite:///simulated")


NULL_SCENARIOS = (
    Scenario("independent classes", null=True),
    Scenario("correlated classes (seed and model factors)", null=True, seed_factor_sd=0.3,
             model_factor_sd=0.15),
    Scenario("100 classes in 10 superclasses", null=True, classes=100, superclasses=10,
             superclass_sd=0.25, per_class=20, fairness=False),
    Scenario("accuracy-only change (DS accuracy x0.8 -> x1.1 with T, no group effect)",
             null=True, accuracy_scale=(0.8, 1.1)),
    Scenario("paired seeds and a shared teacher (no effect)", null=True, pair_sd=0.15,
             teacher_sd=0.2),
)
PLANTED_SCENARIOS = (
    Scenario("three classes changed", null=False, few=1.0, pair_sd=0.1,
             true_claims=("class change", "#SC rises")),
    Scenario("every class changed a little", null=False, spread=0.5, pair_sd=0.1,
             true_claims=("class change", "#SC rises")),
    Scenario("group gap shrinking with T", null=False, nds_gap=0.12, ds_gap=(0.1, 0.02),
             true_claims=("fairer", "fairness falls")),
)
