"""A tiny text study end to end, offline: a HateXplain-layout release and tiny randomly
initialised BERT (teacher, from its saved weights) and DistilBERT (student) written here,
trained by ``kdspec run`` and reported by ``kdspec report``: #SC/#TC over the three classes,
DPD/EOD over two target communities, individual fairness over bags of tokens."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from mlflow import MlflowClient

from kdspec.cli import main
from kdspec.tracking import schema
from tests.runtime.run_helpers import fresh_store, nested_runs
from tests.text_fixtures import write_hatexplain, write_tiny_models

pytestmark = [pytest.mark.integration, pytest.mark.extended]
pytest.importorskip("transformers")

SPEC = """
recipe fine_tune { epochs = 8  batch_size = 16  optimizer = adamw  lr = 0.005
                   weight_decay = 0.01  schedule = constant }
study tiny_text {
  dataset hatexplain { root = "data"  tokenizer = "./models/tiny-bert"  max_length = 16
                       sensitive = [Women, Islam] }
  teacher hf:./models/tiny-bert { pretrained = DEFAULT  recipe = fine_tune }
  student hf:./models/tiny-distilbert { recipe = fine_tune }
  distill { temperatures = [1, 4, 8]  loss = 0.5 * hard + 0.5 * soft }
  seeds = 2
  fairness { multiclass = one_vs_rest }
  individual_fairness { distance = cosine  neighbours = 3 }
  runtime { teacher_cache = on }
  tracking { experiment = "tiny-text" }
}
"""


def test_a_text_study_trains_and_reports_offline(blank_store: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # nothing may be fetched
    write_hatexplain(tmp_path / "data", train=240)
    write_tiny_models(tmp_path / "models")
    spec = tmp_path / "tiny.kdspec"
    spec.write_text(SPEC)
    uri = fresh_store(blank_store, tmp_path / "store")
    cache = tmp_path / "cache"
    assert main(["run", str(spec), "--tracking-uri", uri, "--cache-dir", str(cache),
                 "--quiet"]) == 0
    runs = nested_runs(uri)
    assert len(runs) == 10 and all(r.info.status == "FINISHED" for r in runs)
    accuracy = {r.data.tags[schema.TAG_RUN_ID]: r.data.metrics[schema.METRIC_TEST_ACC]
                for r in runs}
    # The cue words make the labels learnable: every teacher beats the majority class (15 of
    # the 42 test posts, 0.36) by a margin. Teachers reach 0.64-1.0 here across learning
    # rates 0.004-0.006 (a run that gets two classes right stops near 2/3), so the bound does
    # not hang on one machine's rounding.
    majority = 0.5
    teachers = [r for r in runs if r.data.params.get("role") == "teacher"]
    assert all(accuracy[t.data.tags[schema.TAG_RUN_ID]] > majority for t in teachers)
    assert len(list((cache / "tokens").glob("*.npz"))) == 2  # tokenised once per split

    # A second `kdspec run` finds every run finished and trains nothing.
    assert main(["run", str(spec), "--tracking-uri", uri, "--cache-dir", str(cache),
                 "--quiet"]) == 0
    assert len(nested_runs(uri)) == 10

    out = tmp_path / "reports"
    assert main(["report", str(spec), "--tracking-uri", uri, "--out", str(out)]) == 0
    text = (out / "report.md").read_text()
    assert "hatespeech" in text and "#SC rises as T rises" in text
    assert "DPD over 'Women'" in text and "EOD over 'Islam'" in text
    assert "bag-of-tokens space" in text and "seeded test posts" in text
    with (out / "individual_fairness.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 10 and all(float(r["individual_fairness"]) >= 0 for r in rows)
    with (out / "significance.csv").open(newline="") as handle:
        classes = {row["class_name"] for row in csv.DictReader(handle)}
    assert classes == {"hatespeech", "normal", "offensive"}
    teacher_tags = MlflowClient(uri).get_run(teachers[0].info.run_id).data.tags
    assert teacher_tags["mlflow.runName"].startswith("tiny_text.teacher-hf:tiny-bert")
    assert teacher_tags[schema.TAG_WEIGHTS_SOURCE] == (
        f"huggingface:{tmp_path / 'models' / 'tiny-bert'}")
    distilled = [r for r in runs if r.data.params.get("role") == "distilled"]
    assert {r.data.tags[schema.TAG_TEACHER_CACHE] for r in distilled} == {"on"}
