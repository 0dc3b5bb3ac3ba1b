"""No leftover or inconsistent state: a dry run writes nothing, parent runs end as their studies
did, an experiment name cannot escape the artifact folder, and a training failure is one line on
the console (its traceback in the log file)."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow import MlflowClient

from kdspec.cli import main
from kdspec.runtime import lockstep_group
from kdspec.tracking import schema
from kdspec.tracking.store import MlflowStore, experiment_folder
from tests.runtime.run_helpers import fresh_store, small_plan, write_plan


def test_a_dry_run_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    path = write_plan(small_plan(), tmp_path)
    before = set(tmp_path.rglob("*"))
    assert main(["run", str(path), "--dry-run", "--log-dir", str(tmp_path / "logs")]) == 0
    assert "8 to train" in capsys.readouterr().out
    assert set(tmp_path.rglob("*")) == before  # no mlruns.db, no mlartifacts/, no log


def test_an_experiment_named_dot_dot_stays_inside_the_artifact_folder(tmp_path: Path) -> None:
    assert experiment_folder("..") == "experiment" and experiment_folder("a/../b") == "a-..-b"
    store = MlflowStore(f"sqlite:///{tmp_path / 'store.db'}")
    experiment = store.client.get_experiment(store.experiment_id(".."))
    location = Path(experiment.artifact_location.removeprefix("file://"))
    assert location.parent == (tmp_path / "mlartifacts").resolve()


def _parent(uri: str, experiment: str) -> tuple[str, str, dict[str, str]]:
    client = MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    assert found is not None
    [parent] = client.search_runs([found.experiment_id],
                                  f"tags.`{schema.TAG_KIND}` = '{schema.KIND_PLAN}'")
    return parent.info.run_id, parent.info.status, parent.data.tags


@pytest.mark.integration
def test_parent_runs_end_as_their_studies_did(blank_store: Path, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    plan = small_plan(seeds=(0,), temperatures=(2.0,))
    experiment = plan.studies[0].tracking.experiment
    path, uri = write_plan(plan, tmp_path), fresh_store(blank_store, tmp_path)
    logs = tmp_path / "logs"

    # A crash inside training: one line on the console, the traceback in the log, and the
    # parent run FAILED with the reason (not RUNNING for ever).
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("the GPU caught fire")

    monkeypatch.setattr(lockstep_group, "train_lockstep", broken)
    assert main(["run", str(path), "--tracking-uri", uri, "--quiet", "--log-dir",
                 str(logs)]) == 1
    err = capsys.readouterr().err
    assert "RuntimeError: the GPU caught fire" in err and "Traceback" not in err
    assert "Traceback" in "".join(p.read_text() for p in logs.glob("*.log"))
    parent_id, status, tags = _parent(uri, experiment)
    assert status == "FAILED" and "did not finish" in tags[schema.TAG_FAILURE]

    # The same command with training working again: the parent reopens and FINISHES.
    monkeypatch.undo()
    assert main(["run", str(path), "--tracking-uri", uri, "--quiet", "--log-dir",
                 str(logs)]) == 0
    assert _parent(uri, experiment)[1] == "FINISHED"
    assert schema.TAG_FAILURE not in _parent(uri, experiment)[2]

    # A process that died after the last run but before closing its parent left it RUNNING:
    # the next `kdspec run`, with everything reused, finishes it.
    MlflowClient(uri).update_run(parent_id, status="RUNNING")
    assert main(["run", str(path), "--tracking-uri", uri, "--quiet", "--log-dir",
                 str(logs)]) == 0
    assert _parent(uri, experiment)[1] == "FINISHED"


@pytest.mark.integration
def test_a_plan_stopped_by_a_data_error_fails_its_parent_run(
        blank_store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.factories import dataset_spec

    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    plan = small_plan(seeds=(0,), temperatures=(2.0,), dataset=dataset_spec(
        "trifeature", image_size=8, target="shape", num_classes=10,
        class_names=("triangle", "square", "plus", "circle", "tee", "rhombus", "pentagon",
                     "star", "fivesquare", "trapezoid"),
        generated_train_size=100, generated_test_size=100, root=str(blocker / "under")))
    path, uri = write_plan(plan, tmp_path), fresh_store(blank_store, tmp_path)
    assert main(["run", str(path), "--tracking-uri", uri, "--quiet", "--log-dir",
                 str(tmp_path / "logs")]) == 1
    assert "Traceback" not in capsys.readouterr().err
    _, status, tags = _parent(uri, plan.studies[0].tracking.experiment)
    assert status == "FAILED" and tags[schema.TAG_FAILURE]
