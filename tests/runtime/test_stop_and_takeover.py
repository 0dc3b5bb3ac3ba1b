"""Preemption and hand-over on an in-memory store (fast suite, tiny real trainings): a stop
signal releases the group's runs at a batch boundary so anyone resumes them at once, and runs
another process held when the plan was made are taken over when their lease expires."""

from __future__ import annotations

import logging
import os
import signal
from pathlib import Path

import pytest
import torch

from kdspec.plan import Plan
from kdspec.runtime import training
from kdspec.runtime.executor import Executor
from kdspec.runtime.run_options import RunOptions
from kdspec.runtime.scheduling import decide_action
from kdspec.runtime.stop_request import Stopped, StopRequest
from kdspec.tracking import schema
from kdspec.tracking.leases import claim_tags, now_ms
from tests.factories import dataset_spec, tiny_plan, tiny_recipe
from tests.runtime.memory_store import MemoryStore

LOGGER = logging.getLogger("kdspec.test")


def _plan(epochs: int = 2) -> Plan:
    return tiny_plan(dataset=dataset_spec("digits", train_subset=256, test_subset=96),
                     teacher_arch="lenet5", student_arch="lenet5", seeds=(0,),
                     temperatures=(2.0, 4.0),
                     teacher_recipe=tiny_recipe(epochs=epochs, batch_size=64),
                     student_recipe=tiny_recipe(epochs=epochs, batch_size=64))


def _executor(plan: Plan, store: MemoryStore, tmp_path: Path, stop: StopRequest | None = None,
              **options: object) -> Executor:
    fields: dict[str, object] = dict(tracking_uri=store.uri, quiet=True, settle_seconds=0.0,
                                     poll_seconds=0.05, log_dir=tmp_path / "logs")
    fields.update(options)
    return Executor(plan, RunOptions(**fields), LOGGER,  # type: ignore[arg-type]
                    open_store=lambda uri, read_only=False: store, stop=stop)


def _run(executor: Executor) -> dict[str, str]:
    prep = executor.prepare(executor.my_runs())
    return {o.run.id: o.status for o in executor.execute(prep, spec_text=None)}


def test_a_stop_signal_releases_the_runs_and_the_next_run_resumes_them_at_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """SIGTERM in the teacher's second epoch (6th of its 8 batches): the teacher ends KILLED
    with the reason, resumable at epoch 2 with no lease to wait for; the students are left
    'not started'; the parent is KILLED. A second process finishes the plan, and the teacher's
    weights equal a run that was never stopped."""
    plan = _plan(epochs=2)
    teacher = plan.runs_of(plan.studies[0], "teacher")[0]
    straight = MemoryStore()
    _run(_executor(plan, straight, tmp_path, only=("teacher",)))

    store, stop = MemoryStore(), StopRequest()
    steps = {"n": 0}
    real_step = training.train_step

    def counting_step(*args, **kwargs):  # type: ignore[no-untyped-def]
        steps["n"] += 1
        if steps["n"] == 6:
            stop.request(signal.SIGTERM)
        return real_step(*args, **kwargs)

    monkeypatch.setattr(training, "train_step", counting_step)
    executor = _executor(plan, store, tmp_path, stop=stop)
    statuses = _run(executor)
    monkeypatch.undo()
    assert isinstance(executor.stopped, Stopped) and executor.stopped.exit_code == 143
    assert statuses[teacher.id] == "interrupted"
    assert {statuses[r.id] for r in plan.runs_of(plan.studies[0], "distilled")} == {
        "interrupted"}
    [half] = store.nested(teacher.id)
    assert half.status == "KILLED" and half.tags[schema.TAG_LAST_EPOCH] == "1"
    assert "SIGTERM" in half.tags[schema.TAG_INTERRUPTED]
    assert "resumes at epoch 2" in half.tags[schema.TAG_INTERRUPTED]
    parent = next(r for r in store.live() if r.tags.get(schema.TAG_KIND) == schema.KIND_PLAN)
    assert parent.status == "KILLED"
    # No lease to wait for: the very next look resumes it.
    assert decide_action(teacher, store.find_runs([teacher.id])[teacher.id],
                         force=False).describe() == "resume at epoch 2"
    assert set(_run(_executor(plan, store, tmp_path)).values()) == {"finished"}
    weights = []
    for s in (straight, store):
        [run] = [r for r in s.nested(teacher.id) if r.status == "FINISHED"]
        path = tmp_path / f"{id(s)}.pt"
        path.write_bytes(run.artifacts[schema.ARTIFACT_FINAL_CHECKPOINT])
        weights.append(torch.load(path, weights_only=True)["model"])
    assert all(torch.equal(a, b) for a, b in zip(weights[0].values(), weights[1].values(),
                                                 strict=True))


def test_a_stop_before_training_leaves_every_group_for_the_next_run(tmp_path: Path) -> None:
    plan = _plan(epochs=1)
    stop = StopRequest()
    stop.request(signal.SIGINT)
    store = MemoryStore()
    executor = _executor(plan, store, tmp_path, stop=stop)
    assert set(_run(executor).values()) == {"interrupted"}
    assert executor.stopped is not None and executor.stopped.exit_code == 130
    assert not store.nested()


def test_a_run_whose_owner_died_elsewhere_is_taken_over_when_its_lease_expires(
        tmp_path: Path) -> None:
    """The teacher was claimed by a process on 'another node' that died: it is live at
    planning time. The retry waits on it (naming it), takes it over once the lease expires,
    then trains the students: the whole study in one invocation."""
    plan = _plan(epochs=1)
    store = MemoryStore()
    teacher = plan.runs_of(plan.studies[0], "teacher")[0]
    timeout_s = 3.0  # the shortest lease kdspec run accepts
    dead = store.create_run(experiment="e", parent_id="", run_name="dead", tags={
        schema.TAG_RUN_ID: teacher.id,
        **claim_tags(f"othernode:{os.getpid()}:x", now_ms() - 200)})
    store.runs[dead].tags[schema.TAG_LEASE_MACHINE] = "another-boot/another-ns"
    executor = _executor(plan, store, tmp_path, lease_timeout_s=timeout_s, poll_seconds=5.0)
    messages: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: messages.append(record.getMessage())  # type: ignore[method-assign]
    LOGGER.addHandler(handler)
    LOGGER.setLevel(logging.INFO)
    try:
        statuses = _run(executor)
    finally:
        LOGGER.removeHandler(handler)
    assert set(statuses.values()) == {"finished"}
    waits = [m for m in messages if m.startswith("waiting")]
    assert waits and f"kdspec id {teacher.id}" in waits[0]
    assert f"held by othernode:{os.getpid()}:x" in waits[0] and "lease expires in" in waits[0]
    finished = [r for r in store.nested(teacher.id) if r.status == "FINISHED"]
    assert len(finished) == 1 and store.runs[dead].status == "KILLED"


def test_the_stop_handler_turns_a_signal_into_a_flag_and_a_second_one_acts_at_once() -> None:
    stop = StopRequest()
    with stop.installed():
        os.kill(os.getpid(), signal.SIGUSR1)
        assert stop.requested and stop.signal_number == signal.SIGUSR1
        with pytest.raises(Stopped, match="SIGUSR1"):
            stop.check()
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGUSR1) is signal.SIG_DFL  # put back as it was
