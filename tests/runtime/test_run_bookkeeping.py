"""The run bookkeeping through the writer, on an in-memory store (fast suite): what is
trained, reused, resumed at epoch k, failed, deferred to another process, and what each run
records. Tiny real trainings (digits, LeNet-5, a second or two)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from kdspec.plan import Plan, Run
from kdspec.runtime.executor import Executor
from kdspec.runtime.lockstep_group import GroupContext, GroupSettings, LockstepGroup
from kdspec.runtime.run_options import RunOptions
from kdspec.runtime.run_writer import EpochRecord, StoreWriter
from kdspec.runtime.scheduling import Group, decide_action, form_groups
from kdspec.runtime.weights import StoreWeights
from kdspec.tracking import schema
from kdspec.tracking.leases import claim_tags, now_ms
from kdspec.tracking.ownership import ClaimLost, LeaseSettings
from tests.factories import dataset_spec, tiny_plan, tiny_recipe
from tests.runtime.memory_store import MemoryStore

LOGGER = logging.getLogger("kdspec.test")


def _plan(epochs: int = 2, lr: float = 0.05, seeds: tuple[int, ...] = (0,)) -> Plan:
    return tiny_plan(dataset=dataset_spec("digits", train_subset=256, test_subset=96),
                     teacher_arch="lenet5", student_arch="lenet5", seeds=seeds,
                     temperatures=(2.0, 4.0),
                     teacher_recipe=tiny_recipe(epochs=epochs, batch_size=64, lr=lr),
                     student_recipe=tiny_recipe(epochs=epochs, batch_size=64, lr=lr))


def _executor(plan: Plan, store: MemoryStore, tmp_path: Path, **options: object) -> Executor:
    fields: dict[str, object] = dict(tracking_uri=store.uri, quiet=True, settle_seconds=0.0,
                                     poll_seconds=0.01, log_dir=tmp_path / "logs")
    fields.update(options)
    return Executor(plan, RunOptions(**fields), LOGGER,  # type: ignore[arg-type]
                    open_store=lambda uri, read_only=False: store)


def _run(plan: Plan, store: MemoryStore, tmp_path: Path, **options: object) -> dict[str, str]:
    executor = _executor(plan, store, tmp_path, **options)
    prep = executor.prepare(executor.my_runs())
    return {o.run.id: o.status for o in executor.execute(prep, spec_text=None)}


def test_a_plan_is_trained_then_reused_and_each_run_records_its_layout(tmp_path: Path) -> None:
    plan = _plan()
    store = MemoryStore()
    assert set(_run(plan, store, tmp_path).values()) == {"finished"}
    for run in plan.runs:
        [stored] = store.nested(run.id)
        assert stored.status == "FINISHED"
        assert store.steps(stored.mlflow_id, schema.METRIC_TRAIN_LOSS) == [1, 2]
        assert stored.tags[schema.TAG_LAST_EPOCH] == "2"
        assert {schema.ARTIFACT_PREDICTIONS, schema.ARTIFACT_FINAL_CHECKPOINT,
                schema.ARTIFACT_LAST_CHECKPOINT} <= set(stored.artifacts)
        assert stored.tags[schema.TAG_LEASE_OWNER] and stored.inputs[0].name == "digits"
        assert stored.name.startswith(f"{plan.studies[0].name}.")
        if run.temperature is not None:
            assert stored.params["temperature"] == schema.temperature_param(run.temperature)
            assert stored.tags[schema.TAG_LOCKSTEP] == "2"  # both T trained together
    # The same plan again: everything reused, nothing created.
    created = store.calls.count("create_run")
    assert set(_run(plan, store, tmp_path).values()) == {"reused"}
    assert store.calls.count("create_run") == created


def test_an_interrupted_run_resumes_at_its_epoch_and_equals_straight_through(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    plan = _plan(epochs=3)
    teacher = plan.runs_of(plan.studies[0], "teacher")[0]
    only_teacher = ("teacher",)
    straight = MemoryStore()
    _run(plan, straight, tmp_path, only=only_teacher)
    # Interrupted after epoch 1: the run stays RUNNING with a stale lease and last.pt.
    store = MemoryStore()
    real_epoch = StoreWriter.epoch

    def die_after_first(self: StoreWriter, records: list[EpochRecord]) -> None:
        real_epoch(self, records)
        if records[0].epoch == 1:
            self._writes.flush()  # killed once epoch 1's write has reached the store
            raise KeyboardInterrupt

    monkeypatch.setattr(StoreWriter, "epoch", die_after_first)
    with pytest.raises(KeyboardInterrupt):
        _run(plan, store, tmp_path, only=only_teacher)
    monkeypatch.undo()
    [half] = store.nested(teacher.id)
    assert half.status == "RUNNING" and half.tags[schema.TAG_LAST_EPOCH] == "1"
    half.tags[schema.TAG_LEASE_HEARTBEAT] = "1"  # its process died long ago
    assert decide_action(teacher, store.find_runs([teacher.id])[teacher.id],
                         force=False).describe() == "resume at epoch 2"
    assert _run(plan, store, tmp_path, only=only_teacher) == {teacher.id: "finished"}
    [resumed] = store.nested(teacher.id)
    assert resumed.mlflow_id == half.mlflow_id  # the same MLflow run, continued
    assert store.steps(resumed.mlflow_id, schema.METRIC_TRAIN_LOSS) == [1, 2, 3]
    weights = [torch.load(_artifact(s, teacher.id, tmp_path), weights_only=True)["model"]
               for s in (straight, store)]
    assert all(torch.equal(a, b) for a, b in zip(weights[0].values(), weights[1].values(),
                                                 strict=True))


@pytest.mark.parametrize("reached", ["metrics without the tag", "neither"])
def test_a_run_killed_between_its_checkpoint_and_its_tag_logs_each_epoch_once(
        reached: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Killed after epoch 2's last.pt was uploaded but before kdspec.last_epoch = 2 reached the
    store: MLflow commits a request's metrics and tags in separate transactions, so epoch 2's
    metrics may be there ("metrics without the tag": seen once in CI as train_loss steps
    [1, 2, 3, 3, 4] after a kill -9) or not ("neither"). Either way the rerun resumes after
    epoch 2 from its checkpoint and the store ends with each epoch's metrics once."""
    plan = _plan(epochs=3)
    teacher = plan.runs_of(plan.studies[0], "teacher")[0]
    store = MemoryStore()
    real_epoch = StoreWriter.epoch

    def die_after_second(self: StoreWriter, records: list[EpochRecord]) -> None:
        real_epoch(self, records)
        if records[0].epoch == 2:
            self._writes.flush()
            raise KeyboardInterrupt

    monkeypatch.setattr(StoreWriter, "epoch", die_after_second)
    with pytest.raises(KeyboardInterrupt):
        _run(plan, store, tmp_path, only=("teacher",))
    monkeypatch.undo()
    [half] = store.nested(teacher.id)
    half.tags[schema.TAG_LAST_EPOCH] = "1"  # the tag's transaction never committed
    half.tags[schema.TAG_LEASE_HEARTBEAT] = "1"  # its process died long ago
    if reached == "neither":
        for key in list(half.metrics):
            kept = [i for i, (step, _) in enumerate(half.metrics[key]) if step != 2]
            half.metrics[key] = [half.metrics[key][i] for i in kept]
            half.metric_times[key] = [half.metric_times[key][i] for i in kept]
    assert _run(plan, store, tmp_path, only=("teacher",)) == {teacher.id: "finished"}
    [done] = store.nested(teacher.id)
    assert done.mlflow_id == half.mlflow_id
    for key in (schema.METRIC_TRAIN_LOSS, schema.METRIC_TEST_ACC):
        assert store.steps(done.mlflow_id, key) == [1, 2, 3], key


