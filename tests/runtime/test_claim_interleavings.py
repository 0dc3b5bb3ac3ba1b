"""The claim protocol under forced interleavings (hooks that run a second process's step at the
exact point that matters, no sleeps): a resuming process claims before it downloads anything,
and a process that loses a claim has written nothing on the winner's run."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
import torch

from kdspec.plan import Plan
from kdspec.runtime.data import load_dataset
from kdspec.runtime.lockstep_group import GroupContext, GroupSettings, LockstepGroup, Outcome
from kdspec.runtime.progress import GroupProgress, PlanClock
from kdspec.runtime.run_writer import StoreWriter
from kdspec.runtime.scheduling import Action, Group, decide_action, form_groups
from kdspec.runtime.weights import StoreWeights
from kdspec.tracking import schema
from kdspec.tracking.leases import claim_tags, now_ms
from kdspec.tracking.ownership import ClaimLost, LeaseSettings
from tests.factories import dataset_spec, tiny_plan, tiny_recipe
from tests.runtime.memory_store import MemoryStore

LOGGER = logging.getLogger("kdspec.test")


def _plan() -> Plan:
    return tiny_plan(dataset=dataset_spec("digits", train_subset=256, test_subset=96),
                     teacher_arch="lenet5", student_arch="lenet5", seeds=(0,),
                     temperatures=(2.0,),
                     teacher_recipe=tiny_recipe(epochs=2, batch_size=64),
                     student_recipe=tiny_recipe(epochs=2, batch_size=64))


def _interrupted_teacher(plan: Plan, tmp_path: Path) -> tuple[MemoryStore, Group]:
    """A store whose teacher was KILLED after saving epoch 1, and the group that resumes it."""
    from tests.runtime.test_stop_and_takeover import _executor

    store = MemoryStore()
    teacher = plan.runs_of(plan.studies[0], "teacher")[0]
    full = MemoryStore()
    executor = _executor(plan, full, tmp_path, only=("teacher",))
    executor.execute(executor.prepare(executor.my_runs()), spec_text=None)
    [done] = full.nested(teacher.id)
    mlflow_id = store.create_run(experiment="e", parent_id="", run_name="half", tags={
        schema.TAG_RUN_ID: teacher.id, schema.TAG_LAST_EPOCH: "1"})
    store.runs[mlflow_id].status = "KILLED"
    store.runs[mlflow_id].artifacts["checkpoints/last.pt"] = done.artifacts["checkpoints/last.pt"]
    action = decide_action(teacher, store.find_runs([teacher.id])[teacher.id], force=False)
    assert action.kind == "resume"
    [group] = form_groups(plan, [action])
    return store, group


def _train(plan: Plan, group: Group, store: MemoryStore, source: Any, owner: str,
           tmp_path: Path) -> list[Outcome]:
    study = plan.studies[0]
    writer = StoreWriter(study=study, store=store, parent_id="p", workdir=tmp_path / owner,
                         owner=owner, lease=LeaseSettings(600.0, 0.0), defer_claim_check=True)
    return LockstepGroup(group, GroupContext(
        study=study, dataset=load_dataset(study.dataset, device=torch.device("cpu")),
        writer=writer, weights=source, settings=GroupSettings(device=torch.device("cpu")),
        progress=GroupProgress(label=group.label, study=study.name, place="", mode="quiet",
                               logger=LOGGER, clock=PlanClock(total=1.0), epoch_cost={},
                               batches_per_epoch=4),
        logger=LOGGER)).train()


def test_a_resuming_process_has_claimed_before_it_downloads_the_checkpoint(
        tmp_path: Path) -> None:
    """While process A downloads last.pt, process B looks at the store: it must see the run
    as taken ("elsewhere"), not as interrupted (which would make B resume it too: before the
    fix, A claimed only after its download and both trained)."""
    plan = _plan()
    store, group = _interrupted_teacher(plan, tmp_path)
    teacher = group.runs[0]
    seen: list[str] = []

    class Watched(StoreWeights):
        def resume_state(self, action: Action) -> dict[str, Any]:
            seen.append(decide_action(teacher, store.find_runs([teacher.id])[teacher.id],
                                      force=False).kind)
            return super().resume_state(action)

    outcomes = _train(plan, group, store, Watched(store, store, tmp_path), "a:1:x", tmp_path)
    assert seen == ["elsewhere"]
    assert [o.status for o in outcomes] == ["finished"]


def test_a_process_that_loses_a_resumed_run_writes_nothing_on_it(tmp_path: Path) -> None:
    """A and B reopen the same interrupted run; B's claim lands between A's claim and A's
    check (forced in the store's set_tags). A steps back before its precision, compile and
    teacher-cache tags reach the run, and never downloads the checkpoint."""
    plan = _plan()
    store, group = _interrupted_teacher(plan, tmp_path)
    mlflow_id = group.actions[0].stored.mlflow_id  # type: ignore[union-attr]
    real_set_tags = store.set_tags
    downloads: list[str] = []

    def rival_claims_right_after(run_id: str, tags: Any) -> None:
        real_set_tags(run_id, tags)
        if tags.get(schema.TAG_LEASE_OWNER) == "a:1:x":  # A's claim: B claims now, later
            real_set_tags(run_id, claim_tags("b:2:y", now_ms() + 1))

    class Counting(StoreWeights):
        def resume_state(self, action: Action) -> dict[str, Any]:
            downloads.append(action.run.id)
            return super().resume_state(action)

    store.set_tags = rival_claims_right_after  # type: ignore[method-assign]
    with pytest.raises(ClaimLost, match="b:2:y"):
        _train(plan, group, store, Counting(store, store, tmp_path), "a:1:x", tmp_path)
    tags = store.runs[mlflow_id].tags
    assert tags[schema.TAG_LEASE_OWNER] == "b:2:y"
    assert schema.TAG_PRECISION not in tags and schema.TAG_SPEED_CHOICE not in tags
    assert downloads == []
