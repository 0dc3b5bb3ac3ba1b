"""The executor trains studies of every method and control on an in-memory store (tiny real
trainings, a second or two each): the variants of a ``vary`` over the method share their
teachers and NDS and train their distilled runs in one lockstep group, each run under its own
study; what each run records says how it learned, which teacher signal it had and why."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from kdspec.distillation_methods import (
    DKD,
    KD,
    DeclaredMethod,
    FitNet,
    LabelSmoothing,
    RandomTeacher,
    SelfDistillation,
)
from kdspec.plan import Plan, RuntimeSpec
from kdspec.runtime.executor import Executor
from kdspec.runtime.run_options import RunOptions
from kdspec.runtime.scheduling import Action, form_groups
from kdspec.tracking import schema
from tests.factories import dataset_spec, method_plan, tiny_recipe
from tests.runtime.memory_store import MemoryRun, MemoryStore

LOGGER = logging.getLogger("kdspec.test")


def _plan(methods: dict[str, DeclaredMethod], **settings: object) -> Plan:
    fields: dict[str, object] = dict(
        dataset=dataset_spec("digits", train_subset=192, test_subset=64),
        teacher_arch="lenet5", student_arch="lenet5", temperatures=(4.0,), seeds=(0,),
        teacher_recipe=tiny_recipe(epochs=1, batch_size=64),
        student_recipe=tiny_recipe(epochs=1, batch_size=64))
    fields.update(settings)
    return method_plan(methods, **fields)


def _run(plan: Plan, store: MemoryStore, tmp_path: Path) -> dict[str, str]:
    executor = Executor(plan, RunOptions(tracking_uri=store.uri, quiet=True, settle_seconds=0.0,
                                         poll_seconds=0.01, log_dir=tmp_path / "logs"),
                        LOGGER, open_store=lambda uri, read_only=False: store)
    prep = executor.prepare(executor.my_runs())
    return {o.run.id: o.status for o in executor.execute(prep, spec_text=None)}


def _stored(plan: Plan, store: MemoryStore, study: str) -> MemoryRun:
    """The one stored distilled run of ``study``."""
    [run] = plan.runs_of(plan.study(study), "distilled")
    [stored] = store.nested(run.id)
    return stored


def test_method_variants_train_in_one_group_each_run_under_its_study(tmp_path: Path) -> None:
    plan = _plan({"m_kd": KD(), "m_dkd": DKD(warmup=1),
                  "m_fitnet": FitNet(hint="pool2", guided="pool2"),
                  "m_ls": LabelSmoothing()})
    distilled = [r for r in plan.runs if r.role == "distilled"]
    [group] = form_groups(plan, [Action(r, "train") for r in distilled])
    assert len(group.runs) == 4 and group.label == (
        "distilled lenet5 seed 0: kd T=4, dkd T=4, fitnet, label_smoothing T=4")
    store = MemoryStore()
    assert set(_run(plan, store, tmp_path).values()) == {"finished"}
    # Teacher and NDS trained once, for every variant.
    assert len(store.nested()) == 2 + 4
    parents = {s.name: store.parents(s)[0].mlflow_id for s in plan.studies}
    for study in plan.studies:
        stored = _stored(plan, store, study.name)
        assert stored.name.startswith(f"{study.name}.distilled")
        assert stored.tags["mlflow.parentRunId"] == parents[study.name]
        assert stored.tags[schema.TAG_STUDY] == study.name
        assert stored.tags[schema.TAG_LOCKSTEP] == "4"
        assert stored.tags[schema.TAG_METHOD] == study.method.name
        assert stored.params["method"] == study.method.name
        assert store.runs[parents[study.name]].params["method"] == study.method.name
        # The group read the teacher's features: every member trained live, and says why.
        assert stored.tags[schema.TAG_TEACHER_CACHE] == "off"
        assert stored.tags[schema.TAG_TEACHER_CACHE_REASON] == "fitnet needs the teacher's features"
        # Hinton's weights only where they are used.
        assert ("hard_weight" in stored.params) == (study.method.name == "kd")
        assert ("hard_weight" in store.runs[parents[study.name]].params) == (
            study.method.name == "kd")
    dkd = _stored(plan, store, "m_dkd")
    assert dkd.params["method.beta"] == "8.0" and dkd.params["method.warmup"] == "1"
    assert dkd.name == "m_dkd.distilled-dkd-lenet5-T4-s0"
    assert _stored(plan, store, "m_fitnet").params["method.hint"] == "pool2"
    smoothing = _stored(plan, store, "m_ls")
    epsilon = float(smoothing.tags[schema.TAG_LABEL_SMOOTHING_EPSILON])
    assert smoothing.params["method.epsilon"] == "matched"
    assert float(smoothing.params[schema.PARAM_LABEL_SMOOTHING_EPSILON]) == epsilon
    assert 0.0 < epsilon <= 1.0
    # The same plan again trains nothing.
    assert set(_run(plan, store, tmp_path).values()) == {"reused"}


def test_logit_methods_keep_the_cache_and_fixed_smoothing_reads_no_teacher(
        tmp_path: Path) -> None:
    plan = _plan({"c_kd": KD(), "c_dkd": DKD(warmup=1), "c_ls": LabelSmoothing(epsilon=0.2)},
                 runtime=RuntimeSpec(precision="fp32", compile=False, teacher_cache="on"))
    store = MemoryStore()
    assert set(_run(plan, store, tmp_path).values()) == {"finished"}
    for name in ("c_kd", "c_dkd"):
        tags = _stored(plan, store, name).tags
        assert tags[schema.TAG_TEACHER_CACHE] == "on"
        assert tags[schema.TAG_TEACHER_CACHE_REASON] == "teacher_cache = on"
    smoothing = _stored(plan, store, "c_ls")
    assert smoothing.params[schema.PARAM_LABEL_SMOOTHING_EPSILON] == "0.2"
    assert smoothing.tags[schema.TAG_LABEL_SMOOTHING_EPSILON] == "0.2"
    # Alone in its group, fixed label smoothing has no teacher signal at all.
    alone = _plan({"only_ls": LabelSmoothing(epsilon=0.2)})
    store = MemoryStore()
    assert set(_run(alone, store, tmp_path / "alone").values()) == {"finished"}
    tags = _stored(alone, store, "only_ls").tags
    assert tags[schema.TAG_TEACHER_CACHE] == "none"
    assert "reads the teacher" in tags[schema.TAG_TEACHER_CACHE_REASON]
    assert schema.TAG_TEACHER_PRECISION not in tags


@pytest.mark.parametrize("control", ["self", "random_teacher"])
def test_the_controls_that_change_who_teaches_train_with_kd(control: str,
                                                            tmp_path: Path) -> None:
    method: DeclaredMethod = SelfDistillation() if control == "self" else RandomTeacher()
    # The guard against a teacher at chance is on: an untrained teacher passes it by design.
    plan = _plan({control: method}, teacher_arch="resnet20",
                 accept_chance=control == "self")
    store = MemoryStore()
    assert set(_run(plan, store, tmp_path).values()) == {"finished"}
    [teacher] = plan.runs_of(plan.studies[0], "teacher")
    [run] = plan.runs_of(plan.studies[0], "distilled")
    stored = _stored(plan, store, control)
    assert stored.params["method"] == "kd" and stored.params["hard_weight"] == "0.1"
    assert store.runs[store.parents(plan.studies[0])[0].mlflow_id].params["method"] == control
    if control == "self":  # the teacher's architecture and recipe as student
        assert run.arch == teacher.arch == "resnet20" and run.recipe == teacher.recipe
    else:  # an untrained teacher, evaluated at its seed's initialisation, passes the guard
        assert teacher.recipe.epochs == 0
        [stored_teacher] = store.nested(teacher.id)
        assert stored_teacher.status == "FINISHED"
        assert schema.METRIC_TRAIN_LOSS not in stored_teacher.metrics
