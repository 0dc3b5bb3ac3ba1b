"""Parse ``.kdspec`` text into typed syntax nodes, turning lark's errors into the user's words.

The grammar (``kdspec.lark``, shipped in the package) is loaded once, LALR with positions. A
syntax error stops at the first problem (what follows a broken brace is rarely meaningful) and is
reported as a ``SyntaxProblem`` that says what was expected in plain terms: "missing '}' at the
end of the file", "expected '=' after 'epochs'", "missing value for 'lr'".
"""

from __future__ import annotations

import math
from functools import cache
from importlib import resources

import lark
from lark import Lark, Token, Tree
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from kdspec.dsl.diagnostics import Diagnostics, InvalidValue, SyntaxProblem, source_lines
from kdspec.dsl.syntax import (
    Assignment,
    Directive,
    Entry,
    ListValue,
    Name,
    Number,
    Range,
    Section,
    SpecFile,
    String,
    Value,
    WeightedSum,
    WeightedTerm,
)
from kdspec.errors import Span, SpecError

#: Integers beyond this are certainly mistakes, and would overflow float conversions later.
LARGEST_NUMBER = 10**15

_TERMINAL_WORDS = {
    "NAME": "a name",
    "QUALIFIED_NAME": "a library model name",
    "INT": "an integer",
    "FLOAT": "a number",
    "STRING": "a string",
    "$END": "the end of the file",
}
_VALUE_STARTS = {"INT", "FLOAT", "STRING", "LSQB", "NAME"}
VALUE_HELP = "a value is a number, a \"string\", a name, a list [a, b] or a range 2..10"


@cache
def _parser() -> Lark:
    grammar = resources.files("kdspec.dsl").joinpath("kdspec.lark").read_text()
    return Lark(grammar, parser="lalr", lexer="basic", propagate_positions=True,
                maybe_placeholders=True)


def parse(text: str, path: str) -> SpecFile:
    """Parse one file's text; raises SpecError (a single SyntaxProblem, or invalid numbers)."""
    try:
        tree = _parser().parse(text)
        diags = Diagnostics()
        builder = _NodeBuilder(path, diags)
        entries = tuple(builder.entry(c) for c in tree.children if isinstance(c, Tree))
    except UnexpectedInput as err:
        raise SpecError([_syntax_diagnostic(err, text, path)], {path: text}) from None
    except RecursionError:
        # Thousands of nested [ or { : no spec needs that, and Python's stack cannot walk it.
        raise SpecError([SyntaxProblem(Span(1, 1, 1, 2, path),
                                       "blocks or lists are nested too deeply")],
                        {path: text}) from None
    diags.raise_if_any({path: text})
    return SpecFile(path=path, text=text, entries=entries)


def _tok(child: Tree | Token | None) -> Token:
    """A tree child the grammar guarantees to be a token."""
    assert isinstance(child, Token)
    return child