def _artifact(store: MemoryStore, kdspec_id: str, tmp_path: Path) -> Path:
    [run] = [r for r in store.nested(kdspec_id) if r.status == "FINISHED"]
    path = tmp_path / f"{run.mlflow_id}.pt"
    path.write_bytes(run.artifacts[schema.ARTIFACT_FINAL_CHECKPOINT])
    return path


def test_a_diverging_run_is_failed_with_its_reason_and_its_students_skipped(
        tmp_path: Path) -> None:
    plan = _plan(lr=1e10)
    store = MemoryStore()
    statuses = _run(plan, store, tmp_path)
    teacher = plan.runs_of(plan.studies[0], "teacher")[0]
    assert statuses[teacher.id] == "failed"
    [stored] = store.nested(teacher.id)
    assert stored.status == "FAILED" and "loss" in stored.tags[schema.TAG_FAILURE]
    for run in plan.runs_of(plan.studies[0], "distilled"):
        assert statuses[run.id] == "skipped" and not store.nested(run.id)
    parent = next(r for r in store.live() if r.tags.get(schema.TAG_KIND) == schema.KIND_PLAN)
    assert parent.status == "FAILED" and "did not finish" in parent.tags[schema.TAG_FAILURE]


def test_a_run_live_in_another_process_is_left_to_it(tmp_path: Path) -> None:
    plan = _plan(epochs=1)
    study = plan.studies[0]
    store = MemoryStore()
    teacher = plan.runs_of(study, "teacher")[0]
    other = store.create_run(experiment="e", parent_id="", run_name="other", tags={
        schema.TAG_RUN_ID: teacher.id, **claim_tags(f"elsewhere:{os.getpid()}:x", now_ms())})
    actions = [decide_action(r, store.find_runs([r.id])[r.id], force=False) for r in plan.runs]
    assert actions[0].kind == "elsewhere" and f"running elsewhere (elsewhere pid {os.getpid()}" \
        in actions[0].describe()
    # Its students wait for it; here the other process finishes it while they wait.
    executor = _executor(plan, store, tmp_path)
    prep = executor.prepare(executor.my_runs())
    calls = {"n": 0}
    real_find = store.find_runs

    def finishing_find(ids):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 4:  # after a first look, the other process is done
            store.runs[other].status = "FINISHED"
            store.runs[other].artifacts[schema.ARTIFACT_FINAL_CHECKPOINT] = _trained_teacher(
                plan, tmp_path)
        return real_find(ids)

    store.find_runs = finishing_find  # type: ignore[method-assign]
    outcomes = {o.run.id: o for o in executor.execute(prep, spec_text=None)}
    assert outcomes[teacher.id].status == "reused"  # it waited for the other process
    assert outcomes[teacher.id].note == "finished by another process"
    assert all(outcomes[r.id].status == "finished" for r in plan.runs_of(study, "distilled"))
    assert len(store.nested(teacher.id)) == 1  # never trained here


