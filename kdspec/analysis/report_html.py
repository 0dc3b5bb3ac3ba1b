"""Render a :class:`ReportDocument` as one self-contained HTML file.

Figures are embedded as base64 PNG data URIs and tables are HTML tables, so the file can be
mailed or opened offline with nothing beside it.
"""

from __future__ import annotations

import base64
from html import escape

from kdspec.analysis.figures import FigureFile
from kdspec.analysis.report_model import ReportDocument, Section, Table

STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em;
       color: #222; line-height: 1.45; }
h1 { border-bottom: 2px solid #444; padding-bottom: .2em; }
h2 { margin-top: 2em; border-bottom: 1px solid #bbb; }
.finding { background: #f3f6fa; border-left: 4px solid #3b6ea5; padding: .6em .9em; }
table { border-collapse: collapse; margin: 1em 0; font-size: .9em; }
th, td { border: 1px solid #ccc; padding: .25em .6em; text-align: left; }
th { background: #eee; }
caption { caption-side: bottom; font-style: italic; font-size: .85em; text-align: left;
          padding-top: .3em; }
figure { margin: 1.5em 0; }
figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { font-style: italic; font-size: .9em; }
.status { font-weight: bold; padding: .5em .9em; border-left: 4px solid #3b8a4a;
          background: #eef7ef; }
.status.incomplete { border-left-color: #b35900; background: #fff3e0; }
"""


def table_html(table: Table) -> str:
    """An HTML table with its caption; every cell escaped."""
    head = "".join(f"<th>{escape(h)}</th>" for h in table.header)
    body = "".join(
        "<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>" for row in table.rows
    ) or f'<tr><td colspan="{len(table.header)}">(none)</td></tr>'
    caption = f"<caption>{escape(table.caption)}</caption>" if table.caption else ""
    return f"<table>{caption}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def figure_html(figure: FigureFile) -> str:
    """A figure embedded as a base64 PNG data URI, with its caption."""
    data = base64.b64encode(figure.path.read_bytes()).decode("ascii")
    return (f'<figure><img alt="{escape(figure.name)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{escape(figure.caption)}</figcaption></figure>")


def section_html(section: Section) -> str:
    """One section: heading, finding, paragraphs, bullets, tables, figures."""
    parts = [f"<section><h2>{escape(section.title)}</h2>"]
    if section.finding:
        parts.append(f'<p class="finding"><strong>Main finding.</strong> '
                     f"{escape(section.finding)}</p>")
    parts += [f"<p>{escape(p)}</p>" for p in section.paragraphs]
    if section.bullets:
        parts.append("<ul>" + "".join(f"<li>{escape(b)}</li>" for b in section.bullets)
                     + "</ul>")
    parts += [table_html(t) for t in section.tables]
    parts += [figure_html(f) for f in section.figures]
    parts.append("</section>")
    return "\n".join(parts)


def render_html(document: ReportDocument) -> str:
    """The whole report as one HTML page."""
    body = "\n".join(section_html(s) for s in document.sections)
    status = (f'<p class="status{" incomplete" if document.incomplete else ""}" role="status">'
              f"{escape(document.status)}</p>\n" if document.status else "")
    if document.notices:
        status += (f'<p class="status incomplete" role="note">{escape(document.notices[0])}'
                   "</p>\n")
        if len(document.notices) > 1:
            status += ("<ul>" + "".join(f"<li>{escape(line)}</li>"
                                        for line in document.notices[1:]) + "</ul>\n")
    title = escape(("Incomplete: " if document.incomplete else "") + document.title)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>{title}</title><style>{STYLE}</style></head>"
            f"<body>{status}<h1>{escape(document.title)}</h1>\n{body}\n</body></html>\n")
