"""Every distillation method trains in one lockstep group with the others, one teacher forward
per batch reading what all of them need, and each member ends bit for bit where it ends trained
alone (CPU); the methods with state (fitnet's regressor, crd's heads and memory bank, dkd's
warm-up, a matched label-smoothing epsilon) resume from ``last.pt`` exactly where they would
have been straight through; ``final.pt`` holds the student alone."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest
import torch

from kdspec.distillation_methods import (
    CRD,
    DIST,
    DKD,
    KD,
    AttentionTransfer,
    DeclaredMethod,
    FitNet,
    LabelSmoothing,
)
from kdspec.plan import Plan, Run
from kdspec.runtime import checkpoints
from kdspec.runtime.data import load_dataset
from kdspec.runtime.interfaces import LoadedDataset
from kdspec.runtime.method_setup import MethodSetup, prepare_methods
from kdspec.runtime.models import build_model
from kdspec.runtime.teacher_signal import LiveTeacher, group_reads
from kdspec.runtime.training import BatchStream, Trainee, new_trainee, train_lockstep
from tests.factories import dataset_spec, method_plan, tiny_recipe

CPU = torch.device("cpu")
pytestmark = pytest.mark.integration  # tiny real trainings (seconds)

#: One of each, on a ResNet-20 teacher (points layer1..3, classifier fc) and a LeNet-5 student
#: (pool1, pool2, fc3) on 8x8 digits: layer2 [32, 4, 4] -> pool1 [6, 4, 4], layer3 [64, 2, 2]
#: -> pool2 [16, 2, 2].
METHODS: dict[str, DeclaredMethod] = {
    "kd": KD(),
    "dkd": DKD(warmup=2),  # the term's weight is 1/2 in epoch 1, 1 in epoch 2
    "dist": DIST(),
    "fitnet": FitNet(hint="layer2", guided="pool1"),
    "at": AttentionTransfer(pairs=(("layer2", "pool1"), ("layer3", "pool2"))),
    "crd": CRD(teacher_classifier="fc", student_classifier="fc3", feat_dim=16, nce_k=40),
    "matched": LabelSmoothing(),
    "fixed": LabelSmoothing(epsilon=0.1),
}


@pytest.fixture(scope="module")
def study() -> tuple[Plan, LoadedDataset, torch.nn.Module]:
    plan = method_plan(METHODS, dataset=dataset_spec("digits", train_subset=160, test_subset=32,
                                                     augment="crop_flip"),
                       teacher_arch="resnet20", temperatures=(4.0,), seeds=(3,),
                       student_recipe=tiny_recipe(epochs=2, batch_size=40, lr=0.02))
    data = load_dataset(plan.studies[0].dataset, device=CPU)
    torch.manual_seed(11)
    teacher = build_model("resnet20", in_channels=data.channels, image_size=data.image_size,
                          num_classes=data.num_classes)
    with torch.no_grad():  # running statistics off their init, so eval mode matters
        teacher(data.train.render(torch.arange(64), torch.zeros(64, dtype=torch.long)))
    return plan, data, teacher.eval()


def distilled(plan: Plan) -> list[Run]:
    return [r for r in plan.runs if r.role == "distilled"]


def prepared(runs: Sequence[Run], data: LoadedDataset, teacher: torch.nn.Module, *,
             fresh: bool = True) -> list[Trainee]:
    trainees = [new_trainee(r, in_channels=data.channels, image_size=data.image_size,
                            num_classes=data.num_classes, device=CPU) for r in runs]
    prepare_methods(trainees, MethodSetup(data, teacher, fresh=fresh))
    return trainees


def train(trainees: list[Trainee], data: LoadedDataset, teacher: torch.nn.Module,
          epochs: int) -> list[Trainee]:
    runs = [t.run for t in trainees]
    reads = group_reads(runs)
    train_lockstep(trainees, BatchStream(data.train, seed=runs[0].seed,
                                         batch_size=runs[0].recipe.batch_size),
                   teacher=LiveTeacher(teacher, needs=reads.needs) if reads.outputs else None,
                   epochs=epochs)
    assert all(t.failure is None for t in trainees), [t.failure for t in trainees]
    return trainees


def state(trainee: Trainee) -> dict[str, torch.Tensor]:
    """The student's weights and what its method keeps (regressor, heads, memory bank)."""
    found = {f"model.{k}": v for k, v in trainee.model.state_dict().items()}
    if trainee.method is not None:
        found.update({f"method.{k}": v for k, v in trainee.method.learned().state_dict().items()})
        if trainee.method.epsilon is not None:
            found["epsilon"] = torch.tensor(trainee.method.epsilon, dtype=torch.float64)
    return found


