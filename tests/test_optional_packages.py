"""A study that needs an optional package (``transformers`` for text studies) that is not
installed stops at ``kdspec check``, ``plan`` and ``run --dry-run`` with the extra to install,
not when its first run starts. "Not installed" is made real in the process: a ``None`` in
``sys.modules`` is what Python's import system reads as a module that cannot be imported
(``importlib.util.find_spec`` returns None and ``import transformers`` raises ImportError)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from kdspec.catalogue.optional_packages import TRANSFORMERS, is_installed, missing_packages
from kdspec.cli import main
from kdspec.dsl import load_plan

REPO = Path(__file__).resolve().parents[1]
HATEXPLAIN = REPO / "specs" / "hatexplain.kdspec"
EXTRA = "pip install 'kdspec[text]'"


@pytest.fixture
def without_transformers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "transformers", None)
    with pytest.raises(ImportError):
        import transformers  # noqa: F401


@pytest.mark.usefixtures("without_transformers")
@pytest.mark.parametrize("command", [["check"], ["plan"], ["plan", "--json"],
                                     ["run", "--dry-run"]])
def test_a_text_study_without_transformers_stops_before_anything_runs(
        command: list[str], capsys: pytest.CaptureFixture[str], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # run --dry-run must not get as far as looking for data
    assert main([command[0], str(HATEXPLAIN), *command[1:]]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert ("study hatexplain_fairness (the hatexplain tokenizer, hf:bert-base-uncased, "
            "hf:distilbert-base-uncased) needs the Python package transformers, which is not "
            "installed here") in captured.err
    assert EXTRA in captured.err
    assert captured.err.count("\n") == 1  # one line: one mistake, one error
    assert not (tmp_path / "mlruns.db").exists() and not (tmp_path / ".kdspec").exists()


def test_the_lookup_does_not_import_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "transformers", raising=False)
    assert is_installed("transformers") is True  # the dev extras install it
    assert "transformers" not in sys.modules
    assert is_installed("kdspec_no_such_package") is False


def test_only_studies_that_need_the_package_ask_for_it(
        without_transformers: None) -> None:
    assert missing_packages(load_plan(REPO / "specs" / "quickstart.kdspec")) == []
    missing = missing_packages(load_plan(HATEXPLAIN))
    assert [m.package for m in missing] == [TRANSFORMERS]


def test_check_passes_where_the_package_is_installed(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(HATEXPLAIN)]) == 0
    assert "hatexplain_fairness" in capsys.readouterr().out


@pytest.mark.usefixtures("without_transformers")
def test_report_and_status_do_not_need_it(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    """They read the store only: a login node without the text extra can still report."""
    store = f"sqlite:///{tmp_path / 'absent.db'}"
    assert main(["status", str(HATEXPLAIN), "--tracking-uri", store]) == 0
    assert "75 not started" in capsys.readouterr().out
