"""``vary``: one study block expanding to a variant per combination, sharing untouched runs."""

from __future__ import annotations

import pytest

from kdspec.cli import main
from kdspec.dsl import compile_text
from kdspec.dsl.variants import MOST_VARIANTS
from kdspec.errors import SpecError
from kdspec.plan import Plan

BASE = """
recipe r { epochs = 2  batch_size = 64  lr = 0.05 }
study sweep {
  dataset digits { }
  teacher resnet20 { recipe = r }
  student lenet5 { recipe = r }
  distill { temperatures = [2, 4]  loss = 0.2 * hard + 0.8 * soft }
  seeds = 2
  VARY
}
"""


def spec(vary: str) -> str:
    return BASE.replace("VARY", vary)


def diagnostics(text: str) -> list[tuple[int, int, str]]:
    with pytest.raises(SpecError) as caught:
        compile_text(text)
    return [(d.span.line, d.span.column, d.message) for d in caught.value.diagnostics]


def test_a_product_of_values_becomes_one_study_per_combination() -> None:
    plan = compile_text(spec("vary { student { lr = [0.01, 0.05]  optimizer = [sgd, adam] } }"))
    assert [s.name for s in plan.studies] == ["sweep-v1", "sweep-v2", "sweep-v3", "sweep-v4"]
    assert [s.variant for s in plan.studies] == [
        (("student.lr", "0.01"), ("student.optimizer", "sgd")),
        (("student.lr", "0.01"), ("student.optimizer", "adam")),
        (("student.lr", "0.05"), ("student.optimizer", "sgd")),
        (("student.lr", "0.05"), ("student.optimizer", "adam")),
    ]
    assert all(s.variant_of == "sweep" for s in plan.studies)
    recipes = [(s.student.recipe.lr, s.student.recipe.optimizer) for s in plan.studies]
    assert recipes == [(0.01, "sgd"), (0.01, "adam"), (0.05, "sgd"), (0.05, "adam")]
    # The teacher block is untouched: same recipe everywhere.
    assert {s.teacher.recipe for s in plan.studies} == {plan.studies[0].teacher.recipe}
    assert plan.families() == {"sweep": plan.studies}


def test_runs_no_varied_key_touches_are_shared_and_trained_once() -> None:
    plan = compile_text(spec("vary { student { lr = [0.01, 0.05] }\n"
                             "  distill { loss = [0.2 * hard + 0.8 * soft, "
                             "0.5 * hard + 0.5 * soft] } }"))
    assert len(plan.studies) == 4
    per_variant = [set(s.run_ids) for s in plan.studies]
    assert all(len(ids) == 2 + 2 + 2 * 2 for ids in per_variant)
    # 2 teachers shared by all; NDS per lr (the loss does not touch them); DS per variant.
    assert len(plan.runs) == 2 + 2 * 2 + 4 * 4
    teachers = {r.id for r in plan.runs if r.role == "teacher"}
    assert len(teachers) == 2 and all(teachers <= ids for ids in per_variant)
    students = {r.id for r in plan.runs if r.role == "student"}
    assert len(students) == 4
    losses = {(s.loss.hard_weight, s.loss.soft_weight) for s in plan.studies}
    assert losses == {(0.2, 0.8), (0.5, 0.5)}


def test_a_varied_key_replaces_the_value_written_in_its_section() -> None:
    text = spec("vary { teacher { epochs = [1, 3] } }").replace(
        "teacher resnet20 { recipe = r }", "teacher resnet20 { recipe = r  epochs = 7 }")
    plan = compile_text(text)
    assert [s.teacher.recipe.epochs for s in plan.studies] == [1, 3]
    # Distilled runs depend on their variant's teacher, so they differ too.
    assert len({r.id for r in plan.runs if r.role == "distilled"}) == 2 * 2 * 2


def test_dataset_and_schedule_keys_can_vary() -> None:
    plan = compile_text(spec("vary { dataset { train_subset = [500, 1000] }\n"
                             "  student { schedule = [cosine, constant] } }"))
    assert [(s.dataset.train_subset, s.student.recipe.schedule.kind) for s in plan.studies] == [
        (500, "cosine"), (500, "constant"), (1000, "cosine"), (1000, "constant")]
    # A different training set is a different teacher.
    assert len({r.id for r in plan.runs if r.role == "teacher"}) == 4


