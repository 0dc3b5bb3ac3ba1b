"""Hostile and pathological input: includes that are not specs, specs that nest or chain too
deep, values that compile but could never run, and text that would garble a terminal. Every
case must end in a diagnostic (exit 2) or a one-line error (exit 1), never a traceback, a hang
or a file's content on screen."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kdspec.cli import main
from kdspec.dsl import compile_text, load_plan
from kdspec.dsl.diagnostics import Diagnostic, Diagnostics, InvalidValue, render_spec_error
from kdspec.dsl.program import MAX_INCLUDE_DEPTH
from kdspec.dsl.recipes import MAX_RECIPE_DEPTH
from kdspec.dsl.source_files import MAX_SPEC_BYTES
from kdspec.errors import Span, SpecError
from tests.dsl.spec_texts import CIFAR_STUDY

SECRET = "root:$6$do-not-show-this-line"


def errors(text: str, path: str = "<string>") -> list[str]:
    with pytest.raises(SpecError) as caught:
        compile_text(text, path)
    return [d.message for d in caught.value.diagnostics]


def check(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(["check", str(path)])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err and captured.out == "" or code == 0
    return code, captured.err


@pytest.fixture
def secret_file(tmp_path: Path) -> Path:
    path = tmp_path / "shadow"
    path.write_text(SECRET + "\n")
    return path


@pytest.mark.parametrize("target", ["/dev/zero", "/dev/urandom", "/proc/self/environ"])
def test_an_include_of_a_device_or_proc_file_is_refused_unread(
        target: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "main.kdspec"
    spec.write_text(f'include "{target}"\n')
    code, err = check(spec, capsys)
    assert code == 2 and f"included file '{target}' is not a .kdspec file" in err


def test_a_fifo_named_like_a_spec_does_not_block(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    os.mkfifo(tmp_path / "pipe.kdspec")
    spec = tmp_path / "main.kdspec"
    spec.write_text('include "pipe.kdspec"\n')
    code, err = check(spec, capsys)
    assert code == 2 and "included file 'pipe.kdspec' is not a regular file" in err


def test_a_file_that_is_not_a_spec_is_never_shown(secret_file: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "main.kdspec"
    spec.write_text(f'include "{secret_file}"\n')
    code, err = check(spec, capsys)
    assert code == 2 and "is not a .kdspec file" in err and SECRET not in err
    # Named as the main file, it is refused the same way, unread.
    assert main(["check", str(secret_file)]) == 1
    err = capsys.readouterr().err
    assert "is not a .kdspec or .json file" in err and SECRET not in err
    # Renamed to .kdspec, it is read, but only as a spec: its first line is not a spec line.
    disguised = tmp_path / "shadow.kdspec"
    disguised.write_text(SECRET + "\n")
    assert main(["check", str(disguised)]) == 2


def test_includes_absolute_and_outside_the_folder_are_allowed(tmp_path: Path) -> None:
    library = tmp_path / "lab" / "recipes.kdspec"
    library.parent.mkdir()
    library.write_text("recipe shared { epochs = 2  batch_size = 64  lr = 0.1 }\n")
    spec_dir = tmp_path / "project"
    spec_dir.mkdir()
    for target in (str(library), "../lab/recipes.kdspec"):
        text = f'include "{target}"\n' + CIFAR_STUDY.replace("recipe = base", "recipe = shared")
        assert compile_text(text, str(spec_dir / "main.kdspec")).studies


def test_a_nul_in_an_include_path_is_a_diagnostic(tmp_path: Path) -> None:
    assert errors('include "a\\u0000b.kdspec"'.replace("\\u0000", "\0"),
                  str(tmp_path / "main.kdspec")) == [
        "included file 'a\0b.kdspec' cannot be read (embedded null byte)"]


def test_an_oversized_spec_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    big = tmp_path / "big.kdspec"
    big.write_text("# padding\n" * (MAX_SPEC_BYTES // 10 + 1))
    assert main(["check", str(big)]) == 1
    assert f"at most {MAX_SPEC_BYTES:,}" in capsys.readouterr().err


def test_a_directory_is_named_as_one(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "specs.kdspec"
    folder.mkdir()
    assert main(["run", str(folder), "--dry-run"]) == 1
    assert "is a directory" in capsys.readouterr().err


def test_a_deep_include_chain_says_so(tmp_path: Path) -> None:
    for i in range(600):
        (tmp_path / f"f{i}.kdspec").write_text(f'include "f{i + 1}.kdspec"\n')
    (tmp_path / "f600.kdspec").write_text("")
    assert errors('include "f0.kdspec"\n', str(tmp_path / "main.kdspec")) == [
        f"includes are nested more than {MAX_INCLUDE_DEPTH} deep"]


def test_long_recipe_chains_and_cycles_are_diagnostics() -> None:
    chain = "".join(f"recipe r{i} {{ recipe = r{i + 1} }}\n" for i in range(500))
    chain += "recipe r500 { epochs = 1  batch_size = 8  lr = 0.1 }\n"
    messages = errors(chain + CIFAR_STUDY.replace("recipe = base", "recipe = r0"))
    assert f"recipe 'r0' builds on a chain of more than {MAX_RECIPE_DEPTH} recipes" in messages
    cycle = "".join(f"recipe c{i} {{ recipe = c{(i + 1) % 3000} }}\n" for i in range(3000))
    messages = errors(cycle)
    assert any("chain of more than" in m or m.startswith("recipe cycle") for m in messages)
    short = "recipe a { recipe = b }\nrecipe b { recipe = a }\n"
    assert errors(short) == ["recipe cycle: a -> b -> a"]


def test_collecting_many_diagnostics_compares_none_of_them(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Adding N distinct diagnostics is a set lookup each, not a scan of those before (the
    scan made 20,000 errors take minutes)."""
    comparisons = 0
    original = Diagnostic.__eq__

    def counting(self: Diagnostic, other: object) -> bool:
        nonlocal comparisons
        comparisons += 1
        return original(self, other)

    monkeypatch.setattr(Diagnostic, "__eq__", counting)
    diags = Diagnostics()
    for i in range(20_000):
        diags.add(InvalidValue(Span(i + 1, 1, i + 1, 2, "x"), f"problem {i}"))
    diags.add(InvalidValue(Span(1, 1, 1, 2, "x"), "problem 0"))  # a repeat is dropped
    assert len(diags) == 20_000 and comparisons < 100