class _NodeBuilder:
    """Converts lark's tree into syntax nodes, checking number literals on the way."""

    def __init__(self, path: str, diags: Diagnostics) -> None:
        self.path = path
        self.diags = diags

    def span(self, item: Tree | Token) -> Span:
        if isinstance(item, Token):
            return _token_span(item, self.path)
        meta = item.meta
        return Span(meta.line, meta.column, meta.end_line, meta.end_column, self.path)

    def entry(self, tree: Tree) -> Entry:
        kind = tree.data
        key = _tok(tree.children[0])
        if kind == "assignment":
            return Assignment(str(key), self.span(key), self.value(tree.children[1]),
                              self.span(tree))
        if kind == "directive":
            return Directive(str(key), self.span(key), self.string(_tok(tree.children[1])),
                             self.span(tree))
        label_token, block = tree.children[1], tree.children[2]
        label = None if label_token is None else Name(str(label_token), self.span(label_token))
        entries = tuple(self.entry(c) for c in block.children if isinstance(c, Tree))
        return Section(str(key), self.span(key), label, entries, self.span(tree))

    def value(self, item: Tree | Token) -> Value:
        if isinstance(item, Token):  # only reached for malformed trees; grammar wraps tokens
            return Name(str(item), self.span(item))
        kind = item.data
        if kind == "number":
            return self.number(item)
        if kind == "string":
            tokens = [_tok(c) for c in item.children]
            if len(tokens) == 1:
                return self.string(tokens[0])
            first, last = self.span(tokens[0]), self.span(tokens[-1])
            return String("".join(_decode_string(str(t)) for t in tokens),
                          Span(first.line, first.column, last.end_line, last.end_column,
                               self.path))
        if kind == "name":
            return Name(str(item.children[0]), self.span(item))
        if kind == "range":
            start, end = (self.integer(_tok(t)) for t in item.children)
            return Range(start, end, self.span(item))
        if kind == "weighted_sum":
            terms = tuple(
                WeightedTerm(self.number(t.children[0]),
                             Name(str(t.children[1]), self.span(t.children[1])), self.span(t))
                for t in item.children
            )
            return WeightedSum(terms, self.span(item))
        items = tuple(self.value(c) for c in item.children if c is not None)
        return ListValue(items, self.span(item))

    def number(self, tree: Tree) -> Number:
        token = _tok(tree.children[0])
        if token.type == "INT":
            return Number(self.integer(token), self.span(token))
        value = float(token)
        if not math.isfinite(value) or abs(value) > LARGEST_NUMBER:
            self._too_large(token)
            value = 0.0
        return Number(value, self.span(token))

    def integer(self, token: Token) -> int:
        value = int(token)
        if abs(value) > LARGEST_NUMBER:
            self._too_large(token)
            return 0
        return value

    def _too_large(self, token: Token) -> None:
        self.diags.add(InvalidValue(self.span(token), f"number {token} is too large",
                                    help=f"numbers are limited to {LARGEST_NUMBER:.0e}"))

    def string(self, token: Token) -> String:
        return String(_decode_string(str(token)), self.span(token))


def _decode_string(literal: str) -> str:
    """The text of a ``"..."`` literal: ``\\"``, ``\\\\``, ``\\n``, ``\\t``; ``\\x`` is ``x``."""
    out: list[str] = []
    chars = iter(literal[1:-1])
    for ch in chars:
        if ch == "\\":
            nxt = next(chars, "")
            out.append({"n": "\n", "t": "\t"}.get(nxt, nxt))
        else:
            out.append(ch)
    return "".join(out)


def _token_span(token: Token, path: str) -> Span:
    line, column = token.line or 1, token.column or 1
    return Span(line, column, token.end_line or line, token.end_column or column + 1, path)


def _end_of_file(text: str, path: str) -> Span:
    """Just after the last character of the last non-blank line (lark's EOF position is -1)."""
    lines = source_lines(text.rstrip())
    col = len(lines[-1]) + 1
    return Span(len(lines), col, len(lines), col, path)


def _lex_prefix(text: str) -> list[Token]:
    """The tokens lark can read from the start of ``text`` (stopping at a bad character)."""
    tokens: list[Token] = []
    try:
        for tok in _parser().lex(text):
            tokens.append(tok)
    except lark.exceptions.LarkError:
        pass
    return tokens


def _describe_terminal(name: str) -> str:
    if name in _TERMINAL_WORDS:
        return _TERMINAL_WORDS[name]
    try:
        pattern = _parser().get_terminal(name).pattern
    except KeyError:
        return name
    return f"'{pattern.value}'"


def _describe_token(token: Token) -> str:
    if token.type == "$END":
        return "end of the file"
    if token.type in ("NAME", "QUALIFIED_NAME", "INT", "FLOAT", "STRING"):
        return f"{_TERMINAL_WORDS[token.type].split()[-1]} '{token}'"
    return f"'{token}'"


def _syntax_diagnostic(err: UnexpectedInput, text: str, path: str) -> SyntaxProblem:
    if isinstance(err, UnexpectedCharacters):
        return _unexpected_character(err, text, path)
    if isinstance(err, UnexpectedToken):
        return _unexpected_token(err, text, path)
    if isinstance(err, UnexpectedEOF):
        return SyntaxProblem(_end_of_file(text, path), "unexpected end of the file")
    return SyntaxProblem(_end_of_file(text, path), "the file cannot be read as a .kdspec spec")


