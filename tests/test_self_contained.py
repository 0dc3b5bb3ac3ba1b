"""Docs, code comments and messages stand alone: nothing in what a user's clone holds may point
at things it lacks (the project's internal notes, a folder beside the repository, an issue
tracker's numbers). A fact taken from such a note is written out with its public source (the
paper, or "measured on an H200 GPU with torch 2.11" for a measurement)."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCANNED = ("README.md", "Makefile", "docs", "specs", "kdspec", "bench", "examples")
SUFFIXES = {".md", ".py", ".kdspec", ".lark", ".txt", ".toml", ".cfg", ".sh", ""}
#: What a clone lacks: the internal brief and style notes, the folder beside the repository,
#: an issue tracker's numbers.
OUTSIDE = re.compile(r"\bBRIEF\b|\bSTYLE\.md\b|\.\./shared\b|\b[Ii]ssues? ?#?\d+\b|\b[Ii]ssue-\d+\b")


def _files() -> list[Path]:
    out = []
    for name in SCANNED:
        path = REPO / name
        candidates = [path] if path.is_file() else sorted(path.rglob("*"))
        out += [p for p in candidates if p.is_file() and p.suffix in SUFFIXES
                and "__pycache__" not in p.parts]
    return out


def _references(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8", errors="replace")
    return [f"{path.relative_to(REPO)}:{text.count(chr(10), 0, m.start()) + 1}: {m.group(0)}"
            for m in OUTSIDE.finditer(text)]


def test_nothing_refers_to_what_a_clone_lacks() -> None:
    files = _files()
    assert len(files) > 100  # the scan sees the repository
    found = [ref for path in files for ref in _references(path)]
    assert found == []


def test_the_pattern_catches_each_kind_of_reference() -> None:
    for text in ("as BRIEF section 7 expected", "see ../shared/gpu/README.md", "issue 23",
                 "the issue-23 table", "Issues #4", "per STYLE.md"):
        assert OUTSIDE.search(text), text
    for text in ("a brief note", "the issue is", "shared/ folder", "tissue 3"):
        assert not OUTSIDE.search(text), text