def _trained_teacher(plan: Plan, tmp_path: Path) -> bytes:
    """final.pt of the plan's teacher, trained in a scratch store."""
    scratch = MemoryStore()
    _run(plan, scratch, tmp_path, only=("teacher",))
    [run] = scratch.nested(plan.runs_of(plan.studies[0], "teacher")[0].id)
    return run.artifacts[schema.ARTIFACT_FINAL_CHECKPOINT]


def _student_pair(tmp_path: Path, *, settle_s: float, defer_claim_check: bool = False
                  ) -> tuple[MemoryStore, Group, StoreWriter]:
    """A fresh store, the two-student lockstep group of a 1-epoch plan, and its writer."""
    plan = _plan(epochs=1)
    store = MemoryStore()
    [group] = [g for g in form_groups(plan, [decide_action(r, [], force=False)
                                            for r in plan.runs]) if len(g.runs) == 2]
    return store, group, StoreWriter(study=plan.studies[0], store=store, parent_id="p",
                                     workdir=tmp_path, owner="me:1:a",
                                     lease=LeaseSettings(600.0, settle_s),
                                     defer_claim_check=defer_claim_check)


def _claim_first(store: MemoryStore, run: Run, owner: str, ago_ms: int) -> None:
    """Another process's claim on ``run``, made ``ago_ms`` before now."""
    store.create_run(experiment="e", parent_id="", run_name=owner.split(":")[0], tags={
        schema.TAG_RUN_ID: run.id, **claim_tags(owner, now_ms() - ago_ms)})


def test_a_lost_claim_undoes_what_it_created(tmp_path: Path) -> None:
    store, group, writer = _student_pair(tmp_path, settle_s=0.0)
    # Between this process's look and its claim, another one claimed the T=4 student first.
    rival = group.runs[1]
    _claim_first(store, rival, f"rival:{os.getpid()}:b", 1000)
    with pytest.raises(ClaimLost, match=f"{rival.id}: held by rival:{os.getpid()}:b"):
        writer.open(group)
    assert [r.name for r in store.nested()] == ["rival"]  # its own two runs were deleted


