"""A plan JSON is untrusted input: checked as strictly as a compiled spec, ids against content,
names as safe path components, and never a reason to read another file."""

from __future__ import annotations

import argparse
import builtins
import json
from pathlib import Path
from typing import Any

import pytest

from kdspec.cli import main
from kdspec.commands.run import load_spec
from kdspec.dsl import compile_text
from tests.dsl.spec_texts import CIFAR_STUDY

DIGITS_SPEC = """
recipe r { epochs = 1  batch_size = 64  lr = 0.05 }
study digits_study {
  dataset digits { }
  teacher resnet20 { recipe = r }
  student lenet5 { recipe = r }
  distill { temperatures = [2, 4]  loss = 0.2 * hard + 0.8 * soft }
  seeds = 2
}
"""


def plan_dict() -> dict[str, Any]:
    return json.loads(compile_text(DIGITS_SPEC, "digits.kdspec").to_json())


def write(tmp_path: Path, data: dict[str, Any]) -> Path:
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(data))
    return path


def refused(tmp_path: Path, data: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> str:
    """`kdspec run plan.json --dry-run` of a bad plan: exit 1, one message, nothing trained."""
    assert main(["run", str(write(tmp_path, data)), "--dry-run",
                 "--tracking-uri", f"sqlite:///{tmp_path / 'store.db'}"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and "ValidationError" not in err
    return err


def _args(path: Path) -> argparse.Namespace:
    """What `kdspec run PATH` parses to, as far as reading the plan goes."""
    return argparse.Namespace(spec=str(path), overrides=[], studies=[])


def test_a_compiled_plan_carries_its_spec_text_and_round_trips(tmp_path: Path) -> None:
    data = plan_dict()
    assert data["spec_text"] == DIGITS_SPEC
    plan, text = load_spec(_args(write(tmp_path, data)))
    assert text == DIGITS_SPEC and plan.source == "digits.kdspec"


def test_the_source_field_is_never_opened(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = tmp_path / "shadow"
    secret.write_text("root:$6$secret\n")
    data = plan_dict() | {"source": str(secret), "spec_text": None}
    path = write(tmp_path, data)
    opened: list[str] = []
    real_open = builtins.open

    def watching_open(file: Any, *args: Any, **kwargs: Any) -> Any:
        opened.append(str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", watching_open)
    _, text = load_spec(_args(path))
    assert text is None and str(secret) not in opened


def test_a_run_edited_under_its_old_id_is_refused(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    data = plan_dict()
    teacher = next(r for r in data["runs"] if r["role"] == "teacher")
    teacher["recipe"]["epochs"] = 3
    err = refused(tmp_path, data, capsys)
    assert f"run {teacher['id']} of study digits_study is not what its id stands for" in err


def test_unsafe_study_names_are_refused(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    data = plan_dict()
    data["studies"][0]["name"] = "../../../x"
    err = refused(tmp_path, data, capsys)
    assert "studies.0.name: 'name' must be letters, digits, '_' and '-'" in err


@pytest.mark.parametrize(("edit", "message"), [
    (lambda d: d["studies"][0]["teacher"].update(arch="resnet99"),
     "studies[0].teacher.arch: unknown architecture 'resnet99'"),
    (lambda d: d["studies"][0]["dataset"].update(num_classes=7),
     "dataset digits: 10 class names for 7 classes"),
    (lambda d: d["studies"][0]["dataset"].update(image_size=4),
     "studies[0].dataset.image_size: digits images are always 8x8, found 4"),
    (lambda d: d["runs"][0].update(seed=-5), "runs.0.seed: 'seed' must be >= 0, found -5"),
    (lambda d: d["studies"][0].update(temperatures=[1e-320]),
     "studies.0.temperatures.0: 'temperatures' must be >= 0.01"),
])
def test_a_plan_json_is_checked_like_a_spec(edit: Any, message: str, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    data = plan_dict()
    edit(data)
    err = refused(tmp_path, data, capsys)
    assert message in err, err


def test_not_json_at_all_is_one_clear_line(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "plan.json"
    path.write_text("{not json")
    assert main(["plan", str(path)]) == 1
    assert "not valid JSON" in capsys.readouterr().err


def test_cifar_plan_round_trips_through_the_checks(tmp_path: Path) -> None:
    plan = compile_text(CIFAR_STUDY)
    assert main(["plan", str(write(tmp_path, json.loads(plan.to_json()))), "--json"]) == 0
