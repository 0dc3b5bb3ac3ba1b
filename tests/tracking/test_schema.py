"""The one rule both `kdspec run` and `kdspec report` use to pick the MLflow store."""

from __future__ import annotations

import pytest

from kdspec.plan import TrackingSpec
from kdspec.tracking.schema import DEFAULT_TRACKING_URI, resolve_tracking_uri
from tests.factories import tiny_plan


def test_uri_precedence_cli_then_env_then_spec_then_default(
        monkeypatch: pytest.MonkeyPatch) -> None:
    study = tiny_plan().studies[0]
    spec_study = study.model_copy(update={"tracking": TrackingSpec(experiment="e",
                                                                   tracking_uri="sqlite:///s.db")})
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert DEFAULT_TRACKING_URI == "sqlite:///mlruns.db"
    assert resolve_tracking_uri(None, study) == DEFAULT_TRACKING_URI
    assert resolve_tracking_uri(None, spec_study) == "sqlite:///s.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:1")
    assert resolve_tracking_uri(None, study) == "http://127.0.0.1:1"
    assert resolve_tracking_uri(None, spec_study) == "http://127.0.0.1:1"
    assert resolve_tracking_uri("sqlite:///cli.db", spec_study) == "sqlite:///cli.db"
