"""``--set KEY=VALUE`` and ``--study NAME`` (same diagnostics as a written key, recorded in the
plan and the parent run), and ``kdspec init`` (a spec that always checks)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow import MlflowClient

from kdspec.cli import main
from kdspec.tracking import schema
from tests.runtime.run_helpers import fresh_store

# Two epochs of LeNet-5 on 256 digits leave a teacher at chance: these tests check overrides
# and study selection, so the teachers accept it.
TWO_STUDIES = """
recipe r { epochs = 2  batch_size = 64  lr = 0.05 }
study alpha {
  dataset digits { train_subset = 256  test_subset = 96 }
  teacher lenet5 { recipe = r  accept_chance = true }
  student lenet5 { recipe = r  lr = 0.04 }
  distill { temperatures = [2, 4]  loss = 0.2 * hard + 0.8 * soft }
  seeds = 3
}
study beta {
  dataset digits { train_subset = 256  test_subset = 96 }
  teacher lenet5 { recipe = r  accept_chance = true }
  student lenet5 { recipe = r  lr = 0.03 }
  distill { temperatures = [2, 4]  loss = 0.2 * hard + 0.8 * soft }
  seeds = 3
}
"""


@pytest.fixture
def spec(tmp_path: Path) -> Path:
    path = tmp_path / "two.kdspec"
    path.write_text(TWO_STUDIES)
    return path


def _plan(capsys: pytest.CaptureFixture[str], *args: str) -> dict:  # type: ignore[type-arg]
    assert main(["plan", *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_overrides_change_the_plan_and_are_recorded_in_it(
        spec: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plan = _plan(capsys, str(spec), "--set", "seeds=2", "--set", "distill.temperatures=[2]",
                 "--set", "recipe.r.epochs=1", "--study", "alpha")
    assert [s["name"] for s in plan["studies"]] == ["alpha"]
    assert plan["studies"][0]["seeds"] == [0, 1] and plan["studies"][0]["temperatures"] == [2.0]
    assert {r["recipe"]["epochs"] for r in plan["runs"]} == {1}
    assert len(plan["runs"]) == 2 + 2 + 2
    assert plan["overrides"] == ["seeds=2", "distill.temperatures=[2]", "recipe.r.epochs=1"]
    qualified = _plan(capsys, str(spec), "--set", "beta.seeds=2")
    assert [s["seeds"] for s in qualified["studies"]] == [[0, 1, 2], [0, 1]]
    renamed = _plan(capsys, str(spec), "--set", "teacher.arch=resnet20", "--study", "beta")
    assert {r["arch"] for r in renamed["runs"] if r["role"] == "teacher"} == {"resnet20"}


def test_a_bad_override_gets_the_diagnostics_of_a_written_key(
        spec: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", str(spec), "--set", "seeds=abc"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("--set[0]:1:23: error: 'seeds' must be a number, a range or a list")
    assert "study __set { seeds = abc }" in err and "^^^" in err
    assert main(["plan", str(spec), "--set", "distil.temperatures=2"]) == 2
    assert "--set cannot reach 'distil.temperatures'" in capsys.readouterr().err
    assert main(["plan", str(spec), "--set", "seeds"]) == 2
    assert "an override is KEY=VALUE" in capsys.readouterr().err
    assert main(["plan", str(spec), "--set", "recipe.nope.epochs=1"]) == 2
    assert "no recipe 'nope'" in capsys.readouterr().err


def test_an_unknown_study_names_the_studies_there_are(
        spec: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", str(spec), "--study", "alpah"]) == 1
    err = capsys.readouterr().err
    assert "--study alpah: no such study" in err and "did you mean 'alpha'?" in err


def test_a_plan_json_takes_study_but_not_set(spec: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    plan = _plan(capsys, str(spec))
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(plan))
    assert [s["name"] for s in _plan(capsys, str(path), "--study", "beta")["studies"]] == [
        "beta"]
    assert main(["plan", str(path), "--set", "seeds=2"]) == 1
    assert "give the .kdspec file" in capsys.readouterr().err


@pytest.mark.integration
def test_run_with_set_and_study_trains_that_and_records_the_overrides(
        spec: Path, tmp_path: Path, blank_store: Path) -> None:
    uri = fresh_store(blank_store, tmp_path)
    assert main(["run", str(spec), "--set", "seeds=2", "--set", "recipe.r.epochs=1",
                 "--set", "distill.temperatures=[2]", "--study", "beta", "--tracking-uri",
                 uri, "--quiet", "--log-dir", str(tmp_path / "logs")]) == 0
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("beta")
    assert experiment is not None and client.get_experiment_by_name("alpha") is None
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if r.data.tags.get(schema.TAG_KIND) == schema.KIND_PLAN]
    nested = [r for r in runs if r.data.tags.get(schema.TAG_KIND) == schema.KIND_RUN]
    assert len(parents) == 1 and len(nested) == 6
    assert parents[0].data.tags[schema.TAG_OVERRIDES] == (
        "seeds=2; recipe.r.epochs=1; distill.temperatures=[2]")


def test_init_writes_a_spec_that_checks_and_never_overwrites(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "mine.kdspec"
    assert main(["init", str(path), "--dataset", "cifar10", "--teacher", "resnet56",
                 "--student", "resnet20"]) == 0
    text = path.read_text()
    assert "loss = 0.2 * hard + 0.8 * soft" in text and "# how to run:" in text
    assert main(["check", str(path)]) == 0
    assert "55 runs" in capsys.readouterr().out
    assert main(["init", str(path), "--dataset", "cifar10", "--teacher", "resnet56",
                 "--student", "resnet20"]) == 1
    assert "never overwrites" in capsys.readouterr().err
    fair = tmp_path / "fair.kdspec"
    assert main(["init", str(fair), "--dataset", "trifeature", "--teacher", "resnet20",
                 "--student", "lenet5", "--target", "shape", "--sensitive", "color",
                 "--seeds", "3", "--temperatures", "[1, 4, 8]"]) == 0
    assert main(["check", str(fair)]) == 0
    assert main(["init", str(tmp_path / "x.kdspec"), "--dataset", "trifeature", "--teacher",
                 "resnet20", "--student", "lenet5"]) == 1
    assert "give --target" in capsys.readouterr().err
    assert main(["init", str(tmp_path / "y.kdspec"), "--dataset", "cifar10", "--teacher",
                 "resnet99", "--student", "resnet20"]) == 2
    assert not (tmp_path / "y.kdspec").exists()


def test_init_writes_a_text_study_that_fine_tunes_published_models(tmp_path: Path) -> None:
    path = tmp_path / "hate.kdspec"
    assert main(["init", str(path), "--dataset", "hatexplain", "--teacher",
                 "hf:bert-base-uncased", "--student", "hf:distilbert-base-uncased",
                 "--sensitive", "Women"]) == 0
    text = path.read_text()
    assert "pretrained = DEFAULT" in text and "optimizer = adamw" in text
    assert main(["check", str(path)]) == 0
    from kdspec.dsl import load_plan

    [study] = load_plan(path).studies
    assert study.teacher.recipe.epochs == 4 and study.teacher.recipe.schedule.warmup_steps
    assert study.fairness is not None and study.fairness.sensitive == ("Women",)


def test_check_takes_the_overrides_and_the_study_selection(
        spec: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(spec)]) == 0
    assert "21 runs (3 teacher, 6 student, 12 distilled)" in capsys.readouterr().out
    assert main(["check", str(spec), "--set", "seeds=2", "--study", "alpha"]) == 0
    assert "1 study (alpha), 8 runs (2 teacher, 2 student, 4 distilled)" in \
        capsys.readouterr().out
    assert main(["check", str(spec), "--set", "seeds=0"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "--set[0]:1:23: error: seed count must be" in captured.err
