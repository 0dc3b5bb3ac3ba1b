"""A full disk stops the plan at its first refused write, not after training every later run;
before training, too little room for the next group's checkpoints is an error and too little
for the whole plan a warning. The estimate is checked by hand against the catalogue."""

from __future__ import annotations

import errno
import logging
from pathlib import Path

import pytest

from kdspec.errors import OutOfSpace
from kdspec.plan import Plan
from kdspec.runtime import executor as executor_module
from kdspec.runtime.disk_space import is_out_of_space, space_need
from kdspec.runtime.executor import Executor
from kdspec.runtime.run_options import RunOptions
from kdspec.tracking import schema
from tests.factories import dataset_spec, tiny_plan, tiny_recipe
from tests.runtime.memory_store import MemoryStore

LOGGER = logging.getLogger("kdspec.test")


def _plan() -> Plan:
    return tiny_plan(dataset=dataset_spec("digits", train_subset=256, test_subset=96),
                     teacher_arch="lenet5", student_arch="lenet5", seeds=(0, 1),
                     temperatures=(2.0, 4.0), teacher_recipe=tiny_recipe(epochs=3),
                     student_recipe=tiny_recipe(epochs=3))


def _executor(plan: Plan, store: MemoryStore, tmp_path: Path) -> Executor:
    options = RunOptions(tracking_uri=store.uri, quiet=True, settle_seconds=0.0,
                         poll_seconds=0.01, log_dir=tmp_path / "logs")
    return Executor(plan, options, LOGGER, open_store=lambda uri, read_only=False: store)


def test_the_estimate_by_hand() -> None:
    plan = _plan()
    runs = list(plan.runs)
    need = space_need(runs, runs[:1])
    lenet = 0.062e6  # the catalogue's parameter count
    assert need.artifacts == pytest.approx(16 * lenet * len(runs))
    assert need.workdir == pytest.approx(12 * lenet)
    assert need.unknown == ()
    external = space_need([runs[0].model_copy(update={"arch": "torchvision:resnet18"})], [])
    assert external.unknown == ("torchvision:resnet18",) and external.artifacts == 0


def test_a_full_disk_stops_the_plan_at_its_first_refused_write(tmp_path: Path) -> None:
    """The artifact store refuses the first checkpoint (ENOSPC): the plan stops there with one
    clear error, the run it was training is released (resumable), and no other run starts."""
    plan = _plan()
    store = MemoryStore()

    def full(mlflow_id: str, path: Path, artifact_dir: str | None = None) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    store.log_file = full  # type: ignore[method-assign]
    executor = _executor(plan, store, tmp_path)
    with pytest.raises(OutOfSpace) as err:
        executor.execute(executor.prepare(executor.my_runs()), spec_text=None)
    assert "out of disk space while writing teacher lenet5 seed 0" in str(err.value)
    assert "No space left on device" in str(err.value)
    [teacher] = store.nested()  # nothing else was started
    assert teacher.status == "KILLED" and "out of disk space" in teacher.tags[
        schema.TAG_INTERRUPTED]
    assert store.steps(teacher.mlflow_id, schema.METRIC_TRAIN_LOSS) == []  # after 1 epoch



def test_a_full_disk_is_recognised_through_the_errors_that_wrap_it() -> None:
    try:
        try:
            raise OSError(errno.EDQUOT, "Disk quota exceeded")
        except OSError as inner:
            raise RuntimeError("MLflow could not log the artifact") from inner
    except RuntimeError as outer:
        assert is_out_of_space(outer)
    assert not is_out_of_space(OSError(errno.EACCES, "Permission denied"))


def test_too_little_room_is_found_before_anything_trains(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    plan = _plan()
    executor = _executor(plan, MemoryStore(), tmp_path)
    prep = executor.prepare(executor.my_runs())
    need = space_need([r for g in prep.groups for r in g.runs],
                      max((g.runs for g in prep.groups), key=len))
    monkeypatch.setattr(executor_module, "free_bytes", lambda folder: int(need.workdir) - 1)
    with pytest.raises(OutOfSpace, match="free, and training the next group needs about"):
        executor.check_space(prep)
    caplog.set_level(logging.WARNING, logger=LOGGER.name)
    monkeypatch.setattr(executor_module, "free_bytes", lambda folder: 10**12)
    executor.check_space(prep)
    assert not caplog.records
    # Room for the next group, not for every run's checkpoints: a warning with the numbers.
    # (A store URI that is neither a server nor sqlite keeps artifacts in ./mlartifacts.)
    room = int(max(need.workdir, need.artifacts / 3))
    monkeypatch.setattr(executor_module, "free_bytes", lambda folder: room)
    executor.check_space(prep)
    [warning] = caplog.records
    assert "mlartifacts has" in warning.getMessage()
    assert "the plan stops when the disk is full" in warning.getMessage()
