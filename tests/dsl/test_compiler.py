"""The compiler: defaults from the catalogue, recipes, seeds, temperatures, loss, shared runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from kdspec.catalogue.facts import CIFAR10_CLASSES, TRIFEATURE_SHAPES
from kdspec.dsl import compile_text, load_plan
from kdspec.errors import KdspecError, SpecError
from kdspec.plan import Plan, Schedule
from tests.dsl.spec_texts import CIFAR_STUDY, RECIPE, TRIFEATURE_STUDY


def messages(text: str) -> list[str]:
    with pytest.raises(SpecError) as caught:
        compile_text(text)
    return [d.message for d in caught.value.diagnostics]


def test_cifar_study_resolves_defaults_and_expands_runs() -> None:
    plan = compile_text(CIFAR_STUDY)
    [study] = plan.studies
    assert study.dataset.image_size == 32 and study.dataset.channels == 3
    assert study.dataset.class_names == CIFAR10_CLASSES and study.dataset.augment == "crop_flip"
    assert study.temperatures == (1.0, 2.0, 3.0, 8.0)
    assert study.seeds == (0, 1)
    assert len(plan.runs) == 2 + 2 + 2 * 4
    assert study.analysis.normalization == "ratio" and study.analysis.alpha == 0.05
    assert study.tracking.experiment == "small"
    for run in plan.runs:
        if run.role == "distilled":
            [teacher] = [r for r in plan.runs if r.role == "teacher" and r.seed == run.seed]
            assert run.depends_on == (teacher.id,)


def test_role_overrides_its_recipe_key_by_key() -> None:
    study = compile_text(CIFAR_STUDY).studies[0]
    assert study.teacher.recipe.epochs == 3
    assert study.teacher.recipe.schedule == Schedule(kind="multistep", milestones=(1, 2),
                                                     gamma=0.5)
    assert study.student.recipe.epochs == 2 and study.student.recipe.lr == 0.1
    assert study.student.recipe.schedule == Schedule(kind="cosine")


def test_recipe_can_build_on_another_recipe() -> None:
    text = CIFAR_STUDY.replace("recipe base {", "recipe root { momentum = 0.8 }\nrecipe base {\n"
                               "  recipe = root")
    assert compile_text(text).studies[0].teacher.recipe.momentum == 0.8


def test_loss_keeps_both_weights_and_the_convention() -> None:
    loss = compile_text(CIFAR_STUDY).studies[0].loss
    assert (loss.hard_weight, loss.soft_weight, loss.t_squared) == (0.25, 0.75, True)
    assert "0.25 * hard + 0.75 * soft" in loss.convention and "T^2" in loss.convention


def test_loss_terms_may_come_in_any_order() -> None:
    text = CIFAR_STUDY.replace("0.25 * hard + 0.75 * soft", "0.75 * soft + 0.25 * hard")
    loss = compile_text(text).studies[0].loss
    assert (loss.hard_weight, loss.soft_weight) == (0.25, 0.75)


def test_loss_naming_one_term_only_is_an_error() -> None:
    text = CIFAR_STUDY.replace("0.25 * hard + 0.75 * soft", "0.9 * soft")
    assert messages(text) == ["loss gives no weight to the hard term"]


def test_trifeature_target_classes_and_sensitive_attributes() -> None:
    [study] = compile_text(TRIFEATURE_STUDY).studies
    assert study.dataset.class_names == TRIFEATURE_SHAPES
    assert study.dataset.sensitive == ("color", "texture")
    assert study.dataset.generated_train_size == 400
    assert study.seeds == (3, 7)
    assert study.fairness is not None
    assert study.fairness.multiclass_aggregate == "mean"
    assert study.fairness.metrics == ("dpd", "eod")


def test_trifeature_is_balanced_unless_the_spec_says_independent() -> None:
    [study] = compile_text(TRIFEATURE_STUDY).studies
    assert study.dataset.generated_combinations == "balanced"
    text = TRIFEATURE_STUDY.replace("generated_test = 100", "generated_test = 150  "
                                    "combinations = independent")
    assert compile_text(text).studies[0].dataset.generated_combinations == "independent"


def test_a_balanced_test_split_must_be_a_multiple_of_100() -> None:
    text = TRIFEATURE_STUDY.replace("generated_test = 100", "generated_test = 150")
    assert messages(text) == ["a balanced test split needs a multiple of 100 images (every "
                              "pair of feature values equally often), found 150"]


def test_combinations_apply_only_to_trifeature() -> None:
    text = CIFAR_STUDY.replace("dataset cifar10 {", "dataset cifar10 { combinations = balanced")
    assert messages(text) == ["cifar10 is not generated"]


def test_one_vs_rest_fairness_averages_over_classes_by_default() -> None:
    text = TRIFEATURE_STUDY.replace("aggregate = mean", "")
    fairness = compile_text(text).studies[0].fairness
    assert fairness is not None and fairness.multiclass_aggregate == "mean"


def test_fairness_with_no_metrics_is_an_error() -> None:
    text = TRIFEATURE_STUDY.replace("multiclass = one_vs_rest", "metrics = []\n    multiclass = "
                                    "one_vs_rest")
    assert messages(text) == ["metrics is empty"]


def test_celeba_binary_target_has_two_classes() -> None:
    text = TRIFEATURE_STUDY.replace(
        "trifeature { image_size = 32  target = shape  generated_train = 400  generated_test = 100 }",
        "celeba { target = Smiling  balance = undersample  sensitive = Young }",
    ).replace("resnet20", "resnet50").replace("lenet5", "resnet18").replace(
        "sensitive = [color, texture]\n    multiclass = one_vs_rest\n    aggregate = mean", "")
    study = compile_text(text).studies[0]
    assert study.dataset.num_classes == 2
    assert study.dataset.class_names == ("not Smiling", "Smiling")
    assert study.dataset.balance == "undersample"
    assert study.fairness is not None and study.fairness.sensitive == ("Young",)
    assert study.fairness.multiclass_aggregate is None


def test_seed_count_and_default() -> None:
    assert compile_text(CIFAR_STUDY.replace("seeds = 2", "seeds = 4")).studies[0].seeds == (0, 1,
                                                                                          2, 3)
    assert compile_text(CIFAR_STUDY.replace("seeds = 2", "")).studies[0].seeds == tuple(range(5))


def test_one_seed_is_fine_without_comparisons() -> None:
    text = CIFAR_STUDY.replace("seeds = 2", "seeds = 1\n  analysis { comparisons = [] }")
    assert compile_text(text).studies[0].seeds == (0,)


def test_every_problem_is_reported_at_once_and_sorted() -> None:
    text = CIFAR_STUDY.replace("resnet56", "resnet99").replace("[1..3, 8]", "[0, 2]").replace(
        "seeds = 2", "seeds = 2\n  runtime { precision = fp8 }")
    with pytest.raises(SpecError) as caught:
        compile_text(text, "x.kdspec")
    found = [(d.span.line, d.message) for d in caught.value.diagnostics]
    assert found == sorted(found)
    assert [m for _, m in found] == ["unknown architecture 'resnet99'",
                                     "temperature must be between 0.01 and 1000, found 0",
                                     "unknown precision 'fp8'"]


def test_precision_and_compile_default_to_auto_and_take_named_values() -> None:
    runtime = compile_text(CIFAR_STUDY).studies[0].runtime
    assert (runtime.precision, runtime.compile) == ("auto", "auto")
    for written, expected in (("compile = true", True), ("compile = false", False),
                              ("compile = auto", "auto")):
        text = CIFAR_STUDY.replace("seeds = 2", f"seeds = 2\n  runtime {{ {written} }}")
        assert compile_text(text).studies[0].runtime.compile == expected
    named = compile_text(CIFAR_STUDY.replace("seeds = 2",
                                             "seeds = 2\n  runtime { precision = fp32 }"))
    assert named.studies[0].runtime.precision == "fp32"
    # what was written is the run's identity: fp32 and auto are different runs
    assert named.runs[0].id != compile_text(CIFAR_STUDY).runs[0].id


def test_a_compile_setting_that_is_not_a_choice_is_an_error() -> None:
    text = CIFAR_STUDY.replace("seeds = 2", "seeds = 2\n  runtime { compile = maybe }")
    with pytest.raises(SpecError) as caught:
        compile_text(text, "x.kdspec")
    assert [d.message for d in caught.value.diagnostics] == ["unknown compile 'maybe'"]


def test_two_studies_share_an_identical_teacher_run() -> None:
    second = CIFAR_STUDY.split("study small", 1)[1].replace("resnet20", "resnet32")
    plan = compile_text(CIFAR_STUDY + "study other" + second)
    small, other = plan.studies
    shared = set(small.run_ids) & set(other.run_ids)
    teachers = {r.id for r in plan.runs if r.role == "teacher"}
    assert shared == teachers and len(teachers) == 2
    assert len(plan.runs) == len(set(small.run_ids) | set(other.run_ids))


def test_run_ids_are_deterministic_and_equal_across_files(tmp_path: Path) -> None:
    first = compile_text(CIFAR_STUDY, "a.kdspec")
    again = compile_text(CIFAR_STUDY, "b.kdspec")
    assert [r.id for r in first.runs] == [r.id for r in again.runs]
    other_student = compile_text(CIFAR_STUDY.replace("resnet20", "resnet32"))
    teacher_ids = [r.id for r in first.runs if r.role == "teacher"]
    assert teacher_ids == [r.id for r in other_student.runs if r.role == "teacher"]
    assert not {r.id for r in first.runs if r.role == "distilled"} & {
        r.id for r in other_student.runs if r.role == "distilled"}


def test_plan_json_round_trips_and_loads(tmp_path: Path) -> None:
    plan = compile_text(TRIFEATURE_STUDY)
    assert Plan.from_json(plan.to_json()) == plan
    path = tmp_path / "plan.json"
    path.write_text(plan.to_json())
    assert load_plan(path) == plan


def test_load_plan_reads_includes_relative_to_the_spec(tmp_path: Path) -> None:
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "recipes.kdspec").write_text(RECIPE)
    spec = tmp_path / "study.kdspec"
    spec.write_text('include "lib/recipes.kdspec"\n' + CIFAR_STUDY.replace(RECIPE, ""))
    plan = load_plan(spec)
    assert plan.source == str(spec)
    assert plan.studies[0].teacher.recipe.epochs == 3


def test_unreadable_files_are_kdspec_errors(tmp_path: Path) -> None:
    with pytest.raises(KdspecError, match="cannot read"):
        load_plan(tmp_path / "missing.kdspec")
    bad_json = tmp_path / "plan.json"
    bad_json.write_text('{"studies": 3}')
    with pytest.raises(KdspecError, match="is not a valid kdspec plan"):
        load_plan(bad_json)


def test_a_recipe_library_compiles_to_an_empty_plan() -> None:
    plan = compile_text(RECIPE)
    assert plan.studies == () and plan.runs == ()


@pytest.mark.parametrize(("old", "new", "message"), [
    ("seeds = 2", "seeds = [1, 1]", "seed 1 is listed twice"),
    ("seeds = 2", "seeds = 0", "seed count must be between 1 and 10000, found 0"),
    ("[1..3, 8]", "[3..1]", "empty range 3..1"),
    ("[1..3, 8]", "[]", "temperatures is empty"),
    ("train_subset = 500", "train_subset = 60000", "train_subset 60000 is larger than cifar10's "
                                                   "50000 images"),
    ("cifar10 {", "cifar10 { target = shape ", "cifar10 has no target attributes"),
    ("milestones = [1, 2]", "milestones = [2, 1]", "milestones must be increasing whole epochs"),
    ("epochs = 3", "epochs = 2", "milestone 2 is not before the last epoch (2 epochs)"),
    ("lr = 0.1", "lr = 0", "'lr' must be > 0, found 0"),
    ("train_subset = 500", 'root "~/data"', "expected '=' after 'root'"),
    ("seeds = 2", 'seeds = 2 include "x.kdspec"', "include is not allowed in study 'small'"),
])
def test_semantic_errors(old: str, new: str, message: str) -> None:
    assert old in CIFAR_STUDY
    assert message in messages(CIFAR_STUDY.replace(old, new, 1))


def test_note_is_kept_as_one_paragraph_and_leaves_run_ids_alone() -> None:
    plain = compile_text(CIFAR_STUDY)
    noted = compile_text(CIFAR_STUDY.replace("  seeds = 2\n", '  seeds = 2\n  note = "A demo: "\n'
                                             '    "too   small to reproduce."\n'))
    assert noted.studies[0].note == "A demo: too small to reproduce."
    assert plain.studies[0].note == ""
    assert [r.id for r in noted.runs] == [r.id for r in plain.runs]
    assert noted.studies[0].study_hash == plain.studies[0].study_hash


def test_empty_or_overlong_note_is_an_error() -> None:
    assert messages(CIFAR_STUDY.replace("  seeds = 2\n", '  seeds = 2\n  note = "  "\n')) == [
        "note is empty"]
    long = "x " * 1500
    assert messages(CIFAR_STUDY.replace("  seeds = 2\n", f'  seeds = 2\n  note = "{long}"\n')) \
        == ["note is 2,999 characters (at most 2,000)"]


def test_a_linear_schedule_with_warmup_steps_compiles_and_keeps_other_ids() -> None:
    from kdspec.dsl import compile_text
    from tests.dsl.spec_texts import CIFAR_STUDY

    plain = compile_text(CIFAR_STUDY, "<t>")
    warm = compile_text(CIFAR_STUDY.replace(
        "schedule = cosine", "schedule linear { warmup_steps = 100 }"), "<t>")
    student = warm.studies[0].student.recipe.schedule
    assert (student.kind, student.warmup_steps) == ("linear", 100)
    # runs without warmup_steps keep their ids (teachers); the students' change
    assert plain.runs_of(plain.studies[0], "teacher") == warm.runs_of(warm.studies[0], "teacher")
    assert {r.id for r in plain.runs_of(plain.studies[0], "student")}.isdisjoint(
        r.id for r in warm.runs_of(warm.studies[0], "student"))
