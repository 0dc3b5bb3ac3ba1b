"""`kdspec report specs/quickstart.kdspec`: a two-study spec gets one report per study."""

from __future__ import annotations

from pathlib import Path

import pytest

from kdspec.cli import main
from kdspec.dsl import load_plan
from tests.analysis.mlflow_store import log_study, open_client
from tests.analysis.synthetic import PlantedEffects, synthetic_predictions

QUICKSTART = Path(__file__).parents[2] / "specs" / "quickstart.kdspec"


def test_each_study_of_the_quickstart_gets_its_own_report(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plan = load_plan(QUICKSTART)
    client, uri = open_client(tmp_path)
    for study in plan.studies:
        predictions = synthetic_predictions(plan, study, n_test=1000,
                                            effects=PlantedEffects(hurt_class=2))
        log_study(client, plan, study, tmp_path / "artifacts", predictions)
    out = tmp_path / "reports"
    assert main(["report", str(QUICKSTART), "--tracking-uri", uri, "--out", str(out)]) == 0
    err = capsys.readouterr().err
    names = [s.name for s in plan.studies]
    assert len(names) == 2
    for name in names:
        assert f"kdspec report: {name}: 18 of 18 runs" in err
        assert (out / name / "report.html").exists()
    fairness_study = next(s for s in plan.studies if s.fairness is not None)
    other = next(s for s in plan.studies if s.fairness is None)
    assert (out / fairness_study.name / "fig4_fairness.png").exists()
    assert not (out / other.name / "fig4_fairness.png").exists()
    # A study without fairness has no Fairness section (no empty finding).
    assert "## Fairness" not in (out / other.name / "report.md").read_text()
    text = (out / fairness_study.name / "report.md").read_text()
    attribute = fairness_study.fairness.sensitive[0]  # type: ignore[union-attr]
    assert f"Over '{attribute}'" in text
    assert "one-vs-rest per class, aggregated by mean over classes" in text
    for study in plan.studies:  # the spec's note opens each report: a demonstration
        report = (out / study.name / "report.md").read_text()
        assert f"About this study (the spec's note): {study.note}" in report
        assert "Pipeline demonstration" in report.split("## Runs")[0]
    assert f"Per-class one-vs-rest DPD_c / EOD_c (%) over '{attribute}'" in text