def test_a_deferred_claim_check_trains_meanwhile_and_still_steps_back(tmp_path: Path) -> None:
    """With the check deferred (kdspec run's default outside data-parallel), open() returns at
    once; the first write waits for the check, and a lost claim surfaces at the next submit or
    flush with nothing of the epoch written and the claim's own runs deleted."""
    store, group, writer = _student_pair(tmp_path, settle_s=0.3, defer_claim_check=True)
    rival = group.runs[1]
    _claim_first(store, rival, f"rival:{os.getpid()}:b", 1000)
    trainees = [_trainee(r) for r in group.runs]
    started = time.monotonic()
    writer.open(group)  # no sleep, no check yet
    assert time.monotonic() - started < 0.3
    assert len(store.nested()) == 3
    writer.epoch([EpochRecord(t, 1, {"train_loss": 1.0}) for t in trainees])
    with pytest.raises(ClaimLost, match=f"{rival.id}: held by rival"):
        writer.close()
    assert time.monotonic() - started >= 0.3
    assert [r.name for r in store.nested()] == ["rival"]


def _trainee(run):  # type: ignore[no-untyped-def]
    from kdspec.runtime.training import new_trainee

    return new_trainee(run, in_channels=1, image_size=8, num_classes=10,
                       device=torch.device("cpu"))


def test_a_group_is_the_training_loop_plus_writer_calls(tmp_path: Path) -> None:
    """A LockstepGroup alone, with its writer and weight source: K students in lockstep."""
    plan = _plan(epochs=2)
    study = plan.studies[0]
    store = MemoryStore()
    _run(plan, store, tmp_path, only=("teacher",))
    distilled = [decide_action(r, [], force=False) for r in plan.runs_of(study, "distilled")]
    [group] = form_groups(plan, distilled)
    assert isinstance(group, Group) and len(group.runs) == 2
    from kdspec.runtime.data import load_dataset
    from kdspec.runtime.progress import GroupProgress, PlanClock

    writer = StoreWriter(study=study, store=store, parent_id="p", workdir=tmp_path,
                         owner="me:1:a", lease=LeaseSettings(600.0, 0.0))
    outcomes = LockstepGroup(group, GroupContext(
        study=study, dataset=load_dataset(study.dataset, device=torch.device("cpu")),
        writer=writer, weights=StoreWeights(store, store, tmp_path),
        settings=GroupSettings(device=torch.device("cpu")),
        progress=GroupProgress(label=group.label, study=study.name, place="", mode="quiet",
                               logger=LOGGER, clock=PlanClock(total=1.0), epoch_cost={},
                               batches_per_epoch=4),
        logger=LOGGER)).train()
    assert [o.status for o in outcomes] == ["finished", "finished"]
    for outcome in outcomes:
        [stored] = store.nested(outcome.run.id)
        assert stored.tags[schema.TAG_TEACHER_CACHE] in ("on", "off")
        assert outcome.mlflow_id == stored.mlflow_id and outcome.test_acc is not None


def test_a_lease_whose_owner_died_on_this_machine_is_not_live() -> None:
    """kill -9, or a stop for a lost server: the pid is gone, so the next run on this machine
    resumes at once instead of waiting out the lease timeout."""
    from kdspec.tracking.leases import Lease
    from kdspec.tracking.ownership import is_live

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    tags = claim_tags(f"host:{dead}:t", now_ms())
    assert not is_live("RUNNING", Lease.from_tags(tags), at_ms=now_ms(), timeout_s=600)
    alive = claim_tags(f"host:{os.getpid()}:t", now_ms())
    assert is_live("RUNNING", Lease.from_tags(alive), at_ms=now_ms(), timeout_s=600)
    # On another machine a pid means nothing here: only the heartbeat's age counts.
    elsewhere = {**tags, schema.TAG_LEASE_MACHINE: "another-boot/pid:[1]"}
    assert is_live("RUNNING", Lease.from_tags(elsewhere), at_ms=now_ms(), timeout_s=600)


def test_log_places_count_up_in_training_order_after_the_runs_already_done(
        tmp_path: Path) -> None:
    plan = _plan(seeds=(0, 1))  # per seed: teacher, student, 2 distilled = 8 runs
    store = MemoryStore()
    executor = _executor(plan, store, tmp_path)
    prep = executor.prepare(executor.my_runs())
    places = [executor._places(prep)[g.runs[0].id] for g in prep.groups]
    sizes = [len(g.runs) for g in prep.groups]
    expected, first = [], 1
    for size in sizes:
        last = first + size - 1
        expected.append(f"run {first}/8" if size == 1 else f"runs {first}-{last}/8")
        first = last + 1
    assert places == expected and first == 9

    # Seed 0 done: a rerun of the plan counts seed 1's runs as 5-8 of 8.
    _run(plan.model_copy(update={"runs": tuple(r for r in plan.runs if r.seed == 0)}),
         store, tmp_path)
    executor = _executor(plan, store, tmp_path)
    prep = executor.prepare(executor.my_runs())
    places = [executor._places(prep)[g.runs[0].id] for g in prep.groups]
    assert places[0].startswith("run 5/") and places[-1].endswith("-8/8")


