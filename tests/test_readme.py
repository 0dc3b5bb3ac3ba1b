"""The README's spec example compiles (as if it lived in specs/, where its include resolves)."""

from __future__ import annotations

import re
from pathlib import Path

from kdspec.dsl import compile_text

ROOT = Path(__file__).resolve().parents[1]


def test_readme_spec_example_compiles_to_the_paper_cifar10_plan() -> None:
    text = (ROOT / "README.md").read_text()
    found = re.search(r"```kdspec\n(.*?)```", text, re.S)
    assert found is not None, "README has no kdspec example"
    plan = compile_text(found.group(1), str(ROOT / "specs" / "readme_example.kdspec"))
    roles = [r.role for r in plan.runs]
    assert (roles.count("teacher"), roles.count("student"), roles.count("distilled")) == (5, 5, 45)
