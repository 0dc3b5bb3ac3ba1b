"""Plans built in Python for runtime and analysis tests, without going through the DSL."""

from __future__ import annotations

from kdspec.catalogue.facts import DATASETS, TRIFEATURE_SHAPES
from kdspec.distillation_methods import DeclaredMethod
from kdspec.plan import (
    KD_METHOD,
    AnalysisSpec,
    DatasetSpec,
    FairnessSpec,
    KDLoss,
    ModelSpec,
    Plan,
    Recipe,
    RuntimeSpec,
    Study,
    TrackingSpec,
    expand_runs,
)


def dataset_spec(name: str = "digits", **overrides: object) -> DatasetSpec:
    """A DatasetSpec with the catalogue's defaults for ``name``."""
    facts = DATASETS[name]
    fields: dict[str, object] = dict(
        name=name,
        image_size=facts.image_size,
        channels=facts.channels,
        num_classes=len(facts.class_names),
        class_names=facts.class_names,
        augment=facts.default_augment,
    )
    fields.update(overrides)
    return DatasetSpec.model_validate(fields)


def fairness_dataset(**overrides: object) -> DatasetSpec:
    """Trifeature at 32 px with shape as the label and colour kept as the sensitive attribute:
    a dataset the catalogue gives attributes, for fairness tests with synthetic predictions."""
    fields: dict[str, object] = dict(image_size=32, target="shape", num_classes=10,
                                     class_names=TRIFEATURE_SHAPES, sensitive=("color",),
                                     generated_train_size=1000, generated_test_size=1000)
    fields.update(overrides)
    return dataset_spec("trifeature", **fields)


def tiny_recipe(epochs: int = 1, batch_size: int = 64, lr: float = 0.05) -> Recipe:
    return Recipe(epochs=epochs, batch_size=batch_size, lr=lr)


def tiny_plan(
    *,
    name: str = "tiny",
    dataset: DatasetSpec | None = None,
    teacher_arch: str = "resnet20",
    student_arch: str = "lenet5",
    temperatures: tuple[float, ...] = (2.0, 4.0),
    seeds: tuple[int, ...] = (0, 1),
    teacher_recipe: Recipe | None = None,
    student_recipe: Recipe | None = None,
    fairness: FairnessSpec | None = None,
    analysis: AnalysisSpec | None = None,
    runtime: RuntimeSpec | None = None,
    experiment: str | None = None,
    accept_chance: bool = True,
    method: DeclaredMethod = KD_METHOD,
) -> Plan:
    """A one-study plan, small enough to train in seconds on a CPU.

    Its teacher accepts chance accuracy unless ``accept_chance`` is False: a few steps of a
    tiny model may leave it there, and these plans test bookkeeping, not learning (the guard
    against a teacher at chance is tested on its own, tests/runtime/test_run_flags.py)."""
    dataset = dataset or dataset_spec("digits")
    teacher = ModelSpec(arch=teacher_arch, recipe=teacher_recipe or tiny_recipe(),
                        accept_chance=accept_chance)
    student = ModelSpec(arch=student_arch, recipe=student_recipe or tiny_recipe())
    loss = KDLoss(hard_weight=0.1, soft_weight=0.9,
                  convention="alpha = 0.9 weights the soft term; hard = 1 - alpha")
    # fp32, not compiled: "auto" would pick by the CPU, and a test must hold on every CPU.
    runtime = runtime or RuntimeSpec(precision="fp32", compile=False)
    runs = expand_runs(dataset=dataset, teacher=teacher, student=student,
                       temperatures=temperatures, seeds=seeds, loss=loss,
                       precision=runtime.precision, method=method)
    study = Study(
        name=name, dataset=dataset, teacher=teacher, student=student,
        temperatures=temperatures, seeds=seeds, loss=loss, fairness=fairness,
        analysis=analysis or AnalysisSpec(), runtime=runtime,
        tracking=TrackingSpec(experiment=experiment or f"kdspec-{name}"),
        run_ids=tuple(r.id for r in runs), method=method,
    )
    return Plan(studies=(study,), runs=runs)


def method_plan(methods: dict[str, DeclaredMethod], **settings: object) -> Plan:
    """One study per method (named by the keys), all else ``tiny_plan(**settings)``: the
    variants of a ``vary`` over the method, sharing their teachers and non-distilled students."""
    settings.setdefault("experiment", "kdspec-methods")  # variants share their experiment
    plans = [tiny_plan(name=name, method=method, **settings)  # type: ignore[arg-type]
             for name, method in methods.items()]
    runs = {r.id: r for p in plans for r in p.runs}
    return Plan(studies=tuple(p.studies[0] for p in plans), runs=tuple(runs.values()))
