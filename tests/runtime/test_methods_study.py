"""A tiny methods study end to end, offline: ``vary { distill { method = [kd, dkd, at,
label_smoothing] } }`` on digits, trained by ``kdspec run`` (teachers and NDS trained once for
every variant, each seed's distilled runs of the four methods in one lockstep group) and
reported by ``kdspec report``; a second ``kdspec run`` trains nothing."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from kdspec.cli import main
from kdspec.tracking import schema
from tests.runtime.run_helpers import fresh_store, nested_runs

pytestmark = pytest.mark.integration

# Attention transfer does not use the temperature: the study has one (the compiler says so).
SPEC = """
recipe r { epochs = 1  batch_size = 64  optimizer = adam  lr = 0.003  weight_decay = 0 }
study methods {
  dataset digits { train_subset = 320  test_subset = 120 }
  teacher lenet5 { recipe = r  epochs = 4 }
  student lenet5 { recipe = r }
  distill { temperatures = [4]  loss = 0.2 * hard + 0.8 * soft  dkd { warmup = 2 } }
  seeds = 2
  vary { distill { method = [kd, dkd, at, label_smoothing] } }
  tracking { experiment = "tiny-methods" }
}
"""
METHODS = ("kd", "dkd", "at", "label_smoothing")


def test_a_methods_study_trains_its_teachers_once_and_reports(blank_store: Path,
                                                              tmp_path: Path) -> None:
    spec = tmp_path / "methods.kdspec"
    spec.write_text(SPEC)
    uri = fresh_store(blank_store, tmp_path / "store")
    assert main(["run", str(spec), "--tracking-uri", uri, "--quiet"]) == 0
    runs = nested_runs(uri)
    assert all(r.info.status == "FINISHED" for r in runs)
    roles = Counter(r.data.params["role"] for r in runs)
    # 2 teachers and 2 NDS shared by the 4 variants, 4 methods x 2 seeds distilled.
    assert roles == {"teacher": 2, "student": 2, "distilled": 8}
    assert len({r.data.tags[schema.TAG_RUN_ID] for r in runs}) == len(runs)
    distilled = [r for r in runs if r.data.params["role"] == "distilled"]
    assert Counter(r.data.params["method"] for r in distilled) == dict.fromkeys(METHODS, 2)
    for run in distilled:
        tags = run.data.tags
        method = run.data.params["method"]
        assert tags[schema.TAG_LOCKSTEP] == "4"  # one group per seed, one teacher forward
        assert tags[schema.TAG_STUDY] == f"methods-v{METHODS.index(method) + 1}"
        assert tags[schema.TAG_TEACHER_CACHE] == "off"
        assert tags[schema.TAG_TEACHER_CACHE_REASON] == "at needs the teacher's features"
        assert ("hard_weight" in run.data.params) == (method == "kd")
        if method == "label_smoothing":
            assert 0 < float(run.data.params[schema.PARAM_LABEL_SMOOTHING_EPSILON]) <= 1

    # A second `kdspec run` finds every run finished and trains nothing.
    assert main(["run", str(spec), "--tracking-uri", uri, "--quiet"]) == 0
    assert len(nested_runs(uri)) == len(runs)

    out = tmp_path / "reports"
    code = main(["report", str(spec), "--tracking-uri", uri, "--out", str(out), "--no-log"])
    assert code in (0, 1)  # 1: a study or the comparison could not be written (listed)
    for variant in range(1, len(METHODS) + 1):
        assert (out / f"methods-v{variant}" / "report.md").is_file()
