"""Runs that learned nothing do not pass silently: a teacher at chance stops its study with the
numbers (its students are skipped), any other run at chance or whose loss never fell is flagged
in its tags, the run table and ``kdspec status``. The chance rule is checked by hand."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import pytest

from kdspec.commands.run_tables import summary_table
from kdspec.commands.status import render, study_status
from kdspec.plan import Plan
from kdspec.runtime.executor import Executor
from kdspec.runtime.run_flags import ChanceCheck, chance_check, flag_tags, loss_flag
from kdspec.runtime.run_options import RunOptions
from kdspec.tracking import schema
from tests.factories import dataset_spec, tiny_plan, tiny_recipe
from tests.runtime.memory_store import MemoryStore

LOGGER = logging.getLogger("kdspec.test")


def test_chance_is_the_largest_class_share_and_its_noise_by_hand() -> None:
    # 4 classes, 100 test images, 40 in the largest: guessing it scores 0.40.
    confusion = np.diag([10, 20, 30, 40])
    confusion[3, 3], confusion[3, 0] = 30, 10  # 90 right of 100
    check = chance_check(confusion)
    assert (check.accuracy, check.chance, check.n, check.classes) == (0.9, 0.4, 100, 4)
    noise = 3 * math.sqrt(0.4 * 0.6 / 100)  # 0.147, above a tenth of the range (0.06)
    assert check.bound == pytest.approx(0.4 + noise)
    assert not check.at_chance
    # Fashion-MNIST at 12.6 % on 2,000 balanced images: 5 standard errors above 10 %, but not
    # a tenth of the way to perfect (19 %): at chance.
    fashion = ChanceCheck(accuracy=0.126, chance=0.1, n=2000, classes=10)
    assert fashion.bound == pytest.approx(0.19) and fashion.at_chance
    assert "12.6 % on 10 classes" in fashion.describe()
    assert "at chance below 19.0 %" in fashion.describe()


def test_a_loss_that_never_fell_is_flagged() -> None:
    assert loss_flag((1, 2.3), (6, 1.1)) is None
    assert loss_flag((1, 2.3), (1, 2.3)) is None  # one epoch: nothing to compare
    flag = loss_flag((1, 2.31), (6, 15.9))
    assert flag == "training loss did not fall: 2.31 in epoch 1, 15.9 in epoch 6"
    tags = flag_tags(chance=ChanceCheck(0.25, 0.25, 400, 4), loss=flag)
    assert set(tags) == {schema.TAG_FLAG_AT_CHANCE, schema.TAG_FLAG_LOSS}
    assert flag_tags(chance=ChanceCheck(0.9, 0.25, 400, 4), loss=None) == {}


def _plan(teacher_lr: float, student_lr: float, teacher_arch: str = "lenet5") -> Plan:
    """Digits, one seed, one T; a rate of 1e-9 leaves a model where its seed put it."""
    return tiny_plan(dataset=dataset_spec("digits", train_subset=256, test_subset=96),
                     teacher_arch=teacher_arch, student_arch="lenet5", seeds=(0,),
                     temperatures=(2.0,),
                     teacher_recipe=tiny_recipe(epochs=2, batch_size=64, lr=teacher_lr),
                     student_recipe=tiny_recipe(epochs=2, batch_size=64, lr=student_lr),
                     accept_chance=False)


def _run(plan: Plan, store: MemoryStore, tmp_path: Path):  # type: ignore[no-untyped-def]
    options = RunOptions(tracking_uri=store.uri, quiet=True, settle_seconds=0.0,
                         poll_seconds=0.01, log_dir=tmp_path / "logs")
    executor = Executor(plan, options, LOGGER, open_store=lambda uri, read_only=False: store)
    return executor.execute(executor.prepare(executor.my_runs()), spec_text=None)


def test_a_teacher_at_chance_stops_its_study_with_the_numbers(tmp_path: Path) -> None:
    """A teacher that did not learn (a rate of 1e-9) fails with its accuracy and the chance
    bound, its students are skipped, the run table says why; nothing of it reads FINISHED."""
    plan = _plan(teacher_lr=1e-9, student_lr=0.05)
    store = MemoryStore()
    outcomes = {o.run.id: o for o in _run(plan, store, tmp_path)}
    teacher = plan.runs_of(plan.studies[0], "teacher")[0]
    assert outcomes[teacher.id].status == "failed"
    reason = outcomes[teacher.id].reason
    assert reason.startswith("teacher at chance: test accuracy ") and "accept_chance" in reason
    [stored] = store.nested(teacher.id)
    assert stored.status == "FAILED" and stored.tags[schema.TAG_FAILURE] == reason
    assert schema.ARTIFACT_FINAL_CHECKPOINT not in stored.artifacts
    [ds] = plan.runs_of(plan.studies[0], "distilled")
    assert outcomes[ds.id].status == "skipped" and not store.nested(ds.id)
    assert "teacher at chance" in summary_table(list(outcomes.values()))


def test_a_student_at_chance_finishes_flagged_everywhere_it_is_shown(tmp_path: Path) -> None:
    # A ResNet-20 teacher learns digits in two epochs (57 % here, the bound 25 %).
    plan = _plan(teacher_lr=0.05, student_lr=1e-9, teacher_arch="resnet20")
    store = MemoryStore()
    outcomes = {o.run.id: o for o in _run(plan, store, tmp_path)}
    student = plan.runs_of(plan.studies[0], "student")[0]
    assert outcomes[student.id].status == "finished"
    assert outcomes[student.id].flags and outcomes[student.id].flags[0].startswith("at chance")
    [stored] = store.nested(student.id)
    assert stored.status == "FINISHED"
    assert stored.tags[schema.TAG_FLAG_AT_CHANCE].startswith("at chance: ")
    table = summary_table(list(outcomes.values()))
    assert "flagged (at chance" in table
    status = study_status(plan, plan.studies[0], store, timeout_s=600)  # type: ignore[arg-type]
    text = render(status)
    assert "flagged" in text and f"finished, flagged: student lenet5 seed 0 ({student.id})" in text
    # Reused later, the flag comes back from the store.
    again = {o.run.id: o for o in _run(plan, store, tmp_path)}
    assert again[student.id].status == "reused" and again[student.id].flags
