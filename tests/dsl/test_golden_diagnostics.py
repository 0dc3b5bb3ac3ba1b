"""Golden tests: each ``golden/NAME.kdspec`` must fail with exactly the text in ``NAME.txt``.

To refresh the expected texts after a deliberate change of wording, run
``KDSPEC_UPDATE_GOLDEN=1 .venv/bin/pytest tests/dsl/test_golden_diagnostics.py`` and review the
diff before committing.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kdspec.dsl import load_plan
from kdspec.dsl.diagnostics import render_spec_error
from kdspec.errors import SpecError

GOLDEN = Path(__file__).parent / "golden"
CASES = sorted(p.stem for p in GOLDEN.glob("*.kdspec"))


@pytest.mark.parametrize("case", CASES)
def test_rendered_diagnostics_match_golden_text(case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(GOLDEN)  # paths in the messages are relative: stable on every machine
    with pytest.raises(SpecError) as caught:
        load_plan(f"{case}.kdspec")
    rendered = render_spec_error(caught.value)
    expected_file = GOLDEN / f"{case}.txt"
    if os.environ.get("KDSPEC_UPDATE_GOLDEN") == "1":
        expected_file.write_text(rendered)
    assert rendered == expected_file.read_text()


def test_every_golden_source_has_an_expected_text() -> None:
    assert CASES, "no golden cases found"
    missing = [c for c in CASES if not (GOLDEN / f"{c}.txt").exists()]
    assert missing == []
