"""report.html opened in headless Chromium: every figure decodes and the tables are there."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import pytest

from tests.chromium import dump_dom, needs_chromium

#: Runs after load and records, on <body>, each image's decoded width and the table count.
PROBE = (
    "<script>window.addEventListener('load', () => {"
    "document.body.setAttribute('data-kdspec-probe', JSON.stringify({"
    "images: [...document.images].map(i => [i.alt, i.complete, i.naturalWidth]),"
    "tables: document.querySelectorAll('table').length,"
    "headers: [...document.querySelectorAll('th')].map(t => t.textContent)}));});</script>"
)

pytestmark = [pytest.mark.integration, needs_chromium]


def _dump_dom(page: Path, profile: Path) -> str:
    return dump_dom(page.as_uri(), profile)


def test_every_figure_loads_and_the_tables_are_there(
        complete_report: tuple[Path, int, str, str], tmp_path: Path) -> None:
    out = complete_report[0]
    source = (out / "report.html").read_text()
    assert "<script" not in source  # the report itself carries no script; the probe is ours
    page = tmp_path / "probe.html"
    page.write_text(source.replace("</body>", PROBE + "</body>"))
    dom = _dump_dom(page, tmp_path / "profile")
    found = re.search(r'data-kdspec-probe="([^"]*)"', dom)
    assert found, "the probe did not run"
    probe = json.loads(html.unescape(found.group(1)))
    figures = sorted(p.name for p in out.glob("fig*.png"))
    assert sorted(alt for alt, _, _ in probe["images"]) == figures and len(figures) == 4
    assert all(complete and width > 0 for _, complete, width in probe["images"])
    assert probe["tables"] == source.count("<table>") >= 6
    assert {"#SC (NDS vs DS)", "#TC (teacher vs DS)", "DPD % (mean +- sd)"} <= set(
        probe["headers"])
