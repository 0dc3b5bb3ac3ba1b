"""Render a :class:`ReportDocument` as Markdown (figures linked as PNG files beside it)."""

from __future__ import annotations

from kdspec.analysis.report_model import ReportDocument, Section, Table


def _escape(cell: str) -> str:
    return cell.replace("|", "\\|").replace("\n", " ")


def table_markdown(table: Table) -> list[str]:
    """A pipe table, with its caption in italics underneath."""
    lines = ["| " + " | ".join(_escape(h) for h in table.header) + " |",
             "|" + "|".join("---" for _ in table.header) + "|"]
    lines += ["| " + " | ".join(_escape(c) for c in row) + " |" for row in table.rows]
    if not table.rows:
        lines.append("| " + " | ".join(["(none)"] + [""] * (len(table.header) - 1)) + " |")
    if table.caption:
        lines += ["", f"*{table.caption}*"]
    return lines


def section_markdown(section: Section) -> list[str]:
    """One section: heading, finding, paragraphs, bullets, tables, figures."""
    lines = [f"## {section.title}", ""]
    if section.finding:
        lines += [f"**Main finding.** {section.finding}", ""]
    for paragraph in section.paragraphs:
        lines += [paragraph, ""]
    if section.bullets:
        lines += [f"- {b}" for b in section.bullets] + [""]
    for table in section.tables:
        lines += table_markdown(table) + [""]
    for figure in section.figures:
        lines += [f"![{figure.name}]({figure.name})", "", f"*{figure.caption}*", ""]
    return lines


def render_markdown(document: ReportDocument) -> str:
    """The whole report as Markdown text."""
    lines = ([f"**{document.status}**", ""] if document.status else [])
    if document.notices:
        lines += [f"**{document.notices[0]}**", ""]
        lines += [f"- {line}" for line in document.notices[1:]]
        lines += [""] if len(document.notices) > 1 else []
    lines += [f"# {document.title}", ""]
    for section in document.sections:
        lines += section_markdown(section)
    return "\n".join(lines).rstrip() + "\n"
