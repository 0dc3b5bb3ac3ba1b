"""``distill { method = ... }``: which runs each method and control arm makes, what they carry
for the runtime, which ids they share, and the errors at the keys."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kdspec.cli import main
from kdspec.distillation_methods import (
    CRD,
    DIST,
    DKD,
    KD,
    AttentionTransfer,
    FitNet,
    LabelSmoothing,
    RandomTeacher,
    SelfDistillation,
)
from kdspec.dsl import compile_text, plan_from_json
from kdspec.dsl.diagnostics import render_spec_error
from kdspec.errors import KdspecError, SpecError
from kdspec.plan import UNTRAINED_RECIPE, Plan

SPEC = """
recipe r { epochs = 2  batch_size = 64  lr = 0.05 }
recipe long { epochs = 4  batch_size = 64  lr = 0.1 }

study bench {
  dataset cifar100 { train_subset = 1000  test_subset = 200 }
  teacher TEACHER { recipe = long }
  student STUDENT { recipe = r }
  distill {
    temperatures = TEMPS
    loss = 0.1 * hard + 0.9 * soft
    EXTRA
  }
  seeds = 2
}
"""


def spec(extra: str = "", *, teacher: str = "resnet32x4", student: str = "resnet8x4",
         temps: str = "[4]") -> str:
    return (SPEC.replace("TEACHER", teacher).replace("STUDENT", student)
            .replace("TEMPS", temps).replace("EXTRA", extra))


def compiled(extra: str = "", **kwargs: str) -> Plan:
    return compile_text(spec(extra, **kwargs), "methods.kdspec")


def errors(text: str) -> str:
    with pytest.raises(SpecError) as caught:
        compile_text(text, "methods.kdspec")
    return render_spec_error(caught.value)


def roles(plan: Plan) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for run in plan.runs:
        out.setdefault(run.role, []).append(run.id)
    return out


def test_kd_is_the_default_and_writing_it_changes_no_id() -> None:
    default, written = compiled(), compiled("method = kd")
    assert default.studies[0].method == KD() and default == written.model_copy(
        update={"spec_text": default.spec_text})
    for run in default.runs:
        if run.role == "distilled":
            assert run.method == KD() and run.loss == default.studies[0].loss


@pytest.mark.parametrize(("name", "expected"), [
    ("dkd", DKD()),
    ("dist", DIST()),
    ("fitnet", FitNet(hint="layer2", guided="layer2")),
    ("at", AttentionTransfer(pairs=(("layer1", "layer1"), ("layer2", "layer2"),
                                    ("layer3", "layer3")))),
    ("crd", CRD(teacher_classifier="fc", student_classifier="fc")),
    ("label_smoothing", LabelSmoothing(epsilon="matched")),
])
def test_each_method_distils_the_student_from_the_shared_teachers(name: str,
                                                                  expected: object) -> None:
    kd, plan = compiled(), compiled(f"method = {name}")
    assert plan.studies[0].method == expected
    assert roles(plan)["teacher"] == roles(kd)["teacher"]
    assert roles(plan)["student"] == roles(kd)["student"]
    distilled = [r for r in plan.runs if r.role == "distilled"]
    assert {r.id for r in distilled}.isdisjoint(roles(kd)["distilled"])
    for run in distilled:
        assert run.method == expected and run.loss is None and run.arch == "resnet8x4"
        assert run.teacher_id in roles(kd)["teacher"]


def test_a_methods_section_sets_its_keys_and_they_enter_the_ids() -> None:
    plan = compiled("method = dkd\n dkd { beta = 6  warmup = 0  ce_weight = 0.5 }")
    assert plan.studies[0].method == DKD(beta=6.0, warmup=0, ce_weight=0.5)
    assert set(roles(plan)["distilled"]).isdisjoint(roles(compiled("method = dkd"))["distilled"])
    fitnet = compiled("method = fitnet\n fitnet { hint = layer3  weight = 50 }").studies[0]
    assert fitnet.method == FitNet(hint="layer3", guided="layer3", weight=50.0)
    crossed = compiled("method = fitnet\n fitnet { hint = layer1  guided = pool2 }",
                       student="lenet5").studies[0]
    assert crossed.method == FitNet(hint="layer1", guided="pool2")


def test_loss_does_not_enter_the_ids_of_methods_that_do_not_use_it() -> None:
    plan = compiled("method = dist")
    other = compile_text(spec("method = dist").replace("0.1 * hard + 0.9 * soft",
                                                       "0.5 * hard + 0.5 * soft"), "m.kdspec")
    assert roles(plan) == roles(other)


def test_logit_standardization_goes_to_kds_loss_or_to_dkd() -> None:
    kd = compiled("logit_standardization = true").studies[0]
    assert kd.loss.logit_standardization and "z-score" in kd.loss.convention
    assert set(roles(compiled("logit_standardization = true"))["distilled"]).isdisjoint(
        roles(compiled())["distilled"])
    dkd = compiled("method = dkd\n logit_standardization = true").studies[0]
    assert dkd.method == DKD(logit_standardization=True)
    assert not dkd.loss.logit_standardization


def test_self_distils_the_teachers_own_training_and_shares_it_with_kd() -> None:
    plan = compiled("method = self")
    study = plan.studies[0]
    assert study.method == SelfDistillation()
    distilled = [r for r in plan.runs if r.role == "distilled"]
    assert all(r.arch == "resnet32x4" and r.recipe == study.teacher.recipe
               and r.method == KD() and r.loss == study.loss for r in distilled)
    # The same training as a kd study whose student is the teacher: one id, trained once.
    same_text = spec(student="resnet32x4").replace("student resnet32x4 { recipe = r }",
                                                   "student resnet32x4 { recipe = long }")
    same = compile_text(same_text, "m.kdspec")
    assert roles(plan)["distilled"] == roles(same)["distilled"]


def test_random_teacher_distils_from_untrained_teachers_of_the_same_seed() -> None:
    kd, plan = compiled(), compiled("method = random_teacher")
    assert plan.studies[0].method == RandomTeacher()
    teachers = [r for r in plan.runs if r.role == "teacher"]
    assert [t.seed for t in teachers] == [0, 1]
    assert all(t.recipe == UNTRAINED_RECIPE and t.init is None and t.arch == "resnet32x4"
               for t in teachers)
    assert set(roles(plan)["teacher"]).isdisjoint(roles(kd)["teacher"])
    assert roles(plan)["student"] == roles(kd)["student"]
    for run in plan.runs:
        if run.role == "distilled":
            teacher = plan.run(run.depends_on[0])
            assert teacher.recipe.epochs == 0 and teacher.seed == run.seed
            assert run.method == KD() and run.arch == "resnet8x4"


def test_methods_vary_and_share_teachers_and_students() -> None:
    names = ["kd", "dkd", "dist", "at", "label_smoothing", "random_teacher"]
    text = spec("dkd { beta = 6 }").replace(
        "seeds = 2", "seeds = 2\n  vary { distill { method = [" + ", ".join(names) + "] } }")
    plan = compile_text(text, "m.kdspec")
    assert [s.method.name for s in plan.studies] == names
    assert plan.studies[1].method == DKD(beta=6.0)
    trained = roles(compiled())["teacher"]
    for study in plan.studies:
        teachers = {plan.run(r).id for r in study.run_ids if plan.run(r).role == "teacher"}
        assert (teachers == set(trained)) == (study.method.name != "random_teacher")
    distilled = [set(r for r in s.run_ids if plan.run(r).role == "distilled")
                 for s in plan.studies]
    assert all(a.isdisjoint(b) for i, a in enumerate(distilled) for b in distilled[i + 1:])
    # 2 trained + 2 untrained teachers, 2 students shared by all, 6 methods x 2 seeds.
    assert len(plan.runs) == 2 + 2 + 2 + 6 * 2


def test_set_reaches_the_method_and_its_section() -> None:
    plan = compile_text(spec(), "m.kdspec", overrides=("distill.method=dkd",
                                                       "distill.dkd.beta=6"))
    assert plan.studies[0].method == DKD(beta=6.0)


def test_a_plan_with_methods_round_trips_and_edits_are_refused() -> None:
    text = spec("dkd { beta = 6 }").replace(
        "seeds = 2", "seeds = 2\n  vary { distill { method = [dkd, fitnet, crd, self] } }")
    plan = compile_text(text, "m.kdspec")
    assert Plan.from_json(plan.to_json()) == plan
    edited = json.loads(plan.to_json())
    for run in edited["runs"]:
        if run["role"] == "distilled" and run["method"]["name"] == "dkd":
            run["method"]["beta"] = 7.0
    with pytest.raises(KdspecError, match="not what its id stands for"):
        plan_from_json(json.dumps(edited), "edited.json")


def test_a_plan_written_before_methods_existed_still_loads() -> None:
    plan = compiled()
    old = json.loads(plan.to_json())
    for item in (*old["runs"], *old["studies"]):
        item.pop("method", None)
    for run in old["runs"]:
        if run["loss"] is not None:
            run["loss"].pop("logit_standardization")
    old["studies"][0]["loss"].pop("logit_standardization")
    assert plan_from_json(json.dumps(old), "old.json") == plan


def test_feature_methods_name_the_model_without_feature_points() -> None:
    out = errors(spec("method = at", student="lenet5"))
    assert ("at pairs the stages in order: resnet32x4 has 3 feature points (layer1, layer2, "
            "layer3), lenet5 2 (pool1, pool2)") in out
    out = errors(spec("method = fitnet", teacher="torchvision:mobilenet_v3_small"))
    assert "fitnet distils intermediate features, and torchvision:mobilenet_v3_small names no " \
           "feature points" in out
    out = errors(spec("method = fitnet\n fitnet { guided = layr2 }"))
    assert "resnet8x4 has no feature point 'layr2'" in out and "did you mean 'layer2'?" in out


def test_temperature_free_methods_want_one_temperature() -> None:
    out = errors(spec("method = crd", temps="[2, 4]"))
    assert "crd does not use the temperature: the study's 2 temperatures would train the " \
           "same students 2 times" in out
    assert compiled("method = label_smoothing\n label_smoothing { epsilon = 0.1 }")
    out = errors(spec("method = label_smoothing\n label_smoothing { epsilon = 0.1 }",
                      temps="[2, 4]"))
    assert "label_smoothing with a fixed epsilon does not use the temperature" in out
    assert compiled("method = label_smoothing", temps="[2, 4]")  # matched: one per T


def test_method_errors_are_at_the_key() -> None:
    out = errors(spec("method = dtk"))
    assert "methods.kdspec:12:14: error: unknown method 'dtk'" in out
    assert "did you mean 'dkd'?" in out
    out = errors(spec("method = at\n logit_standardization = true"))
    assert "logit_standardization applies to kd and dkd, not at" in out
    out = errors(spec("crd { nce_k = 10 }"))
    assert "settings for crd, but this study's method is kd" in out
    out = errors(spec("method = dkd\n dkd { beta = -1 }"))
    assert "'beta' must be >= 0, found -1" in out
    out = errors(spec("method = label_smoothing\n label_smoothing { epsilon = often }"))
    assert "'epsilon' must be a number or `matched`" in out


def test_self_needs_a_trained_teacher() -> None:
    text = spec("method = self").replace(
        "teacher resnet32x4 { recipe = long }",
        'teacher resnet32x4 { from_run = "0123456789abcdef0123456789abcdef" }')
    assert "self trains the teacher's architecture with the teacher's recipe" in errors(text)


def test_kdspec_plan_names_the_method_of_each_study(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "methods.kdspec"
    path.write_text(spec("logit_standardization = true\n dkd { beta = 6 }").replace(
        "seeds = 2", "seeds = 2\n  vary { distill { method = [kd, dkd] } }"))
    assert main(["plan", str(path)]) == 0
    headers = [line for line in capsys.readouterr().out.splitlines()
               if line.startswith("study bench-")]
    assert headers[0].endswith("T = 4, method kd (standardized logits)")
    assert headers[1].endswith("method dkd (ce_weight 1, alpha 1, beta 6, warmup 20, "
                               "standardized logits)")
    path.write_text(spec("method = self"))
    assert main(["plan", str(path)]) == 0
    assert "T = 4, method self\n" in capsys.readouterr().out


def test_a_plan_json_naming_feature_points_its_models_lack_is_refused() -> None:
    plan = compiled("method = fitnet")
    edited = json.loads(plan.to_json())
    edited["studies"][0]["method"]["hint"] = "layer9"
    with pytest.raises(KdspecError, match=r"studies\[0\]\.method: resnet32x4 has no feature "
                                          r"point 'layer9'"):
        plan_from_json(json.dumps(edited), "edited.json")
