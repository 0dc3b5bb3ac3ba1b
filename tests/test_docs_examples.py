"""Every ```kdspec block of docs/language.md compiles; every ```kdspec fails block fails with
exactly the ```text block that follows it.

After a deliberate change of wording, ``KDSPEC_UPDATE_DOCS=1 .venv/bin/pytest
tests/test_docs_examples.py`` rewrites those text blocks; review the diff before committing.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from kdspec.dsl import compile_text
from kdspec.dsl.diagnostics import render_spec_error
from kdspec.errors import SpecError

DOCS = Path(__file__).parents[1] / "docs"
LANGUAGE = DOCS / "language.md"
FENCE = re.compile(r"^```([a-z]*)( fails)?\n(.*?)^```$", re.S | re.M)


@dataclass(frozen=True)
class Example:
    line: int
    source: str
    fails: bool
    expected: str | None  # the text block after a failing example
    expected_at: tuple[int, int] | None  # its character range in the document


def examples(document: str) -> list[Example]:
    blocks = list(FENCE.finditer(document))
    found: list[Example] = []
    for i, block in enumerate(blocks):
        if block.group(1) != "kdspec":
            continue
        line = document.count("\n", 0, block.start()) + 1
        fails = block.group(2) is not None
        expected = expected_at = None
        if fails:
            after = blocks[i + 1] if i + 1 < len(blocks) else None
            assert after is not None and after.group(1) == "text", \
                f"line {line}: a failing example must be followed by a ```text block"
            expected, expected_at = after.group(3), after.span(3)
        found.append(Example(line, block.group(3), fails, expected, expected_at))
    return found


EXAMPLES = examples(LANGUAGE.read_text())


def test_the_reference_has_examples_of_both_kinds() -> None:
    assert sum(not e.fails for e in EXAMPLES) >= 8
    assert sum(e.fails for e in EXAMPLES) >= 3


@pytest.mark.parametrize("example", [e for e in EXAMPLES if not e.fails],
                         ids=lambda e: f"line{e.line}")
def test_example_compiles(example: Example, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(DOCS)  # includes in the examples are relative to docs/
    plan = compile_text(example.source, "example.kdspec")
    assert plan.studies or "recipe" in example.source


@pytest.mark.parametrize("example", [e for e in EXAMPLES if e.fails],
                         ids=lambda e: f"line{e.line}")
def test_failing_example_shows_the_documented_message(example: Example,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(DOCS)
    with pytest.raises(SpecError) as caught:
        compile_text(example.source, "example.kdspec")
    rendered = render_spec_error(caught.value)
    if os.environ.get("KDSPEC_UPDATE_DOCS") == "1":
        document = LANGUAGE.read_text()
        fresh = next(e for e in examples(document) if e.source == example.source)
        assert fresh.expected_at is not None
        start, end = fresh.expected_at
        LANGUAGE.write_text(document[:start] + rendered + document[end:])
        return
    assert rendered == example.expected
