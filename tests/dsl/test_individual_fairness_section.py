"""The ``individual_fairness`` section: defaults, every key, errors at the key, run ids kept."""

from __future__ import annotations

import pytest

from kdspec.dsl import compile_text
from kdspec.errors import SpecError
from kdspec.plan import IndividualFairnessSpec
from tests.dsl.spec_texts import CIFAR_STUDY


def _with(section: str) -> str:
    return CIFAR_STUDY.replace("  seeds = 2\n", f"  seeds = 2\n  {section}\n")


def test_absent_means_not_measured_and_present_gets_the_stated_defaults() -> None:
    assert compile_text(CIFAR_STUDY).studies[0].individual_fairness is None
    study = compile_text(_with("individual_fairness {}")).studies[0]
    assert study.individual_fairness == IndividualFairnessSpec()
    assert study.individual_fairness.output == "probabilities"  # type: ignore[union-attr]
    assert study.individual_fairness.pairs == "nearest"  # type: ignore[union-attr]


def test_every_key_is_read() -> None:
    text = _with("individual_fairness { output = confidence  distance = cosine  pairs = random "
                 "samples = 300  neighbours = 2  same_label = true }")
    spec = compile_text(text).studies[0].individual_fairness
    assert spec == IndividualFairnessSpec(output="confidence", distance="cosine", pairs="random",
                                          samples=300, neighbours=2, same_label=True)


def test_declaring_it_does_not_change_any_run_id() -> None:
    plain = compile_text(CIFAR_STUDY)
    measured = compile_text(_with("individual_fairness { samples = 500 }"))
    assert [r.id for r in plain.runs] == [r.id for r in measured.runs]


@pytest.mark.parametrize(("section", "expected"), [
    ("individual_fairness { distance = cosin }", "unknown distance 'cosin'"),
    ("individual_fairness { samples = 1 }", "samples"),
    ("individual_fairness { neighbours = 0 }", "neighbours"),
    ("individual_fairness { pair = nearest }", "unknown key 'pair'"),
])
def test_mistakes_are_reported_at_the_key(section: str, expected: str) -> None:
    text = _with(section)
    with pytest.raises(SpecError) as caught:
        compile_text(text)
    [diagnostic] = caught.value.diagnostics
    assert expected in diagnostic.message
    line = text.splitlines()[diagnostic.span.line - 1]
    assert line.strip().startswith("individual_fairness")


def test_an_override_reaches_the_section_and_adds_it_when_missing() -> None:
    measured = compile_text(_with("individual_fairness { samples = 500 }"),
                            overrides=("individual_fairness.same_label=true",))
    spec = measured.studies[0].individual_fairness
    assert spec is not None and spec.same_label and spec.samples == 500
    added = compile_text(CIFAR_STUDY, overrides=("individual_fairness.neighbours=3",))
    assert added.studies[0].individual_fairness == IndividualFairnessSpec(neighbours=3)


def test_kdspec_plan_says_what_individual_fairness_will_measure() -> None:
    from kdspec.commands.plan import study_table

    plan = compile_text(_with("individual_fairness { pairs = random  neighbours = 2 }"))
    table = study_table(plan, plan.studies[0])
    assert "individual fairness: f = softmax probabilities" in table
    assert "with 2 random other sampled images" in table
    plain = compile_text(CIFAR_STUDY)
    assert "individual fairness" not in study_table(plain, plain.studies[0])
