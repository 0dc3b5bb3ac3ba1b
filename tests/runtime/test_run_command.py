"""``kdspec run`` end to end on a real sqlite store, through ``kdspec.cli.main``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from mlflow import MlflowClient

from kdspec.cli import main
from kdspec.plan import RuntimeSpec
from kdspec.tracking import schema
from tests.factories import dataset_spec, tiny_recipe
from tests.runtime.run_helpers import (
    finished_by_kdspec_id,
    fresh_store,
    nested_runs,
    small_plan,
    write_plan,
)

pytestmark = pytest.mark.integration


def _run(path: Path, uri: str, tmp: Path, *extra: str) -> int:
    return main(["run", str(path), "--tracking-uri", uri, "--quiet",
                 "--log-dir", str(tmp / "logs"), *extra])


def test_plan_is_tracked_in_the_schema_layout_and_reused(blank_store: Path, tmp_path: Path, capsys) -> None:
    plan = small_plan()
    path, uri = write_plan(plan, tmp_path), fresh_store(blank_store, tmp_path)
    assert _run(path, uri, tmp_path) == 0
    client = MlflowClient(uri)
    runs = nested_runs(uri)
    assert sorted(r.data.tags[schema.TAG_RUN_ID] for r in runs) == sorted(r.id for r in plan.runs)
    assert all(r.info.status == "FINISHED" for r in runs)

    study = plan.studies[0]
    experiment = client.get_experiment_by_name(study.tracking.experiment)
    assert experiment is not None
    assert experiment.artifact_location == (tmp_path / "mlartifacts" / "kdspec-tiny").as_uri()
    (parent,) = client.search_runs(
        [experiment.experiment_id], f"tags.`{schema.TAG_PLAN_HASH}` = '{study.study_hash}'")
    assert parent.data.tags[schema.TAG_KIND] == schema.KIND_PLAN
    assert parent.info.status == "FINISHED"
    plan_file = client.download_artifacts(parent.info.run_id, schema.ARTIFACT_PLAN, str(tmp_path))
    assert json.loads(Path(plan_file).read_text())["runs"][0]["id"] == plan.runs[0].id

    by_id = {r.data.tags[schema.TAG_RUN_ID]: r for r in runs}
    for run in plan.runs:
        tracked = by_id[run.id]
        tags, params, metrics = tracked.data.tags, tracked.data.params, tracked.data.metrics
        assert tags["mlflow.parentRunId"] == parent.info.run_id
        assert tags[schema.TAG_ROLE] == run.role and tags[schema.TAG_SEED] == str(run.seed)
        assert tags[schema.TAG_TEACHER_RUN_ID] == (run.teacher_id or "")
        assert tags[schema.TAG_LOCKSTEP] == ("2" if run.role == "distilled" else "solo")
        assert tags[schema.TAG_LAST_EPOCH] == str(run.recipe.epochs)
        assert params["arch"] == run.arch and params["lr"] == str(run.recipe.lr)
        assert {schema.METRIC_TRAIN_LOSS, schema.METRIC_TEST_ACC, schema.METRIC_LR} <= set(metrics)
        if run.role == "distilled":
            assert tags[schema.TAG_TEMPERATURE] == f"{run.temperature:g}"
            assert tags[schema.TAG_TEACHER_CACHE] in ("on", "off")
            assert metrics[schema.METRIC_TEMPERATURE] == run.temperature
            assert params["soft_weight"] == "0.9"
        history = client.get_metric_history(tracked.info.run_id, schema.METRIC_TEST_ACC)
        assert [m.step for m in history] == [1]

    sample = by_id[plan.runs[-1].id].info.run_id
    listed = {a.path for a in client.list_artifacts(sample)}
    assert {schema.ARTIFACT_PREDICTIONS, schema.ARTIFACT_CLASS_ACCURACY,
            schema.ARTIFACT_CONFUSION, schema.ARTIFACT_CHECKPOINT_DIR} <= listed
    ckpts = {a.path for a in client.list_artifacts(sample, schema.ARTIFACT_CHECKPOINT_DIR)}
    assert ckpts == {schema.ARTIFACT_FINAL_CHECKPOINT, "checkpoints/last.pt"}
    local = Path(client.download_artifacts(sample, schema.ARTIFACT_PREDICTIONS, str(tmp_path)))
    with np.load(local) as npz:
        assert npz[schema.PRED_Y_TRUE].shape == (360,) and npz[schema.PRED_Y_PRED].dtype == np.int64
        confusion_path = client.download_artifacts(sample, schema.ARTIFACT_CONFUSION,
                                                   str(tmp_path))
        confusion = np.load(confusion_path)
        assert confusion.sum() == 360
        assert np.trace(confusion) == int((npz[schema.PRED_Y_TRUE] == npz[schema.PRED_Y_PRED]).sum())
    final = Path(client.download_artifacts(sample, schema.ARTIFACT_FINAL_CHECKPOINT,
                                           str(tmp_path)))
    assert torch.load(final, weights_only=True)["arch"] == "lenet5"

    capsys.readouterr()
    assert _run(path, uri, tmp_path) == 0  # everything reused: no new run
    assert "0 finished, 8 reused" in capsys.readouterr().err
    assert len(nested_runs(uri)) == len(plan.runs)

    assert _run(path, uri, tmp_path, "--dry-run") == 0
    out = capsys.readouterr().out
    assert out.count("  reuse\n") == 8 and "0 to train, 0 to resume, 8 to reuse" in out


def test_nan_loss_fails_those_runs_and_the_rest_goes_on(blank_store: Path, tmp_path: Path, capsys) -> None:
    plan = small_plan(seeds=(0,), temperatures=(2.0,),
                      student_recipe=tiny_recipe(epochs=1, batch_size=128, lr=1e10))
    path, uri = write_plan(plan, tmp_path), fresh_store(blank_store, tmp_path)
    assert _run(path, uri, tmp_path) == 1
    err = capsys.readouterr().err
    assert "1 finished, 0 reused, 2 failed" in err and "log: " in err
    statuses = {r.data.tags[schema.TAG_ROLE]: (r.info.status, r.data.tags.get(schema.TAG_FAILURE))
                for r in nested_runs(uri)}
    assert statuses["teacher"] == ("FINISHED", None)
    for role in ("student", "distilled"):
        status, reason = statuses[role]
        assert status == "FAILED" and reason is not None
        assert "non-finite" in reason or "diverging" in reason


def test_missing_data_is_one_error_before_any_training(blank_store: Path, tmp_path: Path, capsys) -> None:
    missing = tmp_path / "no-such-folder"
    plan = small_plan(dataset=dataset_spec("fashion_mnist", root=str(missing)))
    path, uri = write_plan(plan, tmp_path), fresh_store(blank_store, tmp_path)
    assert _run(path, uri, tmp_path) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("kdspec run: error:") and str(missing) in err[0]
    assert nested_runs(uri) == []


def test_only_narrows_and_a_missing_teacher_blocks(blank_store: Path, tmp_path: Path, capsys) -> None:
    plan = small_plan(seeds=(0,), temperatures=(2.0,))
    path, uri = write_plan(plan, tmp_path), fresh_store(blank_store, tmp_path)
    assert _run(path, uri, tmp_path, "--only", "distilled") == 1
    assert "is not trained and not selected" in capsys.readouterr().err
    assert _run(path, uri, tmp_path, "--only", "teacher") == 0
    assert [r.data.tags[schema.TAG_ROLE] for r in nested_runs(uri)] == ["teacher"]
    assert _run(path, uri, tmp_path, "--only", "distilled") == 0
    assert sorted(finished_by_kdspec_id(nested_runs(uri))) == sorted(
        r.id for r in plan.runs if r.role != "student")


def test_force_retrains_and_retires_the_old_finished_run(blank_store: Path, tmp_path: Path) -> None:
    plan = small_plan(seeds=(0,), temperatures=(2.0,))
    path, uri = write_plan(plan, tmp_path), fresh_store(blank_store, tmp_path)
    teacher = plan.runs[0].id
    assert _run(path, uri, tmp_path, "--only", "teacher") == 0
    assert _run(path, uri, tmp_path, "--only", "teacher", "--force") == 0
    runs = [r for r in nested_runs(uri) if r.data.tags[schema.TAG_RUN_ID] == teacher]
    assert len(runs) == 2
    assert len(finished_by_kdspec_id(runs)[teacher]) == 1


def test_bf16_plan_trains_under_autocast_on_the_cpu(blank_store: Path, tmp_path: Path) -> None:
    plan = small_plan(seeds=(0,), temperatures=(2.0,), runtime=RuntimeSpec(precision="bf16"))
    path, uri = write_plan(plan, tmp_path), fresh_store(blank_store, tmp_path)
    assert _run(path, uri, tmp_path, "--only", "teacher") == 0
    (run,) = nested_runs(uri)
    assert run.info.status == "FINISHED" and run.data.params["precision"] == "bf16"
    tags = run.data.tags
    assert (tags[schema.TAG_PRECISION], tags[schema.TAG_COMPILE]) == ("bf16", "false")
    assert tags[schema.TAG_SPEED_CHOICE] == ("auto: bf16 (named in the spec), not compiled "
                                             "(compiled training is not verified on cpu: write "
                                             "compile = true to force it)")


def test_a_compiled_run_trains_and_says_so(blank_store: Path, tmp_path: Path) -> None:
    """``compile = true``: the training step goes through torch.compile (the first compile of
    a LeNet-5 takes ~10 s on a 2-core CPU); the tag says it was compiled."""
    plan = small_plan(seeds=(0,), temperatures=(2.0,),
                      runtime=RuntimeSpec(precision="fp32", compile=True))
    path, uri = write_plan(plan, tmp_path), fresh_store(blank_store, tmp_path)
    assert _run(path, uri, tmp_path, "--only", "teacher") == 0
    (run,) = nested_runs(uri)
    assert run.info.status == "FINISHED"
    assert (run.data.tags[schema.TAG_COMPILE], run.data.tags[schema.TAG_PRECISION]) == (
        "true", "fp32")
    assert 0.0 <= run.data.metrics[schema.METRIC_TEST_ACC] <= 1.0


def test_auto_precision_is_decided_per_model_and_recorded(blank_store: Path,
                                                          tmp_path: Path) -> None:
    """``auto``: each run's tags say what it trained with and why; a distilled run also names
    its teacher's precision. LeNet-5 on 8x8 digits is below the bf16 size threshold, so every
    CPU, with native bf16 or not, resolves it to fp32."""
    plan = small_plan(seeds=(0,), temperatures=(2.0,),
                      runtime=RuntimeSpec(precision="auto", compile="auto"))
    path, uri = write_plan(plan, tmp_path), fresh_store(blank_store, tmp_path)
    assert _run(path, uri, tmp_path) == 0
    by_role = {r.data.tags[schema.TAG_ROLE]: r for r in nested_runs(uri)}
    assert set(by_role) == {"teacher", "student", "distilled"}
    for role, run in by_role.items():
        tags = run.data.tags
        assert run.data.params["precision"] == "auto"
        assert tags[schema.TAG_COMPILE] == "false", role  # far too short a run to compile
        assert tags[schema.TAG_SPEED_CHOICE].startswith("auto: "), role
        assert tags[schema.TAG_PRECISION] == "fp32", role
        why = tags[schema.TAG_SPEED_CHOICE]
        assert "too small to gain from bf16" in why or "no native bf16" in why, why
    assert by_role["distilled"].data.tags[schema.TAG_TEACHER_PRECISION] == "fp32"


def test_a_teacher_trained_for_another_spec_is_reused(blank_store: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    first = small_plan(name="first", seeds=(0,), temperatures=(2.0,))
    second = small_plan(name="second", seeds=(0,), temperatures=(4.0,))
    uri = fresh_store(blank_store, tmp_path)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    assert _run(write_plan(first, tmp_path / "a"), uri, tmp_path, "--only", "teacher") == 0
    (teacher,) = nested_runs(uri)
    capsys.readouterr()
    assert _run(write_plan(second, tmp_path / "b"), uri, tmp_path) == 0
    assert "2 finished, 1 reused" in capsys.readouterr().err
    runs = nested_runs(uri)
    assert len(runs) == 3  # the teacher was not trained again
    distilled = next(r for r in runs if r.data.tags[schema.TAG_ROLE] == "distilled")
    assert distilled.data.tags[schema.TAG_TEACHER_RUN_ID] == teacher.data.tags[schema.TAG_RUN_ID]
    assert distilled.info.experiment_id != teacher.info.experiment_id


def test_two_shards_finish_the_plan_together(blank_store: Path, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    plan = small_plan()
    path, uri = write_plan(plan, tmp_path), fresh_store(blank_store, tmp_path)
    assert _run(path, uri, tmp_path, "--shard", "0/2") == 0
    first = {r.data.tags[schema.TAG_RUN_ID] for r in nested_runs(uri)}
    assert 0 < len(first) < len(plan.runs)
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(plan.studies[0].tracking.experiment)
    assert experiment is not None
    (parent,) = client.search_runs([experiment.experiment_id],
                                   f"tags.`{schema.TAG_KIND}` = '{schema.KIND_PLAN}'")
    assert parent.info.status == "RUNNING"  # the other shard is still to come
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "1")  # the second shard, as a Slurm array task
    monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", "2")
    assert _run(path, uri, tmp_path) == 0
    runs = nested_runs(uri)
    assert len(runs) == len(plan.runs)
    assert sorted(finished_by_kdspec_id(runs)) == sorted(r.id for r in plan.runs)
    assert {r.data.tags["mlflow.parentRunId"] for r in runs} == {parent.info.run_id}
    assert client.get_run(parent.info.run_id).info.status == "FINISHED"
