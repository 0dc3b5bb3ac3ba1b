"""The report's figures: Fig. 4 shows what the fairness claims test (the excess DPD/EOD over the
no-group-effect reference), not the raw gap, which also falls when students only get more
accurate."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from kdspec.analysis.figures import fairness_series, figure_fairness
from kdspec.analysis.records import GroupKey
from kdspec.analysis.study_analysis import StudyAnalysis, analyse_study
from tests.analysis.conftest import small_study_plan
from tests.analysis.synthetic import (
    PlantedEffects,
    records_from_predictions,
    synthetic_predictions,
)


@pytest.fixture(scope="module")
def fair_analysis() -> StudyAnalysis:
    plan = small_study_plan()
    study = plan.studies[0]
    predictions = synthetic_predictions(plan, study, n_test=1500,
                                        effects=PlantedEffects(hurt_class=3))
    return analyse_study(records_from_predictions(plan, study, predictions))


def test_figure_4_plots_the_excess_the_claims_test(fair_analysis: StudyAnalysis,
                                                   tmp_path: Path) -> None:
    fairness = fair_analysis.fairness
    assert fairness is not None
    temperatures = fair_analysis.records.study.temperatures
    for metric in fairness.metrics:
        series = fairness_series(fair_analysis, "color", metric)
        assert series.excess
        expected = [100 * fairness.summary("color", GroupKey("distilled", t)).excess(metric)
                    .excess_mean for t in temperatures]
        raw = [100 * fairness.summary("color", GroupKey("distilled", t)).mean(metric)
               for t in temperatures]
        np.testing.assert_allclose(series.ds_means, expected)
        assert not np.allclose(series.ds_means, raw)  # the reference is not 0 here
        nds = fairness.summary("color", GroupKey("student")).excess(metric)
        assert series.nds == pytest.approx((100 * nds.excess_mean, 100 * nds.excess_sd))
    figure = figure_fairness(fair_analysis, tmp_path / "fig4.png")
    assert figure is not None and figure.path.exists()
    assert figure.caption.startswith("Fig. 4. Excess demographic parity difference")
    assert "This is what the fairness claims test" in figure.caption
