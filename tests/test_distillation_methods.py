"""The plan's method models: what a distilled run must carry with each, and which methods
depend on the temperature."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from kdspec.distillation_methods import (
    CRD,
    DKD,
    KD,
    AttentionTransfer,
    FitNet,
    LabelSmoothing,
    RandomTeacher,
    SelfDistillation,
    run_method,
    uses_hinton_loss,
    uses_temperature,
)
from kdspec.plan import KDLoss, Run, run_id
from tests.factories import dataset_spec, tiny_recipe

LOSS = KDLoss(hard_weight=0.1, soft_weight=0.9, convention="test")


def distilled(**fields: object) -> Run:
    return Run.model_validate({"id": "x", "role": "distilled", "arch": "resnet20", "seed": 0,
                               "temperature": 4.0, "depends_on": ("t",),
                               "recipe": tiny_recipe(), **fields})


def test_a_distilled_run_without_a_method_is_kd_and_needs_hintons_loss() -> None:
    assert distilled(loss=LOSS).method == KD()
    with pytest.raises(ValidationError, match="loss is set iff the run is distilled with kd"):
        distilled()
    with pytest.raises(ValidationError, match="loss is set iff"):
        distilled(loss=LOSS, method=DKD())
    assert distilled(method=DKD()).loss is None


def test_only_distilled_runs_have_a_method() -> None:
    with pytest.raises(ValidationError, match="method is set iff the run is distilled"):
        Run(id="t", role="teacher", arch="resnet20", seed=0, recipe=tiny_recipe(),
            method=DKD())


def test_controls_train_with_kd_and_hintons_loss() -> None:
    for control in (SelfDistillation(), RandomTeacher()):
        assert run_method(control) == KD() and uses_hinton_loss(control)
    assert run_method(DKD()) == DKD() and not uses_hinton_loss(DKD())


def test_which_methods_use_the_temperature() -> None:
    fitnet = FitNet(hint="layer2", guided="layer2")
    at = AttentionTransfer(pairs=(("layer1", "layer1"),))
    crd = CRD(teacher_classifier="fc", student_classifier="fc")
    assert not any(uses_temperature(m) for m in (fitnet, at, crd, LabelSmoothing(epsilon=0.1)))
    assert all(uses_temperature(m) for m in (KD(), DKD(), LabelSmoothing(), SelfDistillation()))


def test_defaults_enter_ids_only_when_they_change_what_trains() -> None:
    common = dict(dataset=dataset_spec(), role="distilled", arch="resnet20", seed=0,
                  recipe=tiny_recipe(), precision="fp32", temperature=4.0, teacher_id="t")
    plain = run_id(**common, loss=LOSS)
    assert run_id(**common, loss=LOSS, method=KD()) == plain
    standardized = LOSS.model_copy(update={"logit_standardization": True})
    assert run_id(**common, loss=standardized) != plain
    assert run_id(**common, method=DKD()) != run_id(**common, method=DKD(beta=6.0))
