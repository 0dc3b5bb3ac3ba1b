"""Simulated methods blocks with known truth, for the calibration of the per-method claims.

A block is ``vary { distill { method = [kd, dkd, dist, at, label_smoothing, random_teacher] } }``
on Trifeature-sized data (10 classes, 100 test samples per class, a binary attribute), T = 4,
5 seeds: one study per arm, sharing the teachers and the NDS by run id, as the compiler makes
them. Each model's class accuracy is ``sigmoid(logit)`` as in ``bench/claim_scenarios.py``:

    logit = base_c + seed part (shared by a seed's NDS and every arm's DS)
            + teacher part (shared by the DS of a seed that learn from one teacher; the
              random-teacher arm has its own) + seed factor x loading_c (shared by a seed's
              models) + model factor x loading_c + model noise + the arm's planted shift,

and an arm's DS accuracy may be scaled by its own factor (an accuracy-only change, which the
ratio normalisation removes). The NDS and the teachers are simulated once per seed and read by
every arm, like runs shared by run id. No group effect anywhere: the fairness claims are null.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from bench.claim_scenarios import ATTRIBUTE
from kdspec.analysis.records import RunPredictions, StudyRecords
from kdspec.dsl import compile_text
from kdspec.plan import Plan

METHODS = ("kd", "dkd", "dist", "at", "label_smoothing", "random_teacher")


@dataclass(frozen=True)
class MethodsScenario:
    """One simulated methods block and what is planted in it."""

    name: str
    null: bool
    seeds: int = 5
    classes: int = 10
    per_class: int = 100
    model_sd: float = 0.15
    pair_sd: float = 0.15
    teacher_sd: float = 0.2
    seed_factor_sd: float = 0.3
    model_factor_sd: float = 0.15
    #: DS accuracy factor per arm, (arm, factor) pairs (missing: 1, no change).
    scales: tuple[tuple[str, float], ...] = ()
    #: Logit shift of three classes (+, -, +) in the DS of this arm ('' : none).
    planted_arm: str = ""
    planted: float = 0.0
    methods: tuple[str, ...] = METHODS
    #: A binary sensitive attribute and the fairness claims (off: class claims only).
    fairness: bool = True


def spec_text(s: MethodsScenario, *, permutations: int) -> str:
    """A spec for the block (never trained: it gives the plan and its options)."""
    fairness = ("fairness { metrics = [dpd, eod]  multiclass = one_vs_rest  aggregate = mean }"
                if s.fairness else "")
    return f"""recipe r {{ epochs = 1  batch_size = 64  lr = 0.1 }}
study sim {{
  dataset trifeature {{ image_size = 32  target = shape  sensitive = color
                       generated_train = 1000  generated_test = 1000 }}
  teacher resnet32 {{ recipe = r }}
  student resnet20 {{ recipe = r }}
  distill {{ temperatures = [4]  loss = 0.2 * hard + 0.8 * soft }}
  seeds = {s.seeds}
  {fairness}
  analysis {{ bootstrap = 0  permutations = {permutations} }}
  vary {{ distill {{ method = [{", ".join(s.methods)}] }} }}
}}
"""


@functools.cache
def methods_plan(s: MethodsScenario, *, permutations: int) -> Plan:
    """The block's plan (compiled once per scenario)."""
    return compile_text(spec_text(s, permutations=permutations), f"<{s.name}>")


def simulate_block(s: MethodsScenario, plan: Plan, rng: np.random.Generator
                   ) -> dict[str, StudyRecords]:
    """One simulated block: the records of every arm's study, by study name."""
    c = s.classes
    base = rng.normal(1.2, 0.5, c)
    loading = rng.normal(0.0, 1.0, c)
    shift = np.zeros(c)
    shift[:3] = s.planted * np.array([1.0, -1.0, 1.0])
    y_true = np.repeat(np.arange(c), s.per_class)
    group = (rng.random(y_true.size) < 0.5).astype(np.int64)

    def predict(logits: np.ndarray, factor: float) -> np.ndarray:
        accuracy = np.clip(factor / (1.0 + np.exp(-logits)), 0.0, 0.995)
        right = rng.random(y_true.size) < accuracy[y_true]
        wrong = (y_true + rng.integers(1, c, y_true.size)) % c
        return np.where(right, y_true, wrong)

    def logits(part: np.ndarray, seed_factor: float) -> np.ndarray:
        return (base + part + seed_factor * loading + rng.normal(0.0, s.model_sd, c)
                + s.model_factor_sd * rng.normal() * loading)

    per_seed = {}
    for seed in plan.studies[0].seeds:
        teachers = {"": rng.normal(0.0, s.teacher_sd, c),
                    "random_teacher": rng.normal(0.0, s.teacher_sd, c)}
        per_seed[seed] = (rng.normal(0.0, s.pair_sd, c), teachers,
                          s.seed_factor_sd * rng.normal())
    predictions: dict[str, np.ndarray] = {}
    records = {}
    for study in plan.studies:
        arm = study.method.name
        runs = []
        for run_id in study.run_ids:
            run = plan.run(run_id)
            pair, teachers, seed_factor = per_seed[run.seed]
            if run_id not in predictions:
                if run.role == "teacher":
                    predictions[run_id] = predict(logits(np.zeros(c), 0.0) + 1.0, 1.0)
                elif run.role == "student":
                    predictions[run_id] = predict(logits(pair, seed_factor), 1.0)
                else:
                    teacher = teachers.get(arm, teachers[""])
                    planted = shift if arm == s.planted_arm else 0.0
                    predictions[run_id] = predict(logits(pair + teacher, seed_factor)
                                                  + planted, dict(s.scales).get(arm, 1.0))
            runs.append(RunPredictions(
                kdspec_id=run.id, mlflow_run_id=f"sim-{run.id}", role=run.role, seed=run.seed,
                temperature=run.temperature, y_true=y_true, y_pred=predictions[run_id],
                attributes={ATTRIBUTE: group}))
        records[study.name] = StudyRecords(study=study, runs=tuple(runs), problems=(),
                                           parent_run_id=None,
                                           tracking_uri="sqlite:///simulated")
    return records


METHOD_NULLS = (
    MethodsScenario("methods null: every arm the same as KD, KD the same as the NDS "
                    "(correlated classes, paired seeds)", null=True),
    MethodsScenario("methods null: accuracy-only change per arm (x0.8 to x1.05)", null=True,
                    scales=(("dkd", 1.05), ("dist", 0.95), ("at", 0.9),
                            ("label_smoothing", 0.85), ("random_teacher", 0.8))),
)
METHOD_PLANTED = (
    MethodsScenario("methods planted: DKD shifts three classes by 1.5 logits (+, -, +)",
                    null=False, planted_arm="dkd", planted=1.5),
    MethodsScenario("methods planted, 10 seeds: DKD shifts three classes by 1.5 logits",
                    null=False, planted_arm="dkd", planted=1.5, seeds=10),
)
#: The claims of the planted arm that the planted shift makes true (or may: the overall
#: accuracy moves little, so 'bias without accuracy change' can be true too).
PLANTED_TRUE = ("class change", "bias w/o accuracy", "vs label_smoothing", "vs random_teacher")
