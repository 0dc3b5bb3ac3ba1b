"""report.html opened in headless Chromium: every figure decodes and the tables are there."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
#: Runs after load and records, on <body>, each image's decoded width and the table count.
PROBE = (
    "<script>window.addEventListener('load', () => {"
    "document.body.setAttribute('data-kdspec-probe', JSON.stringify({"
    "images: [...document.images].map(i => [i.alt, i.complete, i.naturalWidth]),"
    "tables: document.querySelectorAll('table').length,"
    "headers: [...document.querySelectorAll('th')].map(t => t.textContent)}));});</script>"
)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="chromium is not installed "
                       "(apt-get install chromium, or `make install` as root)"),
]


def _dump_dom(page: Path, profile: Path) -> str:
    command = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
        "--no-first-run", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", f"--user-data-dir={profile}", "--run-all-compositor-stages-before-draw",
        "--virtual-time-budget=5000", "--dump-dom", page.as_uri(),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


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