def assert_same(a: Trainee, b: Trainee) -> None:
    left, right = state(a), state(b)
    assert left.keys() == right.keys()
    for name, value in left.items():
        assert torch.equal(value, right[name]), f"{a.run.method}: {name} differs"


def test_one_group_of_every_method_equals_each_trained_alone(
        study: tuple[Plan, LoadedDataset, torch.nn.Module]) -> None:
    plan, data, teacher = study
    runs = distilled(plan)
    assert len(runs) == len(METHODS)
    reads = group_reads(runs)
    assert reads.needs.points == ("layer2", "layer3") and reads.needs.classifier == "fc"
    group = train(prepared(runs, data, teacher), data, teacher, epochs=2)
    for member in group:
        (alone,) = train(prepared([member.run], data, teacher), data, teacher, epochs=2)
        assert_same(member, alone)
    # Each method really trained its own way, and used what it keeps.
    by_name = dict(zip(METHODS, group, strict=True))
    first_layers = {name: t.model.state_dict()["conv1.weight"] for name, t in by_name.items()}
    for name, weights in first_layers.items():
        others = [n for n in first_layers if n != name]
        assert all(not torch.equal(weights, first_layers[n]) for n in others), name
    crd = by_name["crd"].method
    assert crd is not None and crd.memory is not None and bool((crd.memory.normalizers > 0).all())
    matched = by_name["matched"].method
    assert matched is not None and matched.epsilon is not None and 0 < matched.epsilon <= 1


def test_the_regressor_and_heads_are_optimised_with_the_student(
        study: tuple[Plan, LoadedDataset, torch.nn.Module]) -> None:
    plan, data, teacher = study
    runs = [r for r in distilled(plan) if isinstance(r.method, FitNet | CRD)]
    trainees = prepared(runs, data, teacher)
    before = [{k: v.clone() for k, v in state(t).items()} for t in trainees]
    for trainee in trainees:
        assert trainee.method is not None
        learned = list(trainee.method.learned().parameters())
        in_optimizer = {id(p) for g in trainee.optimizer.param_groups for p in g["params"]}
        assert learned and {id(p) for p in learned} <= in_optimizer
    train(trainees, data, teacher, epochs=1)
    for trainee, old in zip(trainees, before, strict=True):
        moved = [k for k, v in state(trainee).items() if k.startswith("method.")
                 and k.endswith("weight") and not torch.equal(v, old[k])]
        assert moved, trainee.run.method


@pytest.mark.parametrize("name", ["fitnet", "crd", "dkd", "matched"])
def test_resuming_a_method_with_state_equals_straight_through(
        name: str, study: tuple[Plan, LoadedDataset, torch.nn.Module], tmp_path: Path) -> None:
    plan, data, teacher = study
    run = distilled(plan)[list(METHODS).index(name)]
    (straight,) = train(prepared([run], data, teacher), data, teacher, epochs=2)
    (first,) = train(prepared([run], data, teacher), data, teacher, epochs=1)
    path = checkpoints.save(checkpoints.resume_state(first), tmp_path / "last.pt")
    (resumed,) = prepared([run], data, teacher, fresh=False)
    checkpoints.restore_trainee(resumed, checkpoints.load(path))
    assert resumed.epochs_done == 1
    train([resumed], data, teacher, epochs=2)
    assert_same(straight, resumed)


def test_a_checkpoint_without_the_method_state_is_refused(
        study: tuple[Plan, LoadedDataset, torch.nn.Module]) -> None:
    plan, data, teacher = study
    run = distilled(plan)[list(METHODS).index("fitnet")]
    (trainee,) = prepared([run], data, teacher)
    saved = checkpoints.resume_state(trainee)
    del saved["method"]
    with pytest.raises(ValueError, match="holds no state of its method"):
        checkpoints.restore_trainee(prepared([run], data, teacher, fresh=False)[0], saved)


def test_final_pt_holds_the_student_alone(study: tuple[Plan, LoadedDataset, torch.nn.Module],
                                          tmp_path: Path) -> None:
    plan, data, teacher = study
    run = distilled(plan)[list(METHODS).index("crd")]
    (trainee,) = prepared([run], data, teacher)
    final = checkpoints.final_state(trainee, in_channels=data.channels,
                                    image_size=data.image_size, num_classes=data.num_classes)
    model = checkpoints.load_model(checkpoints.save(final, tmp_path / "final.pt"), device=CPU)
    assert model.state_dict().keys() == trainee.model.state_dict().keys()
    assert "method" in checkpoints.resume_state(trainee) and "method" not in final