def test_values_that_could_never_run_are_refused_with_their_bound() -> None:
    base = CIFAR_STUDY
    cases = {
        "temperatures = [1..3, 8]": ("temperatures = [1e-320, 2]",
                                         "temperature must be between 0.01 and 1000"),
        "0.25 * hard + 0.75 * soft": ("0 * hard + 0 * soft", "both loss weights are 0"),
        "epochs = 3": ("epochs = 1000000000000000", "'epochs' must be <= 10000"),
    }
    for old, (new, message) in cases.items():
        assert old in base, old
        assert any(message in m for m in errors(base.replace(old, new))), new
    trifeature = base.replace("dataset cifar10 { train_subset = 500  test_subset = 100 }",
                              "dataset trifeature { image_size = 1000000  target = shape  "
                              "generated_train = 1000000000000 }")
    found = errors(trifeature)
    assert "image_size must be at most 1024, found 1000000" in found
    assert "generated_train must be at most 10,000,000 images, found 1,000,000,000,000" in found
    long_name = base.replace("study small {", "study " + "s" * 300 + " {")
    assert errors(long_name) == ["study name is 300 characters; at most 90"]


def test_a_byte_order_mark_is_not_an_error(tmp_path: Path) -> None:
    spec = tmp_path / "bom.kdspec"
    spec.write_bytes(b"\xef\xbb\xbf" + CIFAR_STUDY.encode())
    assert load_plan(spec).studies[0].name == "small"


@pytest.mark.parametrize("separator", ["\f", "\u2028", "\x85", "\v"])
def test_odd_line_separators_do_not_shift_the_line_shown(separator: str) -> None:
    text = f"# a comment with {separator} inside\nrecipe r {{\n  epochs 200\n}}\n"
    with pytest.raises(SpecError) as caught:
        compile_text(text, "odd.kdspec")
    rendered = render_spec_error(caught.value)
    assert "odd.kdspec:3:10: error: expected '=' after 'epochs'" in rendered
    assert "3 |   epochs 200\n" in rendered


def test_escape_sequences_are_shown_escaped_not_sent_to_the_terminal() -> None:
    text = 'recipe r { epochs = 2  batch_size = 8  lr = 0.1 }\n' \
           'study s { tracking { experiment = "\x1b[2J\x1b[31mred" } }\n'
    with pytest.raises(SpecError) as caught:
        compile_text(text, "esc.kdspec")
    rendered = render_spec_error(caught.value)
    assert "\x1b" not in rendered and "\\x1b[2J" in rendered
    # The bidirectional override of "trojan source" attacks is shown, not obeyed.
    with pytest.raises(SpecError) as caught:
        compile_text('study s\u202e { }', "bidi.kdspec")
    assert "\u202e" not in render_spec_error(caught.value)
