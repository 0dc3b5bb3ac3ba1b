"""Training a seed's distilled students in lockstep gives each one the result it gets alone.

Lockstep shares one batch iterator and one teacher forward per batch among the K students of a
seed; nothing of a student's own computation changes, so on the CPU (deterministic kernels, same
operations in the same order) its weights must be bit-for-bit those of a solo training. The
teacher-logit cache computes the same logits in other batch compositions, where another CPU's
kernels round differently; that test runs the teacher in float64 so the two logit paths agree far
below the float32 step at which the students consume them (tests/README.md).
"""

from __future__ import annotations

import pytest
import torch

from kdspec.plan import Plan, Run
from kdspec.runtime.data import load_dataset
from kdspec.runtime.interfaces import LoadedDataset, TeacherSignal
from kdspec.runtime.models import build_model
from kdspec.runtime.teacher_cache import CachedTeacher
from kdspec.runtime.teacher_signal import LiveTeacher
from kdspec.runtime.training import BatchStream, Trainee, new_trainee, train_lockstep
from tests.factories import dataset_spec, tiny_plan, tiny_recipe

CPU = torch.device("cpu")
#: Tiny real trainings (a few seconds each on 2 cores).
pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def study() -> tuple[Plan, LoadedDataset]:
    # crop_flip on 8x8 digits: 2 x 3 x 3 = 18 views, so augmentation is exercised too.
    plan = tiny_plan(dataset=dataset_spec("digits", train_subset=192, test_subset=64,
                                          augment="crop_flip"),
                     temperatures=(1.0, 4.0, 16.0), seeds=(3,),
                     student_recipe=tiny_recipe(epochs=2, batch_size=48))
    return plan, load_dataset(plan.studies[0].dataset, device=CPU)


def a_teacher(data: LoadedDataset) -> torch.nn.Module:
    torch.manual_seed(11)
    teacher = build_model("resnet20", in_channels=data.channels, image_size=data.image_size,
                          num_classes=data.num_classes)
    teacher.train()
    with torch.no_grad():  # move BatchNorm statistics off their init so eval mode matters
        teacher(data.train.render(torch.arange(64), torch.zeros(64, dtype=torch.long)))
    return teacher.eval()


def train(runs: tuple[Run, ...] | list[Run], data: LoadedDataset,
          signal: TeacherSignal) -> list[Trainee]:
    trainees = [new_trainee(r, in_channels=data.channels, image_size=data.image_size,
                            num_classes=data.num_classes, device=CPU) for r in runs]
    recipe = runs[0].recipe
    train_lockstep(trainees,
                   BatchStream(data.train, seed=runs[0].seed, batch_size=recipe.batch_size),
                   teacher=signal, epochs=recipe.epochs)
    return trainees


def distilled(plan: Plan) -> tuple[Run, ...]:
    return plan.runs_of(plan.studies[0], "distilled")


def test_lockstep_students_equal_solo_students_bitwise(
        study: tuple[Plan, LoadedDataset]) -> None:
    plan, data = study
    teacher = a_teacher(data)
    runs = distilled(plan)
    group = train(runs, data, LiveTeacher(teacher))
    for run, member in zip(runs, group, strict=True):
        (alone,) = train([run], data, LiveTeacher(teacher))
        for (name, a), b in zip(member.model.state_dict().items(),
                                alone.model.state_dict().values(), strict=True):
            assert torch.equal(a, b), f"T={run.temperature:g}: {name} differs"
    # The students really trained apart: temperature changed what they learned.
    first, last = (list(m.model.parameters()) for m in (group[0], group[-1]))
    assert any(not torch.equal(a, b) for a, b in zip(first, last, strict=True))


class Float64Teacher(torch.nn.Module):
    """A teacher computing in float64 on the float32 images the sources render."""

    def __init__(self, teacher: torch.nn.Module):
        super().__init__()
        self.teacher = teacher.double()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.teacher(images.double())


def test_cached_teacher_lockstep_equals_live_solo(study: tuple[Plan, LoadedDataset]) -> None:
    plan, data = study
    teacher = Float64Teacher(a_teacher(data)).eval()
    runs = distilled(plan)
    cached = train(runs, data, CachedTeacher.compute(teacher, data.train, batch_size=500))
    probe = data.train.render(torch.arange(64), torch.zeros(64, dtype=torch.long))
    for run, member in zip(runs, cached, strict=True):
        (alone,) = train([run], data, LiveTeacher(teacher))
        with torch.no_grad():
            got, expected = member.model.eval()(probe), alone.model.eval()(probe)
        # The float64 logits of the table and of the live forward differ by ~1e-16 relative, so
        # both round to the same float32 logits but for a rare tie; the students then train
        # alike to far below this tolerance on any CPU.
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4,
                                   msg=f"T={run.temperature:g}")
        assert torch.equal(got.argmax(1), expected.argmax(1))