def test_log_places_of_two_studies_with_the_same_group_labels_count_up(tmp_path: Path) -> None:
    """Both studies have a "teacher lenet5 seed 0": each gets its own place, 1..8 over the plan."""
    one = _plan()
    two = tiny_plan(name="other", dataset=dataset_spec("digits", train_subset=128),
                    teacher_arch="lenet5", student_arch="lenet5", seeds=(0,),
                    temperatures=(2.0, 4.0), teacher_recipe=tiny_recipe(epochs=1),
                    student_recipe=tiny_recipe(epochs=1))
    plan = Plan(studies=one.studies + two.studies, runs=one.runs + two.runs)
    executor = _executor(plan, MemoryStore(), tmp_path)
    prep = executor.prepare(executor.my_runs())
    places = executor._places(prep)
    labels = [g.label for g in prep.groups]
    assert len(set(labels)) < len(labels)  # the labels do repeat
    assert [places[g.runs[0].id] for g in prep.groups] == [
        "run 1/8", "run 2/8", "runs 3-4/8", "run 5/8", "run 6/8", "runs 7-8/8"]


def _half_trained_teacher(plan: Plan, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                          ) -> tuple[MemoryStore, Run]:
    """A store whose teacher was killed after epoch 1 (RUNNING, stale lease, last.pt saved)."""
    teacher = plan.runs_of(plan.studies[0], "teacher")[0]
    store = MemoryStore()
    real_epoch = StoreWriter.epoch

    def die_after_first(self: StoreWriter, records: list[EpochRecord]) -> None:
        real_epoch(self, records)
        if records[0].epoch == 1:
            self._writes.flush()
            raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(StoreWriter, "epoch", die_after_first)
        with pytest.raises(KeyboardInterrupt):
            _run(plan, store, tmp_path, only=("teacher",))
    [half] = store.nested(teacher.id)
    half.tags[schema.TAG_LEASE_HEARTBEAT] = "1"  # its process died long ago
    return store, teacher


@pytest.mark.parametrize("swap", ["another run's", "another architecture's", "unreadable"])
def test_a_checkpoint_that_cannot_be_used_restarts_its_run_with_the_reason(
        swap: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """Whatever makes a resumed run's last.pt unusable (it loads but belongs to another run,
    it does not fit the architecture, it is not a checkpoint), the run trains again from its
    first epoch, the reason is on the given-up run and in the log."""
    plan = _plan(epochs=2)
    store, teacher = _half_trained_teacher(plan, tmp_path, monkeypatch)
    [half] = store.nested(teacher.id)
    state = _last_state(half)
    if swap == "another run's":  # loads into the model, but was saved by another run
        state["kdspec_run_id"] = plan.runs_of(plan.studies[0], "student")[0].id
    elif swap == "another architecture's":
        from kdspec.runtime.models import build_model

        state["model"] = build_model("resnet20", in_channels=1, image_size=8,
                                     num_classes=10).state_dict()
    path = tmp_path / "swapped.pt"
    torch.save(state, path)
    half.artifacts[schema.ARTIFACT_LAST_CHECKPOINT] = (
        b"not a checkpoint" if swap == "unreadable" else path.read_bytes())
    caplog.set_level(logging.WARNING, logger=LOGGER.name)
    assert _run(plan, store, tmp_path, only=("teacher",)) == {teacher.id: "finished"}
    runs = store.nested(teacher.id)
    assert sorted(r.status for r in runs) == ["FINISHED", "KILLED"]
    assert half.status == "KILLED" and half.tags[schema.TAG_LAST_EPOCH] == "0"
    assert half.tags[schema.TAG_FAILURE].startswith("checkpoint unusable (")
    [done] = [r for r in runs if r.status == "FINISHED"]
    assert store.steps(done.mlflow_id, schema.METRIC_TRAIN_LOSS) == [1, 2]  # from epoch 1
    assert "cannot resume" in caplog.text and "trains from its first epoch" in caplog.text


def _last_state(stored) -> dict:  # type: ignore[no-untyped-def]
    """The resume state stored in a run's last.pt."""
    import io

    return torch.load(io.BytesIO(stored.artifacts[schema.ARTIFACT_LAST_CHECKPOINT]),
                      weights_only=True)
