"""A validation split held out of the training images: seeded and disjoint, part of the run
id, evaluated every epoch (``val_acc``), and what a ``vary`` comparison chooses on."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from kdspec.analysis.accuracy import study_accuracy
from kdspec.analysis.records import GroupKey
from kdspec.analysis.variant_comparison import summary_table, uses_validation
from kdspec.cli import main
from kdspec.dsl import compile_text
from kdspec.runtime.data.split_rules import split_validation
from kdspec.tracking import schema
from tests.runtime.run_helpers import fresh_store, nested_runs

# Two epochs of LeNet-5 may leave a teacher at chance: what is tested is the split, so the
# teacher accepts it.
SPEC = """
recipe r {{ epochs = 2  batch_size = 64  lr = 0.05 }}
study held {{
  dataset digits {{ train_subset = 400  test_subset = 96 {validation} }}
  teacher lenet5 {{ recipe = r  accept_chance = true }}
  student lenet5 {{ recipe = r  lr = 0.04 }}
  distill {{ temperatures = [2, 4]  loss = 0.2 * hard + 0.8 * soft }}
  seeds = 2
}}
"""


def test_the_split_is_seeded_disjoint_and_keeps_the_training_order() -> None:
    ix = np.arange(100, 300)
    train, held = split_validation(ix, 0.1)
    assert held is not None and len(held) == 20 and len(train) == 180
    assert not set(train) & set(held) and set(train) | set(held) == set(ix)
    assert np.all(np.diff(train) > 0) and np.all(np.diff(held) > 0)
    again_train, again_held = split_validation(ix, 0.1)
    assert np.array_equal(held, again_held) and np.array_equal(train, again_train)
    assert split_validation(ix, None)[1] is None


def test_validation_is_part_of_the_run_id_and_checked(capsys: pytest.CaptureFixture[str],
                                                      tmp_path: Path) -> None:
    plain = compile_text(SPEC.format(validation=""))
    held = compile_text(SPEC.format(validation="validation = 0.1"))
    assert held.studies[0].dataset.validation == 0.1
    assert not set(plain.studies[0].run_ids) & set(held.studies[0].run_ids)
    spec = tmp_path / "bad.kdspec"
    spec.write_text(SPEC.format(validation="validation = 0.7"))
    assert main(["check", str(spec)]) == 2
    assert "validation is the share of the training images held out" in capsys.readouterr().err


@pytest.mark.integration
def test_runs_report_their_validation_accuracy_and_comparisons_choose_on_it(
        tmp_path: Path, blank_store: Path) -> None:
    spec = tmp_path / "held.kdspec"
    spec.write_text(SPEC.format(validation="validation = 0.25"))
    uri = fresh_store(blank_store, tmp_path)
    assert main(["run", str(spec), "--tracking-uri", uri, "--quiet", "--log-dir",
                 str(tmp_path / "logs")]) == 0
    runs = nested_runs(uri)
    assert runs and all(schema.METRIC_VAL_ACC in r.data.metrics for r in runs)
    log = "".join(p.read_text() for p in (tmp_path / "logs").glob("*.log"))
    assert "300 train / 100 validation / 96 test images" in log
    from kdspec.analysis.store_reader import read_study_records

    plan = compile_text(spec.read_text(), str(spec))
    records = read_study_records(plan, plan.studies[0], tracking_uri=uri)
    accuracy = study_accuracy(records)
    assert all(g.validation.size == g.n for g in accuracy.groups)


def test_a_comparison_with_validation_chooses_the_best_t_there_not_on_test() -> None:
    from kdspec.analysis.variant_comparison import Population, VariantComparison, VariantRow

    def population(mean: float) -> Population:
        return Population(mean, 0.01, 3)

    keys = {GroupKey("teacher"): 0.9, GroupKey("student"): 0.8,
            GroupKey("distilled", 2.0): 0.85, GroupKey("distilled", 4.0): 0.82}
    test = {k: population(v) for k, v in keys.items()}
    # On validation T = 4 is the better one; on test T = 2.
    validation = {**test, GroupKey("distilled", 2.0): population(0.80),
                  GroupKey("distilled", 4.0): population(0.86)}
    row = VariantRow("sweep-v1", (("lr", "0.1"),), (2.0, 4.0), test, {}, {}, validation)
    comparison = VariantComparison("sweep", ("lr",), (row,), (), None, ())
    assert uses_validation(comparison)
    table = summary_table(comparison)
    assert "(T=4; val 86.00 +- 1.00)" in table.rows[0][-2]
    assert "chosen on its held-out validation split" in table.caption
    without = replace(comparison, rows=(replace(row, validation={}),))
    assert "(T=2)" in summary_table(without).rows[0][-2]
    assert "a choice made on the test split" in summary_table(without).caption
