"""The diagnostics renderer and the did-you-mean helper."""

from __future__ import annotations

from kdspec.dsl.diagnostics import (
    Diagnostics,
    UnknownName,
    did_you_mean,
    edit_distance,
    render_spec_error,
)
from kdspec.errors import Span, SpecError


def test_did_you_mean_prefers_fewest_edits_and_ignores_case() -> None:
    names = ["resnet20", "resnet32", "resnet56"]
    assert did_you_mean("resnet2O", names, "architectures") == "did you mean 'resnet20'?"
    assert did_you_mean("YOUNG", ["Young", "Male"], "attributes") == "did you mean 'Young'?"
    assert did_you_mean("zzz", ["b", "a"], "options") == "options: a, b"


def test_edit_distance_counts_single_character_edits() -> None:
    assert edit_distance("kitten", "sitting") == 3
    assert edit_distance("", "abc") == 3
    assert edit_distance("same", "same") == 0


def test_renderer_sorts_underlines_and_counts() -> None:
    source = "a = 1\n\tbad = 2\n"
    later = UnknownName(Span(2, 2, 2, 5, "f.kdspec"), "unknown key 'bad'", help="try 'b'")
    earlier = UnknownName(Span(1, 5, 1, 6, "f.kdspec"), "first")
    text = render_spec_error(SpecError([later, earlier], {"f.kdspec": source}))
    assert text == (
        "f.kdspec:1:5: error: first\n"
        "  |\n"
        "1 | a = 1\n"
        "  |     ^\n"
        "\n"
        "f.kdspec:2:2: error: unknown key 'bad'\n"
        "  |\n"
        "2 | \tbad = 2\n"
        "  | \t^^^\n"
        "  = help: try 'b'\n"
        "\n"
        "2 errors found\n"
    )


def test_renderer_without_source_prints_the_location_line_only() -> None:
    diagnostic = UnknownName(Span(3, 1, 3, 2, "gone.kdspec"), "lost")
    assert render_spec_error(SpecError([diagnostic])) == (
        "gone.kdspec:3:1: error: lost\n\n1 error found\n")


def test_collector_keeps_one_copy_of_a_repeated_problem() -> None:
    diags = Diagnostics()
    problem = UnknownName(Span(1, 1, 1, 2, "f"), "x")
    diags.add(problem)
    diags.add(UnknownName(Span(1, 1, 1, 2, "f"), "x"))
    assert len(diags) == 1
