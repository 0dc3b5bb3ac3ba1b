"""bench/bench_precision.py runs every variant and prints each against fp32 of the same step
(the table docs/speed.md quotes and the auto-precision thresholds rest on)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.bench_precision import VARIANTS, main


def test_every_variant_is_timed_against_fp32(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "rows.json"
    assert main(["--archs", "lenet5", "--rounds", "1", "--steps", "1", "--no-compile",
                 "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "CPU bf16 support:" in printed
    rows = json.loads(out.read_text())["rows"]
    eager = [v.name for v in VARIANTS if not v.compile]
    assert [(r["step"], r["variant"]) for r in rows] == (
        [("train", v) for v in eager] + [("distill", v) for v in eager])
    for row in rows:
        assert row["img_s"] > 0
        if row["variant"] == "fp32":
            assert row["ratio"] == 1.0  # the reference of its own step
