"""A tiny study that declares individual fairness, trained by ``kdspec run`` and reported by
``kdspec report``: every run stores its outputs, the report scores them, and a report under
another declaration lists the runs instead of scoring them."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from mlflow import MlflowClient

from kdspec.cli import main
from kdspec.tracking import schema
from tests.runtime.run_helpers import fresh_store, nested_runs

pytestmark = pytest.mark.integration

SPEC = """
recipe r { epochs = 1  batch_size = 128  optimizer = adam  lr = 0.003  weight_decay = 0 }
study tiny_individual {
  dataset digits { train_subset = 640 }
  teacher lenet5 { recipe = r }
  student lenet5 { recipe = r }
  distill { temperatures = [1, 4, 8]  loss = 0.2 * hard + 0.8 * soft }
  seeds = 2
  individual_fairness { samples = 200  neighbours = 3 }
  analysis { comparisons = [] }
  tracking { experiment = "tiny-individual" }
}
"""


def test_runs_store_outputs_and_the_report_scores_them(blank_store: Path,
                                                       tmp_path: Path) -> None:
    spec = tmp_path / "tiny.kdspec"
    spec.write_text(SPEC)
    uri = fresh_store(blank_store, tmp_path / "store")
    assert main(["run", str(spec), "--tracking-uri", uri, "--quiet"]) == 0
    runs = nested_runs(uri)
    assert len(runs) == 10
    local = MlflowClient(uri).download_artifacts(runs[0].info.run_id,
                                                 schema.ARTIFACT_PREDICTIONS, str(tmp_path))
    with np.load(local) as npz:
        assert npz[f"{schema.PRED_INDIVIDUAL_PREFIX}probabilities"].shape == (200, 10)
        assert npz[f"{schema.PRED_INDIVIDUAL_PREFIX}pairs"].shape == (600, 2)

    out = tmp_path / "reports"
    assert main(["report", str(spec), "--tracking-uri", uri, "--out", str(out)]) == 0
    folder = out  # one study: its report is the folder itself
    with (folder / "individual_fairness.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 10
    assert all(float(r["individual_fairness"]) > 0 and r["pairs_used"] == "600" for r in rows)
    text = (folder / "report.md").read_text()
    assert "## Individual fairness" in text
    assert "each of 200 seeded test images with its 3 nearest" in text
    assert "Higher T makes the DS individually fairer" in text

    # Runs compare in the MLflow UI: I(f) on each run, per model on the study's parent run.
    client = MlflowClient(uri)
    for run in nested_runs(uri):
        metrics = client.get_run(run.info.run_id).data.metrics
        assert metrics["individual_fairness"] > 0 and 0 < metrics["mean_top_probability"] <= 1
    parent = [r for r in client.search_runs([runs[0].info.experiment_id])
              if r.data.tags.get(schema.TAG_KIND) == schema.KIND_PLAN]
    assert {"individual_fairness_nds", "individual_fairness_ds_T4"} <= set(
        parent[0].data.metrics)

    # The same store read under another declaration: listed, not scored.
    other = tmp_path / "other.kdspec"
    other.write_text(SPEC.replace("samples = 200", "samples = 100"))
    assert main(["report", str(other), "--tracking-uri", uri, "--out", str(out)]) == 0
    text = (folder / "report.md").read_text()
    assert text.count("its pairs were made under another declaration") == 10

    # What f is and whether pairs must share their class are choices of the analysis: the
    # same stored runs are scored again, no run is left out.
    within = tmp_path / "within.kdspec"
    within.write_text(SPEC.replace("neighbours = 3", "neighbours = 3  same_label = true  "
                                                     "output = confidence"))
    assert main(["report", str(within), "--tracking-uri", uri, "--out", str(out)]) == 0
    text = (folder / "report.md").read_text()
    assert "another declaration" not in text
    assert "kept only where both have the same true class" in text