def test_a_plan_with_variants_round_trips_through_json() -> None:
    plan = compile_text(spec("vary { student { lr = [0.01, 0.05] } }"))
    assert Plan.from_json(plan.to_json()) == plan


def test_bad_vary_blocks_get_one_diagnostic_each() -> None:
    text = spec("""vary {
    student { lr = [0.01]  optimiser = [sgd]  epochs = []  momentum = 0.5 }
    distill { temperatures = [1, 2]  loss = [0.2 * hard + 0.8 * soft, 0.2 * hard + 0.8 * soft] }
    analysis { alpha = [0.01] }
  }""")
    assert diagnostics(text) == [
        (10, 28, "'optimiser' of student cannot be varied"),
        (10, 56, "'student.epochs' varies over no values"),
        (10, 71, "vary needs a list of values for 'momentum'"),
        (11, 15, "'temperatures' of distill cannot be varied"),
        (11, 71, "0.2 * hard + 0.8 * soft is listed twice"),
        (12, 5, "'analysis' cannot be varied"),
    ]


def test_a_bad_value_in_the_list_is_reported_once_at_that_value() -> None:
    assert diagnostics(spec("vary { student { lr = [0.01, -1] } }")) == [
        (9, 32, "'lr' must be > 0, found -1")]


def test_a_mistake_outside_vary_is_reported_once_not_per_variant() -> None:
    text = spec("vary { student { lr = [0.01, 0.02, 0.03] } }").replace(
        "student lenet5 { recipe = r }", "student lenet5 { recipe = r  epochs = 0 }")
    assert diagnostics(text) == [(6, 41, "epochs = 0 means the model is not trained")]
    missing = spec("vary { student { lr = [0.01, 0.02] } }").replace(
        "  distill { temperatures = [2, 4]  loss = 0.2 * hard + 0.8 * soft }\n", "")
    assert diagnostics(missing) == [(3, 7, "study 'sweep' has no distill section")]


def test_too_many_variants_is_an_error_naming_the_count() -> None:
    values = ", ".join(str(0.001 * (i + 1)) for i in range(MOST_VARIANTS + 1))
    [(line, _, message)] = diagnostics(spec(f"vary {{ student {{ lr = [{values}] }} }}"))
    assert line == 9
    assert message == (f"vary expands study 'sweep' to {MOST_VARIANTS + 1} variants "
                       f"({MOST_VARIANTS + 1}); at most {MOST_VARIANTS}")


def test_vary_must_hold_sections_and_keys() -> None:
    assert [m for *_, m in diagnostics(spec("vary = 3"))] == ["vary is a block of sections"]
    assert [m for *_, m in diagnostics(spec("vary { }"))] == ["vary names no key"]
    assert [m for *_, m in diagnostics(spec("vary { student = [1] }"))] == [
        "'student' in vary is a block of keys"]
    assert [m for *_, m in diagnostics(spec("vary { studnet { lr = [1] } }"))] == [
        "'studnet' cannot be varied"]


def test_no_study_block_can_take_a_variants_name() -> None:
    text = spec("vary { student { lr = [0.01, 0.05] } }") + BASE.replace(
        "study sweep", "study sweep-v2").replace("VARY", "")
    assert [m for *_, m in diagnostics(text)] == ["unexpected '-'"]


def test_plan_lists_the_variants_and_what_they_share(capsys: pytest.CaptureFixture[str],
                                                     tmp_path) -> None:
    path = tmp_path / "sweep.kdspec"
    path.write_text(spec("vary { student { lr = [0.01, 0.05] } }"))
    assert main(["plan", str(path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("study sweep: 2 variants of student.lr; 14 distinct runs for 16 run "
                          "slots (2 teacher runs shared by every variant)\n")
    assert "  sweep-v1  0.01\n  sweep-v2  0.05\n" in out
    assert main(["check", str(path)]) == 0
    assert "2 studies (sweep: 2 variants), 14 runs" in capsys.readouterr().out
