"""Every shipped spec compiles, opens with how to run it, and says what the paper says."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kdspec.dsl import load_plan

SPECS = Path(__file__).parents[1] / "specs"
ALL_SPECS = sorted(SPECS.rglob("*.kdspec"))
STUDY_SPECS = sorted(SPECS.glob("*.kdspec"))
#: The run ids every shipped spec compiled to before distillation methods existed (written by
#: the compiler of that time): a method at its default must not change any of them, or every
#: stored run would train again. A spec added later is not in it; a spec changed on purpose
#: (new runs meant) gets its entry rewritten with the ids it now compiles to.
RUN_IDS_BEFORE_METHODS = json.loads((Path(__file__).parent / "spec_run_ids.json").read_text())


def test_the_paper_specs_and_the_quickstart_are_shipped() -> None:
    names = {p.stem for p in STUDY_SPECS}
    assert {"quickstart", "cifar10", "svhn", "cifar100", "imagenet", "imagenet_vit",
            "tiny_imagenet", "celeba", "trifeature"} <= names


@pytest.mark.parametrize("spec", ALL_SPECS, ids=lambda p: str(p.relative_to(SPECS)))
def test_spec_compiles_and_opens_with_how_to_run_it(spec: Path) -> None:
    plan = load_plan(spec)
    before = RUN_IDS_BEFORE_METHODS.get(str(spec.relative_to(SPECS.parent)))
    assert before is None or {s.name: list(s.run_ids) for s in plan.studies} == before
    first_line = spec.read_text().splitlines()[0]
    assert first_line.startswith("# ")
    assert "kdspec check" in spec.read_text()
    if spec.parent == SPECS:
        assert plan.studies, f"{spec.name} declares no study"


def test_the_ids_from_before_methods_are_of_the_shipped_specs() -> None:
    shipped = {str(p.relative_to(SPECS.parent)) for p in ALL_SPECS}
    assert set(RUN_IDS_BEFORE_METHODS) <= shipped
    assert len(RUN_IDS_BEFORE_METHODS) == 14  # every spec shipped when methods were added


def test_cifar10_follows_the_paper() -> None:
    plan = load_plan(SPECS / "cifar10.kdspec")
    [study] = plan.studies
    assert (study.teacher.arch, study.student.arch) == ("resnet56", "resnet20")
    assert study.temperatures == tuple(float(t) for t in range(2, 11))
    assert study.seeds == (0, 1, 2, 3, 4)
    roles = [r.role for r in plan.runs]
    assert (roles.count("teacher"), roles.count("student"), roles.count("distilled")) == (5, 5, 45)
    teacher_of_seed = {r.seed: r.id for r in plan.runs if r.role == "teacher"}
    for run in plan.runs:
        if run.role == "distilled":
            assert run.depends_on == (teacher_of_seed[run.seed],)
    recipe = study.teacher.recipe
    assert (recipe.epochs, recipe.batch_size, recipe.lr, recipe.momentum, recipe.weight_decay) \
        == (200, 128, 0.1, 0.9, 5e-4)


def test_the_imagenet_pairs_of_table_1_and_table_6() -> None:
    [vit] = load_plan(SPECS / "imagenet_vit.kdspec").studies
    assert (vit.teacher.arch, vit.student.arch) == ("timm:vit_base_patch16_224",
                                                    "timm:tiny_vit_5m_224")
    assert vit.temperatures == tuple(float(t) for t in range(2, 11))
    assert (vit.dataset.name, vit.dataset.image_size, vit.dataset.num_classes) == (
        "imagenet", 224, 1000)
    recipe = vit.teacher.recipe  # DeiT: AdamW, lr 5e-4 x 1024 / 512, wd 0.05, 300 epochs
    assert (recipe.optimizer, recipe.lr, recipe.batch_size, recipe.weight_decay,
            recipe.epochs, recipe.schedule.warmup_epochs) == ("adamw", 1e-3, 1024, 0.05, 300, 5)
    [tiny] = load_plan(SPECS / "tiny_imagenet.kdspec").studies
    assert (tiny.teacher.arch, tiny.student.arch) == ("resnet50", "resnet18")
    assert (tiny.dataset.name, tiny.dataset.image_size, tiny.dataset.num_classes) == (
        "tiny_imagenet", 64, 200)
    assert tiny.temperatures == tuple(float(t) for t in range(2, 11))


def test_cifar100_has_both_pairs_of_the_paper() -> None:
    plan = load_plan(SPECS / "cifar100.kdspec")
    pairs = {(s.teacher.arch, s.student.arch) for s in plan.studies}
    assert pairs == {("resnet56", "resnet20"), ("densenet169", "densenet121")}


PAPER_SPECS = ("cifar10", "svhn", "cifar100", "imagenet", "imagenet_vit", "tiny_imagenet",
               "celeba", "trifeature")


@pytest.mark.parametrize("name", PAPER_SPECS)
def test_paper_specs_use_the_authors_loss_and_no_correction(name: str) -> None:
    """alpha = 0.8 on the distillation term (the authors' slides) with T^2, and no
    multiple-testing correction, as the paper; each header names the table or figure."""
    text = (SPECS / f"{name}.kdspec").read_text()
    assert "Table" in text or "Fig." in text
    for study in load_plan(SPECS / f"{name}.kdspec").studies:
        assert (study.loss.hard_weight, study.loss.soft_weight, study.loss.t_squared) == (
            0.2, 0.8, True)
        assert study.analysis.correction == "none" and study.analysis.alpha == 0.05
        assert len(study.seeds) == 5


def test_fairness_specs_use_the_papers_temperatures_and_attributes() -> None:
    celeba = load_plan(SPECS / "celeba.kdspec").studies[0]
    assert celeba.dataset.target == "Smiling" and celeba.dataset.balance == "undersample"
    assert celeba.fairness is not None and celeba.fairness.sensitive == ("Young",)
    assert celeba.temperatures == (*(float(t) for t in range(1, 11)), 20.0, 30.0, 40.0)
    trifeature = load_plan(SPECS / "trifeature.kdspec").studies[0]
    assert (trifeature.teacher.arch, trifeature.student.arch) == ("resnet20", "lenet5")
    assert trifeature.dataset.target == "shape"
    assert trifeature.fairness is not None and trifeature.fairness.sensitive == ("color",)
    # Table 2: T = 1..10; Algorithm 1: the mean over one-vs-rest classes; a balanced test set
    # large enough that each (shape, colour) cell holds 100 positives.
    assert trifeature.temperatures == tuple(float(t) for t in range(1, 11))
    assert trifeature.fairness.multiclass_aggregate == "mean"
    assert trifeature.dataset.generated_combinations == "balanced"
    assert trifeature.dataset.generated_test_size == 10_000


def test_quickstart_is_small_and_offline() -> None:
    plan = load_plan(SPECS / "quickstart.kdspec")
    fashion, trifeature = plan.studies
    assert fashion.dataset.name == "fashion_mnist" and fashion.dataset.download is False
    assert fashion.dataset.train_subset == 4000 and fashion.dataset.test_subset == 2000
    assert trifeature.dataset.image_size == 32
    assert trifeature.dataset.generated_train_size == 4000
    assert trifeature.fairness is not None
    assert trifeature.fairness.multiclass_aggregate == "mean"
    assert trifeature.dataset.generated_combinations == "balanced"
    for study in plan.studies:  # it says plainly that it demonstrates, not reproduces
        assert "Pipeline demonstration" in study.note and "docs/reproduction.md" in study.note
        assert (study.loss.hard_weight, study.loss.soft_weight) == (0.2, 0.8)
    for study in plan.studies:
        assert study.seeds == (0, 1, 2) and study.temperatures == (1.0, 2.0, 4.0, 8.0)
        assert study.teacher.recipe.epochs <= 3 and study.student.recipe.epochs <= 6


def test_hatexplain_follows_the_paper() -> None:
    [study] = load_plan(SPECS / "hatexplain.kdspec").studies
    assert (study.teacher.arch, study.student.arch) == ("hf:bert-base-uncased",
                                                        "hf:distilbert-base-uncased")
    assert study.temperatures == (*(float(t) for t in range(1, 11)), 20.0, 30.0, 40.0)
    assert len(study.seeds) == 5 and study.dataset.is_text
    assert study.teacher.init is not None and study.teacher.init.kind == "huggingface"
    recipe = study.student.recipe
    assert (recipe.optimizer, recipe.schedule.kind, recipe.schedule.warmup_steps) == (
        "adamw", "linear", 190)
    assert study.fairness is not None and "Women" in study.fairness.sensitive
    assert study.individual_fairness is not None
    from kdspec.analysis.paper_results import paper_individual_fairness

    assert paper_individual_fairness("hatexplain", study.teacher.arch,
                                     study.student.arch) is not None

