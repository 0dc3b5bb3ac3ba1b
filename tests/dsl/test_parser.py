"""The parser: syntax nodes with exact spans, and syntax errors in the user's words."""

from __future__ import annotations

import pytest

from kdspec.dsl.diagnostics import SyntaxProblem
from kdspec.dsl.parser import parse
from kdspec.dsl.syntax import (
    Assignment,
    Directive,
    ListValue,
    Name,
    Number,
    Range,
    Section,
    String,
    WeightedSum,
)
from kdspec.errors import Span, SpecError


def syntax_error(text: str) -> SyntaxProblem:
    with pytest.raises(SpecError) as caught:
        parse(text, "t.kdspec")
    [diagnostic] = caught.value.diagnostics
    assert isinstance(diagnostic, SyntaxProblem)
    return diagnostic


def test_values_become_typed_nodes_with_spans() -> None:
    spec = parse('a = 5e-4\nb = "x\\"y"\nc = [1..3, 20]\nd = cosine\n', "t.kdspec")
    a, b, c, d = spec.entries
    assert isinstance(a, Assignment) and a.value == Number(5e-4, Span(1, 5, 1, 9, "t.kdspec"))
    assert isinstance(b, Assignment) and isinstance(b.value, String) and b.value.value == 'x"y'
    assert isinstance(c, Assignment) and isinstance(c.value, ListValue)
    first, second = c.value.items
    assert first == Range(1, 3, Span(3, 6, 3, 10, "t.kdspec"))
    assert isinstance(second, Number) and second.value == 20 and second.is_int
    assert isinstance(d, Assignment) and d.value == Name("cosine", Span(4, 5, 4, 11, "t.kdspec"))


def test_sections_labels_directives_and_weighted_sums() -> None:
    spec = parse('include "lib.kdspec"\nstudy s { distill { loss = 0.1 * hard + 0.9 * soft } }',
                 "t.kdspec")
    include, study = spec.entries
    assert isinstance(include, Directive) and include.argument.value == "lib.kdspec"
    assert isinstance(study, Section) and study.label is not None and study.label.value == "s"
    [distill] = study.entries
    assert isinstance(distill, Section) and distill.label is None
    [loss] = distill.entries
    assert isinstance(loss, Assignment) and isinstance(loss.value, WeightedSum)
    assert [(t.weight.value, t.term.value) for t in loss.value.terms] == [(0.1, "hard"),
                                                                         (0.9, "soft")]


def test_comments_and_empty_lists_parse() -> None:
    spec = parse("# only a comment\na = []  # trailing\nb = [1, 2,]\n", "t.kdspec")
    a, b = spec.entries
    assert isinstance(a, Assignment) and a.value == ListValue((), a.value.span)
    assert isinstance(b, Assignment) and isinstance(b.value, ListValue)
    assert len(b.value.items) == 2


def test_missing_closing_brace_points_at_the_end_of_the_file() -> None:
    problem = syntax_error("study s {\n  a = 1\n\n\n")
    assert problem.message == "missing '}' at the end of the file"
    assert (problem.span.line, problem.span.column) == (2, 8)
    assert problem.help == "the '{' on line 1 is never closed"


def test_missing_equals_names_the_key() -> None:
    problem = syntax_error("recipe r {\n  epochs 200\n}")
    assert problem.message == "expected '=' after 'epochs'"
    assert (problem.span.line, problem.span.column) == (2, 10)


@pytest.mark.parametrize("text", ["r { lr = }", "r { lr =\n  epochs = 2 }", "lr ="])
def test_missing_value_names_the_key(text: str) -> None:
    assert syntax_error(text).message == "missing value for 'lr'"


@pytest.mark.parametrize(("text", "message"), [
    ('a = "open', "unterminated string"),
    ("a = 1; b = 2", "unexpected ';'"),
    ("a = 1 }", "unexpected '}'"),
    ("a = -", "unexpected '-'"),
    ("teacher r20 epochs = 1", "expected '{' after 'r20'"),
    ("study s { seeds }", "'seeds' has no value"),
    ("include recipes", "the path of an include is a string"),
    ("a = " + "[" * 5000 + "]" * 5000, "blocks or lists are nested too deeply"),
    ("a = 1e999", "number 1e999 is too large"),
])
def test_other_syntax_errors_are_worded(text: str, message: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse(text, "t.kdspec")
    assert caught.value.diagnostics[0].message == message


def test_no_message_shows_lark_terminal_names() -> None:
    for text in ["a = [1, 2", "a = 0.1 *", "{", "a = 1..", "x y z"]:
        message = syntax_error(text).message
        assert "__ANON" not in message and "$END" not in message and "LBRACE" not in message
