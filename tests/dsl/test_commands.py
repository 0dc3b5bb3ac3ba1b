"""``kdspec check`` and ``kdspec plan`` through the real CLI entry point."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from kdspec.cli import main
from kdspec.dsl import load_plan
from kdspec.plan import Plan

ROOT = Path(__file__).parents[2]
QUICKSTART = str(ROOT / "specs" / "quickstart.kdspec")
CIFAR10 = str(ROOT / "specs" / "cifar10.kdspec")
BROKEN = "study s {\n  dataset cifar11 { }\n  seeds = 0\n}\n"


@pytest.fixture
def broken_spec(tmp_path: Path) -> Path:
    path = tmp_path / "broken.kdspec"
    path.write_text(BROKEN)
    return path


def test_check_summarizes_each_file(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", QUICKSTART, CIFAR10]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [
        f"{QUICKSTART}: ok: 2 studies (fashion_class_bias, trifeature_fairness), 36 runs "
        "(6 teacher, 6 student, 24 distilled)",
        f"{CIFAR10}: ok: 1 study (cifar10_class_bias), 55 runs "
        "(5 teacher, 5 student, 45 distilled)",
    ]


def test_check_reports_every_error_of_every_file_and_nothing_on_stdout(
        broken_spec: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", QUICKSTART, str(broken_spec)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert f"{broken_spec}:2:11: error: unknown dataset 'cifar11'" in captured.err
    assert f"{broken_spec}:3:11: error: seed count must be between 1" in captured.err
    assert "= help: did you mean 'cifar10'?" in captured.err
    assert captured.err.endswith("errors found\n")


def test_check_of_a_missing_file_is_one_line_and_exit_1(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(tmp_path / "none.kdspec")]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("kdspec check: error: cannot read")


def test_plan_json_has_runs_with_the_documented_fields(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", CIFAR10, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    runs = data["runs"]
    assert len(runs) == 55
    for run in runs:
        assert {"id", "role", "arch", "seed", "temperature", "depends_on"} <= set(run)
    teachers = {r["seed"]: r["id"] for r in runs if r["role"] == "teacher"}
    distilled = [r for r in runs if r["role"] == "distilled"]
    assert len(distilled) == 45
    assert all(r["depends_on"] == [teachers[r["seed"]]] for r in distilled)
    assert all(r["temperature"] is None for r in runs if r["role"] != "distilled")
    assert Plan.model_validate(data) == load_plan(CIFAR10)


def test_plan_reads_its_own_json_back(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", QUICKSTART, "--json"]) == 0
    path = tmp_path / "plan.json"
    path.write_text(capsys.readouterr().out)
    assert main(["plan", str(path), "--json"]) == 0
    assert Plan.from_json(capsys.readouterr().out) == load_plan(QUICKSTART)


def test_plan_table_lists_runs_and_the_work(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", QUICKSTART]) == 0
    out = capsys.readouterr().out
    plan = load_plan(QUICKSTART)
    assert out.count("\nstudy ") + out.startswith("study ") == 2
    assert "role       arch      seed  T  id" in out
    for run in plan.runs:
        assert run.id in out
    # teachers 3 x 3 epochs, students (3 NDS + 12 DS) x 6 epochs; 4000 images in both studies:
    # 3*3*4000 + 15*6*4000 + 3*3*4000 + 15*6*4000 = 792,000
    assert "total: 36 runs, 792,000 training samples" in out


def test_spec_errors_exit_2_without_traceback_in_a_real_process(broken_spec: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "kdspec.cli", "check", str(broken_spec)],
                            capture_output=True, text=True, check=False, timeout=120)
    assert result.returncode == 2
    assert result.stdout == ""
    assert "unknown dataset 'cifar11'" in result.stderr
    assert "Traceback" not in result.stderr
