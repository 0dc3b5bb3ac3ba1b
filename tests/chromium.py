"""Headless Chromium for the tests that look at pages as a browser renders them (the report's
HTML, the MLflow UI): the page's DOM after its scripts ran."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"

#: Skips a test module where Chromium is missing.
needs_chromium = pytest.mark.skipif(
    not Path(CHROMIUM).exists(),
    reason="chromium is not installed (apt-get install chromium, or `make install` as root)")


def dump_dom(url: str, profile: Path, *, budget_ms: int = 5000, timeout_s: float = 60,
             window: str | None = None, compositor: bool = True) -> str:
    """``url`` rendered headless (a fresh ``profile`` folder; virtual time waits for pending
    fetches up to ``budget_ms``); returns the serialised DOM."""
    command = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
        "--no-first-run", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", f"--user-data-dir={profile}",
        f"--virtual-time-budget={budget_ms}", "--dump-dom", url,
    ]
    if compositor:  # images decoded before the DOM is dumped
        command.insert(-3, "--run-all-compositor-stages-before-draw")
    if window is not None:
        command.insert(-2, f"--window-size={window}")
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s,
                          check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout
