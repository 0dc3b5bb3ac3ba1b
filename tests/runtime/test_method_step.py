"""One step's loss by method, what a group reads of its teacher and which signal it gets, and the
matched label-smoothing epsilon against a double-precision oracle (fast: no training)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from kdspec.distillation_methods import (
    CRD,
    DKD,
    KD,
    AttentionTransfer,
    DeclaredMethod,
    FitNet,
    LabelSmoothing,
)
from kdspec.plan import Run, RuntimeSpec
from kdspec.runtime.data import load_dataset
from kdspec.runtime.interfaces import Batch, TeacherOutputs
from kdspec.runtime.kd_methods.attention_transfer import attention_transfer_loss
from kdspec.runtime.kd_methods.dkd import dkd_loss
from kdspec.runtime.kd_methods.fitnet import HintRegressor, hint_loss
from kdspec.runtime.kd_methods.label_smoothing import matched_epsilon
from kdspec.runtime.losses import distillation_loss, hard_label_loss
from kdspec.runtime.method_setup import teacher_soft_masses
from kdspec.runtime.method_state import FeatureNeeds, MethodState
from kdspec.runtime.method_step import StepPlace, step_loss
from kdspec.runtime.models import build_model
from kdspec.runtime.models.feature_points import FeatureForward, forward_with_features
from kdspec.runtime.teacher_cache import CachedTeacher, TeacherDemand
from kdspec.runtime.teacher_signal import (
    LiveTeacher,
    TeacherForwards,
    choose_teacher_signal,
    group_reads,
)
from tests.factories import dataset_spec, method_plan
from tests.runtime.kd_methods.oracles import softmax

CPU = torch.device("cpu")
B, C = 6, 5


def _run(method: DeclaredMethod) -> Run:
    plan = method_plan({"s": method}, temperatures=(4.0,), seeds=(0,))
    [run] = [r for r in plan.runs if r.role == "distilled"]
    return run


def _logits(seed: int) -> torch.Tensor:
    return torch.randn(B, C, generator=torch.Generator().manual_seed(seed),
                       dtype=torch.float64) * 3


LABELS = torch.tensor([0, 1, 2, 3, 4, 0])
BATCH = Batch(inputs=torch.zeros(B, 1), labels=LABELS, index=torch.arange(B))


def _student(features: dict[str, torch.Tensor] | None = None) -> FeatureForward:
    return FeatureForward(logits=_logits(1), features=features or {}, embedding=None)


def test_kd_is_hintons_loss_and_dkd_warms_up_by_epoch() -> None:
    run = _run(KD())
    assert run.loss is not None
    teacher = TeacherOutputs(_logits(2))
    expected = distillation_loss(_logits(1), _logits(2), LABELS, temperature=4.0, loss=run.loss)
    assert torch.equal(step_loss(run, _student(), teacher, BATCH, None), expected)
    dkd = _run(DKD(warmup=4, beta=6.0))
    term = dkd_loss(_logits(1), _logits(2), LABELS, temperature=4.0, alpha=1.0, beta=6.0)
    ce = hard_label_loss(_logits(1), LABELS)
    for epoch, weight in ((0, 0.25), (2, 0.75), (3, 1.0), (9, 1.0)):
        got = step_loss(dkd, _student(), teacher, BATCH, None, StepPlace(epoch, 5))
        assert torch.equal(got, ce + weight * term), epoch
    without_ce = _run(DKD(warmup=0, ce_weight=0.0))
    assert torch.equal(step_loss(without_ce, _student(), teacher, BATCH, None),
                       dkd_loss(_logits(1), _logits(2), LABELS, temperature=4.0, alpha=1.0,
                                beta=8.0))


def test_feature_methods_read_their_points_in_their_pairs() -> None:
    gen = torch.Generator().manual_seed(3)
    shapes = {"t1": (B, 4, 8, 8), "t2": (B, 8, 4, 4), "s1": (B, 2, 8, 8), "s2": (B, 3, 4, 4)}
    maps = {k: torch.randn(*v, generator=gen, dtype=torch.float64) for k, v in shapes.items()}
    teacher = TeacherOutputs(_logits(2), {"t1": maps["t1"], "t2": maps["t2"]})
    student = _student({"s1": maps["s1"], "s2": maps["s2"]})
    ce = hard_label_loss(_logits(1), LABELS)
    at = _run(AttentionTransfer(weight=10.0, pairs=(("t1", "s1"), ("t2", "s2"))))
    assert torch.equal(step_loss(at, student, teacher, BATCH, None), ce + 10.0 * (
        attention_transfer_loss([maps["s1"], maps["s2"]], [maps["t1"], maps["t2"]])))
    swapped = _run(AttentionTransfer(weight=10.0, pairs=(("t2", "s1"), ("t1", "s2"))))
    assert not torch.equal(step_loss(swapped, student, teacher, BATCH, None),
                           step_loss(at, student, teacher, BATCH, None))
    fitnet = _run(FitNet(hint="t2", guided="s1", weight=3.0))
    regressor = HintRegressor((2, 8, 8), (8, 4, 4)).double()
    state = MethodState(regressor=regressor)
    expected = ce + 3.0 * hint_loss(regressor(maps["s1"]), maps["t2"])
    assert torch.equal(step_loss(fitnet, student, teacher, BATCH, state), expected)


def test_label_smoothing_reads_no_teacher_and_needs_its_epsilon() -> None:
    run = _run(LabelSmoothing(epsilon=0.0))
    plain = step_loss(run, _student(), None, BATCH, MethodState(epsilon=0.0))
    torch.testing.assert_close(plain, hard_label_loss(_logits(1), LABELS), rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="has no epsilon"):
        step_loss(run, _student(), None, BATCH, MethodState())
    with pytest.raises(ValueError, match="needs teacher logits"):
        step_loss(_run(DKD()), _student(), None, BATCH, None)


def test_a_group_reads_the_union_of_its_members_points_and_says_why() -> None:
    plan = method_plan({"kd": KD(), "fit": FitNet(hint="layer2", guided="pool2"),
                        "at": AttentionTransfer(pairs=(("layer1", "pool1"), ("layer2", "pool2"))),
                        "crd": CRD(teacher_classifier="fc", student_classifier="fc3"),
                        "ls": LabelSmoothing(epsilon=0.1)},
                       teacher_arch="resnet20", temperatures=(4.0,), seeds=(0,))
    runs = [r for r in plan.runs if r.role == "distilled"]
    reads = group_reads(runs)
    assert reads.outputs and reads.needs == FeatureNeeds(("layer2", "layer1"), "fc")
    assert reads.why == "fitnet and at and crd need the teacher's features and classifier input"
    assert group_reads([runs[0], runs[-1]]) .needs == FeatureNeeds()
    alone = group_reads([runs[-1]])
    assert not alone.outputs and "label smoothing" in alone.why


def test_features_are_read_live_in_the_same_forward_whatever_the_cache_mode() -> None:
    data = load_dataset(dataset_spec("digits", train_subset=64, augment="none"), device=CPU)
    torch.manual_seed(0)
    teacher = build_model("resnet20", in_channels=1, image_size=8, num_classes=10).eval()
    forwards = TeacherForwards("fp32", CPU)
    on = RuntimeSpec(teacher_cache="on")
    demand = TeacherDemand(data.train, epochs=3, num_classes=10)
    cached = choose_teacher_signal(teacher, demand, runtime=on, forwards=forwards)
    assert isinstance(cached.signal, CachedTeacher) and cached.reason == "teacher_cache = on"
    featured = TeacherDemand(data.train, epochs=3, num_classes=10, points=("layer2",),
                             classifier="fc", feature_reason="fitnet needs the teacher's features")
    live = choose_teacher_signal(teacher, featured, runtime=on, forwards=forwards)
    assert isinstance(live.signal, LiveTeacher)
    assert live.tags()["kdspec.teacher_cache"] == "off"
    assert live.tags()["kdspec.teacher_cache_reason"] == "fitnet needs the teacher's features"
    batch = next(iter(data.train.epoch(seed=0, epoch=0, batch_size=16)))
    outputs = live.signal.outputs(batch)
    with torch.no_grad():
        reference = forward_with_features(teacher, batch.inputs, ["layer2"], classifier="fc")
        assert torch.equal(outputs.logits, teacher(batch.inputs))
    assert torch.equal(outputs.features["layer2"], reference.features["layer2"])
    assert outputs.embedding is not None and reference.embedding is not None
    assert torch.equal(outputs.embedding, reference.embedding)


def test_the_matched_epsilon_is_the_teachers_mean_soft_mass_on_unaugmented_images() -> None:
    data = load_dataset(dataset_spec("digits", train_subset=600, augment="crop_flip"),
                        device=CPU)
    assert data.train_plain is not None and data.train_plain.num_samples == 600
    torch.manual_seed(5)
    teacher = nn.Sequential(nn.Flatten(), nn.Linear(64, 10), nn.BatchNorm1d(10))
    with torch.no_grad():
        teacher[2].running_mean.uniform_(-1, 1)
        teacher[2].running_var.uniform_(0.2, 2)
        teacher[2].weight.fill_(4.0)  # confident enough that T matters
    teacher.train()  # the pass must use eval mode, and leave the mode as it was
    masses = teacher_soft_masses(teacher, data.train_plain, [1.0, 4.0])
    assert teacher.training
    # The oracle: the training images normalised without augmentation, in double precision.
    images = data.train.augmenter.normalize(data.train.images)  # type: ignore[attr-defined]
    labels = data.train.labels.tolist()  # type: ignore[attr-defined]
    with torch.no_grad():
        logits = teacher.eval()(images).tolist()
    for temperature in (1.0, 4.0):
        oracle = sum(1 - softmax(row, temperature)[y] for row, y in zip(logits, labels,
                                                                          strict=True)) / 600
        # float32 log-softmax of 10 logits: ~1e-6 relative per sample at worst.
        assert math.isclose(masses[temperature], oracle, abs_tol=1e-5), temperature
    assert abs(masses[4.0] - masses[1.0]) > 0.01  # each temperature its own
    assert matched_epsilon(masses[4.0], 10) == min(1.0, masses[4.0] * 10 / 9)
