"""``kdspec plan`` prices each model at the study's own input size (measured on the meta
device), warns when an ImageNet-stem model meets small images, and gives GPU-hours."""

from __future__ import annotations

from pathlib import Path

import pytest

from kdspec.cli import main
from kdspec.commands.plan import run_work
from kdspec.distillation_methods import KD, FitNet, LabelSmoothing
from kdspec.runtime.models.cost import measured_forward_flops, study_forward_flops
from kdspec.runtime.scheduling import Action, form_groups, group_epoch_costs, run_cost
from tests.factories import method_plan, tiny_recipe

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(("arch", "size", "mflops"), [
    ("resnet20", 32, 81.1),      # He et al.'s CIFAR ResNet-20: 40.6 M multiply-adds
    ("resnet56", 32, 251.0),
    ("resnet18", 32, 1110.9),    # small-image stem: stride 1, no max-pool
    ("densenet169", 32, 2119.9),
    ("resnet50", 224, 8174.7),   # torchvision's ResNet-50: 4.09 G multiply-adds
])
def test_forward_flops_are_measured_at_the_input(arch: str, size: int, mflops: float) -> None:
    flops = measured_forward_flops(arch, in_channels=3, image_size=size, num_classes=100)
    assert flops is not None and flops / 1e6 == pytest.approx(mflops, rel=0.002)


def test_plan_prices_densenet_above_resnet56_on_cifar100_and_gives_gpu_hours(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", str(REPO / "specs" / "cifar100.kdspec")]) == 0
    out = capsys.readouterr().out
    teacher_cost = {}
    for line in out.splitlines():
        parts = line.split()
        if parts[:1] == ["teacher"] and parts[2] == "0":
            teacher_cost[parts[1]] = float(parts[-2])
    assert teacher_cost["densenet169"] > 5 * teacher_cost["resnet56"]  # PFLOP both
    assert "GPU-hours at 2 TFLOP/s effective" in out


def test_an_imagenet_stem_model_on_small_images_is_warned_about(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "tv.kdspec"
    spec.write_text("""
recipe r { epochs = 1  batch_size = 64  lr = 0.05 }
study tv {
  dataset cifar10 { }
  teacher torchvision:resnet18 { recipe = r }
  student resnet20 { recipe = r }
  distill { temperatures = [2, 4]  loss = 0.2 * hard + 0.8 * soft }
  seeds = 2
}
""")
    assert main(["check", str(spec)]) == 0
    err = capsys.readouterr().err
    assert "torchvision:resnet18 keeps its ImageNet stem" in err and "32 px" in err
    assert "write `resnet18` instead" in err



def test_what_a_method_pays_for_its_teacher() -> None:
    """A distilled run pays the teacher's forward at every step; label smoothing with a fixed
    epsilon never reads the teacher, with a matched one once over the training images; a
    feature method's own modules are not priced (next to nothing beside the models)."""
    plan = method_plan({"kd": KD(), "fit": FitNet(hint="layer2", guided="layer2"),
                        "fixed": LabelSmoothing(epsilon=0.1), "matched": LabelSmoothing()},
                       teacher_arch="resnet56", student_arch="resnet20", temperatures=(4.0,),
                       seeds=(0,), student_recipe=tiny_recipe(epochs=3))
    data = plan.studies[0].dataset
    own, teacher = study_forward_flops("resnet20", data), study_forward_flops("resnet56", data)
    assert own is not None and teacher is not None
    runs = {s.name: plan.runs_of(s, "distilled")[0] for s in plan.studies}
    work = {name: run_work(plan.study(name), run) for name, run in runs.items()}
    assert work["kd"] is not None
    samples = work["kd"][0]  # 3 epochs
    assert work["kd"] == work["fit"] == (samples, samples * (own + teacher))
    assert work["fixed"] == (samples, samples * own)
    assert work["matched"] == (samples, samples * own + samples // 3 * teacher)
    assert run_cost(plan, runs["kd"]) == 3 * (3 * own + teacher)
    assert run_cost(plan, runs["fixed"]) == 3 * 3 * own
    assert run_cost(plan, runs["matched"]) == 3 * 3 * own + teacher
    [group] = form_groups(plan, [Action(r, "train") for r in runs.values()])
    costs = group_epoch_costs(plan, group)  # the kd and fitnet runs share the forward
    assert costs[runs["kd"].id] == costs[runs["fit"].id] == 3 * own + teacher / 2
    assert costs[runs["fixed"].id] == costs[runs["matched"].id] == 3 * own
