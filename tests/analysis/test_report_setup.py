"""What the report says the study was: the ``--set`` overrides and each role's recipe, and the
report folders of different overrides kept apart."""

from __future__ import annotations

from pathlib import Path

import pytest

from kdspec.analysis.report_setup import overrides_text, recipe_text
from kdspec.cli import main
from kdspec.commands.report import comparison_dir, output_dir
from kdspec.plan import Recipe, Schedule, override_suffix
from tests.analysis.conftest import FilledStore, small_study_plan


def test_recipes_read_as_one_line() -> None:
    sgd = Recipe(epochs=30, batch_size=128, lr=0.1, nesterov=True,
                 schedule=Schedule(kind="multistep", milestones=(15, 25), warmup_epochs=2))
    assert recipe_text(sgd) == (
        "30 epochs, batch 128, sgd lr 0.1, momentum 0.9 (Nesterov), weight decay 0.0005, "
        "multistep (x0.1 at epochs 15, 25) schedule (2 warm-up epochs)")
    adamw = Recipe(epochs=4, batch_size=32, optimizer="adamw", lr=2e-5, weight_decay=0.01,
                   schedule=Schedule(kind="linear", warmup_steps=190))
    assert recipe_text(adamw) == ("4 epochs, batch 32, adamw lr 2e-05, weight decay 0.01, "
                                  "linear schedule (190 warm-up steps)")
    assert recipe_text(Recipe(epochs=0, batch_size=8, lr=1.0)) == \
        "not trained (evaluated only)"


def test_overrides_get_their_own_report_folder() -> None:
    plan = small_study_plan()
    study = plan.studies[0]
    spec = Path("specs/e2e.kdspec")
    plain = output_dir(plan, study, None, spec=spec)
    two = output_dir(plan.model_copy(update={"overrides": ("seeds=2",)}), study, None,
                     spec=spec)
    three = output_dir(plan.model_copy(update={"overrides": ("seeds=3",)}), study, None,
                       spec=spec)
    assert plain == Path("reports/e2e/e2e")
    assert two == Path(f"reports/e2e/e2e{override_suffix(('seeds=2',))}")
    assert len({plain, two, three}) == 3
    assert override_suffix(("seeds=2",)).startswith("-set-") and len(override_suffix(
        ("seeds=2",))) == len("-set-") + 8
    assert override_suffix(("a=1", "b=2")) != override_suffix(("b=2", "a=1"))  # later wins
    assert output_dir(plan.model_copy(update={"overrides": ("seeds=2",)}), study,
                      Path("mine"), spec=spec) == Path("mine")  # --out is taken as given
    assert comparison_dir(plan.model_copy(update={"overrides": ("seeds=2",)}), "block", None,
                          spec=spec) == Path(f"reports/e2e/block{override_suffix(('seeds=2',))}")
    assert "none" in overrides_text(())
    assert override_suffix(("seeds=2",)) in overrides_text(("seeds=2",))


def test_the_report_lists_the_overrides_and_recipes_in_its_own_folder(
        complete_store: FilledStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        complete_report: tuple[Path, int, str, str]) -> None:
    text = (complete_report[0] / "report.md").read_text()
    setup = text[text.index("## Setup"):text.index("## Runs")]
    assert ("- Recipes: teacher 1 epochs, batch 64, sgd lr 0.05, momentum 0.9, weight decay "
            "0.0005, cosine schedule; NDS and DS (the student's) 1 epochs") in setup
    assert "- Overrides (--set): none; the spec as written." in setup
    overridden = complete_store.plan.model_copy(
        update={"overrides": ("analysis.alpha=0.01", "recipe.r.epochs=1")})
    plan_json = tmp_path / "e2e.json"
    plan_json.write_text(overridden.to_json())
    monkeypatch.chdir(tmp_path)
    assert main(["report", str(plan_json), "--tracking-uri", complete_store.uri, "--quiet",
                 "--no-log"]) == 0
    suffix = override_suffix(overridden.overrides)
    folder = tmp_path / "reports" / "e2e" / f"{complete_store.study.name}{suffix}"
    text = (folder / "report.md").read_text()
    assert (f"- Overrides (--set): analysis.alpha=0.01; recipe.r.epochs=1. Reports written "
            f"without --out go to the study's folder with the suffix '{suffix}'") in text
    assert not (tmp_path / "reports" / "e2e" / complete_store.study.name).exists()
