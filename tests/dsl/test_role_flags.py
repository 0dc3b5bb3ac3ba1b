"""A role block's `partial` and `accept_chance`: where they apply they reach the plan (and no
run id), where they do not they are an error at the key."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from kdspec.dsl import compile_text
from kdspec.errors import SpecError
from kdspec.runtime.models import build_model

SPEC = """
recipe r {{ epochs = 1  batch_size = 64  lr = 0.05 }}
study s {{
  dataset digits {{ }}
  teacher lenet5 {{ {teacher} }}
  student lenet5 {{ recipe = r {student} }}
  distill {{ temperatures = [2]  loss = 0.2 * hard + 0.8 * soft }}
  seeds = 2
}}
"""


def _compile(tmp_path: Path, teacher: str, student: str = "") -> object:
    if not (tmp_path / "t.pt").exists():  # one file: its sha256 is part of the teacher's id
        torch.save(build_model("lenet5", in_channels=1, image_size=8,
                               num_classes=10).state_dict(), tmp_path / "t.pt")
    return compile_text(SPEC.format(teacher=teacher, student=student), str(tmp_path / "s.kdspec"))


def test_the_flags_reach_the_plan_and_no_run_id(tmp_path: Path) -> None:
    plain = _compile(tmp_path, 'checkpoint = "t.pt"')
    flagged = _compile(tmp_path, 'checkpoint = "t.pt"  partial = true  accept_chance = true')
    [study] = flagged.studies  # type: ignore[attr-defined]
    assert study.teacher.accept_chance and study.teacher.init.partial
    teacher = flagged.runs_of(study, "teacher")[0]  # type: ignore[attr-defined]
    assert teacher.init.partial
    # partial changes what the run loads, so it enters the teacher's id; accept_chance does not.
    ids = [r.id for r in plain.runs]  # type: ignore[attr-defined]
    assert teacher.id not in ids
    accepted = _compile(tmp_path, 'checkpoint = "t.pt"  accept_chance = true')
    assert [r.id for r in accepted.runs] == ids  # type: ignore[attr-defined]


@pytest.mark.parametrize(("teacher", "student", "message"), [
    ("recipe = r  partial = true", "", "'partial' loads part of a checkpoint"),
    ("pretrained = DEFAULT  partial = true", "", "'partial' loads part of a checkpoint"),
    ("recipe = r", "accept_chance = true", "'accept_chance' is for a teacher"),
    ('checkpoint = "t.pt"  partial = yes', "", "'partial' must be true or false"),
])
def test_where_they_do_not_apply_they_are_an_error_at_the_key(
        tmp_path: Path, teacher: str, student: str, message: str) -> None:
    with pytest.raises(SpecError) as err:
        _compile(tmp_path, teacher, student)
    assert any(message in d.message for d in err.value.diagnostics), err.value.diagnostics