def _unexpected_character(err: UnexpectedCharacters, text: str, path: str) -> SyntaxProblem:
    pos, line, column = err.pos_in_stream or 0, err.line or 1, err.column or 1
    span = Span(line, column, line, column + 1, path)
    char = text[pos] if pos < len(text) else ""
    if char == '"':
        line_end = text.find("\n", pos)
        length = (len(text) if line_end < 0 else line_end) - pos
        span = Span(line, column, line, column + max(length, 1), path)
        return SyntaxProblem(span, "unterminated string",
                             help="close the string with '\"' on the same line")
    if char in ";:":
        return SyntaxProblem(span, f"unexpected '{char}'",
                             help="entries need no separator: write `key = value`, one per line")
    if char == "-":
        return SyntaxProblem(span, "unexpected '-'",
                             help="arithmetic is not allowed; write the number itself")
    return SyntaxProblem(span, f"unexpected character {char!r}")


def _unexpected_token(err: UnexpectedToken, text: str, path: str) -> SyntaxProblem:
    token: Token = err.token
    accepts = set(err.accepts or err.expected)
    at_eof = token.type == "$END"
    span = _end_of_file(text, path) if at_eof else _token_span(token, path)
    tokens = _lex_prefix(text)
    before = [t for t in tokens if at_eof or (t.start_pos or 0) < (token.start_pos or 0)]
    prev = before[-1] if before else None

    if at_eof and "RBRACE" in accepts:
        opened = _unclosed_brace(tokens)
        where = ""
        if opened is not None:
            where = f"the '{{' on line {opened.line} is never closed"
        return SyntaxProblem(span, "missing '}' at the end of the file", help=where or None)
    if prev is not None and prev.type == "EQUAL" and not accepts.isdisjoint(_VALUE_STARTS):
        key = before[-2] if len(before) >= 2 else prev
        return SyntaxProblem(_token_span(prev, path), f"missing value for '{key}'", help=VALUE_HELP)
    if prev is not None and prev.type == "NAME" and "EQUAL" in accepts \
            and token.type in _VALUE_STARTS - {"NAME"}:
        return SyntaxProblem(span, f"expected '=' after '{prev}'",
                             help=f"write `{prev} = {token}`")
    if token.type == "EQUAL" and len(before) >= 3 and before[-2].type == "EQUAL" \
            and (before[-1].line or 0) > (before[-2].line or 0):
        return SyntaxProblem(_token_span(before[-2], path),
                             f"missing value for '{before[-3]}'", help=VALUE_HELP)
    if token.type == "RBRACE" and prev is not None and prev.type == "NAME" \
            and "EQUAL" in accepts:
        return SyntaxProblem(_token_span(prev, path), f"'{prev}' has no value",
                             help=f"write `{prev} = ...` or `{prev} {{ ... }}`")
    if token.type == "RBRACE" and "RBRACE" not in accepts and _unclosed_brace(before) is None:
        return SyntaxProblem(span, "unexpected '}'", help="there is no open '{' to close here")
    if len(before) >= 2 and before[-2].type == "NAME" and before[-2] == "include" \
            and prev is not None and prev.type == "NAME":
        return SyntaxProblem(_token_span(prev, path), "the path of an include is a string",
                             help=f'write `include "{prev}.kdspec"`')
    if prev is not None and prev.type == "NAME" and accepts == {"LBRACE"}:
        return SyntaxProblem(span, f"expected '{{' after '{prev}'",
                             help="a section is written `name label { key = value ... }`")
    if "FLOAT" in accepts:
        accepts.discard("INT")  # "a number" covers both
    wanted = sorted({_describe_terminal(a) for a in accepts})
    expected = wanted[0] if len(wanted) == 1 else ", ".join(wanted[:-1]) + " or " + wanted[-1]
    return SyntaxProblem(span, f"unexpected {_describe_token(token)}; expected {expected}")


def _unclosed_brace(tokens: list[Token]) -> Token | None:
    """The innermost '{' that no '}' closes."""
    stack: list[Token] = []
    for tok in tokens:
        if tok.type == "LBRACE":
            stack.append(tok)
        elif tok.type == "RBRACE" and stack:
            stack.pop()
    return stack[-1] if stack else None
