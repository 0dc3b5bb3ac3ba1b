"""Grammar fuzz through the command line: 10,000 generated and mutated specs, each checked by
`kdspec check` in-process. Every one must end with exit 0 (a valid spec) or 2 (diagnostics),
never 1 (an unexpected exception turned into one line) and never a traceback.

The specs are drawn from a fixed seed, so a failure names a reproducible case: the message
gives the index and the text.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numpy as np
import pytest

from kdspec.cli import main

SPECS = Path(__file__).parents[2] / "specs"
SHIPPED = [p for p in sorted(SPECS.glob("*.kdspec"))]
WORDS = [
    "study", "recipe", "include", "dataset", "teacher", "student", "distill", "fairness",
    "analysis", "runtime", "tracking", "seeds", "temperatures", "loss", "epochs", "lr", "vary",
    "batch_size", "schedule", "multistep", "milestones", "cifar10", "trifeature", "celeba",
    "digits", "resnet20", "lenet5", "resnet18", "hard", "soft", "target", "shape", "sensitive",
    "color", "multiclass", "one_vs_rest", "aggregate", "mean", "max", "true", "false",
    "image_size", "generated_test", "combinations", "balanced", "bootstrap", "{", "}", "=",
    "[", "]", ",", "..", "*", "+", "0", "2", "-1", "0.5", "1e-320", "1e999",
    "99999999999999999", '"x"', '""', '"a\\"b"', '"/dev/zero"', '"recipes/cifar.kdspec"',
    "#", "\n", ";", "-", '"', "\t", "\f", "\u2028", "\ufeff", "\x1b[31m", "\u202e", "é",
]
INSERTS = ["{", "}", "[", "]", "=", "..", ",", '"', "\n", "0", "-", "1e9", "vary { }",
           "study", "\x00", "\u0085", "#"]


def token_soup(rng: np.random.Generator) -> str:
    words = rng.choice(WORDS, size=int(rng.integers(0, 80)))
    return " ".join(str(w) for w in words)


def mutation(rng: np.random.Generator, text: str) -> str:
    """One to three edits: delete a slice, insert a token, duplicate or swap lines."""
    for _ in range(int(rng.integers(1, 4))):
        kind = int(rng.integers(0, 4))
        at = int(rng.integers(0, len(text) + 1))
        if kind == 0:
            text = text[:at] + text[at + int(rng.integers(1, 16)):]
        elif kind == 1:
            text = text[:at] + str(rng.choice(INSERTS)) + text[at:]
        else:
            lines = text.split("\n")
            i, j = (int(v) for v in rng.integers(0, len(lines), 2))
            if kind == 2:
                lines.insert(j, lines[i])
            else:
                lines[i], lines[j] = lines[j], lines[i]
            text = "\n".join(lines)
    return text


@pytest.mark.parametrize("cases", [
    2_000,
    pytest.param(10_000, marks=pytest.mark.extended),  # make test-extended
])
def test_generated_and_mutated_specs_end_in_exit_0_or_2(cases: int, tmp_path: Path) -> None:
    rng = np.random.default_rng(2_025)
    sources = [(p, p.read_text()) for p in SHIPPED]
    # Mutated specs live beside the shipped ones' includes, so includes still resolve.
    (tmp_path / "recipes").symlink_to(SPECS / "recipes")
    target = tmp_path / "fuzz.kdspec"
    outcomes = {0: 0, 2: 0}
    for index in range(cases):
        if index % 2:
            text = token_soup(rng)
        else:
            _, original = sources[int(rng.integers(0, len(sources)))]
            text = mutation(rng, original)
        target.write_text(text, encoding="utf-8", errors="surrogatepass")
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(["check", str(target)])
        assert code in outcomes and "Traceback" not in err.getvalue(), (
            f"case {index} ended with exit {code}:\n{err.getvalue()}\n--- spec ---\n{text!r}")
        outcomes[code] += 1
    assert outcomes[0] > 0 and outcomes[2] > cases // 2  # most mutations are errors
