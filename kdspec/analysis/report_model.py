"""The report as data: a document of sections, each a finding, paragraphs, bullets, tables and
figures, which the markdown and HTML renderers both render."""

from __future__ import annotations

from dataclasses import dataclass, field

from kdspec.analysis.figures import FigureFile


@dataclass(frozen=True)
class Table:
    """A table: header, rows of text cells, and a caption printed under it."""

    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    caption: str = ""


@dataclass(frozen=True)
class Section:
    """One report section: its main finding, then text, bullets, tables and figures."""

    title: str
    finding: str | None = None
    paragraphs: tuple[str, ...] = ()
    bullets: tuple[str, ...] = ()
    tables: tuple[Table, ...] = ()
    figures: tuple[FigureFile, ...] = ()


@dataclass(frozen=True)
class ReportDocument:
    """The whole report: its status line (the first line of every rendering: whether the
    study is complete), a title and its sections in reading order."""

    title: str
    sections: tuple[Section, ...] = field(default_factory=tuple)
    status: str = ""
    #: Whether the status says the study is incomplete (rendered as a warning).
    incomplete: bool = False
    #: Lines shown right under the status line (flagged runs: a headline, then one per run).
    notices: tuple[str, ...] = ()
