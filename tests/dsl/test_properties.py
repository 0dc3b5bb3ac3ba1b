"""Property: whatever text the compiler is fed, the only error that comes out is SpecError.

Two generators: token soup built from the language's own words and punctuation (reaches deep
into the compiler), and single edits of valid specs (the mistakes people actually make).
"""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kdspec.dsl import compile_text
from kdspec.errors import SpecError
from kdspec.plan import Plan
from tests.dsl.spec_texts import CIFAR_STUDY, TRIFEATURE_STUDY

QUICKSTART = (Path(__file__).parents[2] / "specs" / "quickstart.kdspec").read_text()

WORDS = [
    "study", "recipe", "include", "dataset", "teacher", "student", "distill", "fairness",
    "analysis", "runtime", "tracking", "seeds", "temperatures", "loss", "epochs", "lr",
    "batch_size", "schedule", "multistep", "milestones", "cifar10", "trifeature", "celeba",
    "resnet20", "lenet5", "resnet18", "hard", "soft", "target", "shape", "sensitive", "color",
    "multiclass", "one_vs_rest", "aggregate", "max", "true", "false", "image_size", "{", "}",
    "=", "[", "]", ",", "..", "*", "+", "0", "2", "-1", "0.5", "1e999", "99999999999999999",
    '"x"', '""', "#", "\n", ";", "-", '"',
]
SPECS = [CIFAR_STUDY, TRIFEATURE_STUDY, QUICKSTART]


def compiles_or_spec_error(text: str) -> None:
    try:
        plan = compile_text(text)
    except SpecError as err:
        assert err.diagnostics, "a SpecError always carries at least one diagnostic"
        return
    assert isinstance(plan, Plan)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(WORDS), max_size=60))
def test_token_soup_raises_only_spec_errors(words: list[str]) -> None:
    compiles_or_spec_error(" ".join(words))


@st.composite
def edited_specs(draw: st.DrawFn) -> str:
    text = draw(st.sampled_from(SPECS))
    start = draw(st.integers(0, len(text)))
    end = draw(st.integers(start, min(len(text), start + 12)))
    insert = draw(st.one_of(st.sampled_from(WORDS), st.text(max_size=4)))
    return text[:start] + insert + text[end:]


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(edited_specs())
def test_edited_specs_raise_only_spec_errors(text: str) -> None:
    compiles_or_spec_error(text)
