"""The recipes `kdspec init` writes train what it offers: for each architecture family (one
model of each, the lightest), a spec written by `kdspec init` (4 epochs, 2 seeds, T = 10) and run
as written on digits finishes every run above chance and unflagged, the distilled students at
T = 10, where an unsuited recipe fails first (LeNet-5 with SGD at lr 0.1 diverged there).

Marked `recipes`: a few minutes on 2 cores, so `make test-recipes` runs it (CI does), not
`make test`."""

from __future__ import annotations

from pathlib import Path

import pytest

from kdspec.cli import main
from kdspec.commands.status import study_status
from kdspec.dsl import compile_text
from kdspec.tracking.store import MlflowStore
from tests.runtime.run_helpers import fresh_store

pytestmark = pytest.mark.recipes

#: (teacher, student): both roles of the unnormalised family (LeNet-5) and of each family with
#: batch normalisation, the known hard case (a LeNet-5 student distilled at T = 10) included.
PAIRS = [
    ("resnet20", "lenet5"),
    ("lenet5", "resnet20"),
    ("wrn_16_2", "wrn_16_2"),
    ("vgg8", "vgg8"),
    ("resnet8x4", "resnet8x4"),
    ("resnet18", "resnet18"),
    ("densenet121", "densenet121"),
]


@pytest.mark.parametrize(("teacher", "student"), PAIRS, ids=[f"{t}-{s}" for t, s in PAIRS])
def test_init_recipes_train_every_family_above_chance(
        teacher: str, student: str, tmp_path: Path, blank_store: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    spec = tmp_path / "pair.kdspec"
    assert main(["init", str(spec), "--dataset", "digits", "--teacher", teacher, "--student",
                 student, "--epochs", "4", "--seeds", "2", "--temperatures", "[10]"]) == 0
    uri = fresh_store(blank_store, tmp_path)
    small = ("dataset.test_subset=360",)  # all 1,437 training images: LeNet-5 needs the steps
    assert main(["run", str(spec), *(f"--set={s}" for s in small), "--tracking-uri", uri,
                 "--quiet", "--log-dir", str(tmp_path / "logs")]) == 0
    plan = compile_text(spec.read_text(), str(spec), overrides=small)  # the plan that ran
    status = study_status(plan, plan.studies[0], MlflowStore(uri, read_only=True),
                          timeout_s=600)
    finished = [r for r in status["runs"] if r["state"] == "finished"]
    flagged = [(r["role"], r["flags"]) for r in status["runs"] if r["flags"]]
    assert len(finished) == len(status["runs"]) == 6 and flagged == []
