"""LaTeX tables: each is one well-formed booktabs tabular with one row per model or T."""

from __future__ import annotations

import re
from pathlib import Path

from kdspec.analysis.latex_tables import escape, write_latex_tables
from kdspec.analysis.study_analysis import analyse_study
from kdspec.plan import AnalysisSpec, FairnessSpec
from tests.analysis.synthetic import records_from_predictions, synthetic_predictions
from tests.factories import dataset_spec, tiny_plan


def check_tabular(text: str) -> list[list[str]]:
    """Parse a booktabs tabular as a paper's LaTeX would: braces balance (escaped ones aside),
    one begin/end, toprule/midrule/bottomrule in order, every row with the column count of
    the alignment; returns the body rows' cells."""
    body = "\n".join(line for line in text.splitlines() if not line.startswith("%"))
    unescaped = re.sub(r"\\[{}]", "", body)
    depth = 0
    for ch in unescaped:
        depth += {"{": 1, "}": -1}.get(ch, 0)
        assert depth >= 0, "a } closes nothing"
    assert depth == 0, "unbalanced braces"
    assert body.count("\\begin{tabular}") == 1 and body.count("\\end{tabular}") == 1
    align = re.search(r"\\begin\{tabular\}\{([lcr]+)\}", body)
    assert align is not None
    columns = len(align.group(1))
    lines = body.splitlines()
    top, mid, bottom = (lines.index(r) for r in ("\\toprule", "\\midrule", "\\bottomrule"))
    assert top < mid < bottom
    rows = []
    for line in lines[top + 1:bottom]:
        if line == "\\midrule":
            continue
        assert line.endswith(r" \\"), line
        cells = re.split(r"(?<!\\)&", line[:-3])
        assert len(cells) == columns, line
        rows.append([c.strip() for c in cells])
    return rows[1:]  # without the header row


def test_every_table_is_a_tabular_with_one_row_per_model(tmp_path: Path) -> None:
    plan = tiny_plan(dataset=dataset_spec("cifar10", sensitive=("group",)), seeds=(0, 1, 2),
                     temperatures=(2.0, 4.0, 8.0), fairness=FairnessSpec(sensitive=("group",)),
                     analysis=AnalysisSpec(bootstrap=0))
    study = plan.studies[0]
    analysis = analyse_study(records_from_predictions(
        plan, study, synthetic_predictions(plan, study, n_test=500)))
    written = {p.name: p for p in write_latex_tables(analysis, tmp_path)}
    assert set(written) == {"accuracy.tex", "significance.tex", "fairness.tex"}
    accuracy = check_tabular(written["accuracy.tex"].read_text())
    assert [r[0] for r in accuracy] == ["teacher", "NDS", "DS T=2", "DS T=4", "DS T=8"]
    assert accuracy[1][2] == f"{100 * analysis.accuracy.nds.mean:.2f} $\\pm$ " \
                             f"{100 * analysis.accuracy.nds.sd:.2f}"
    significance = check_tabular(written["significance.tex"].read_text())
    assert [r[0] for r in significance] == ["2", "4", "8"]
    fairness = check_tabular(written["fairness.tex"].read_text())
    assert len(fairness) == 5
    assert "in per cent" in written["fairness.tex"].read_text()


def test_special_characters_are_escaped() -> None:
    assert escape("DS T=4 & 50% of #SC_1") == r"DS T=4 \& 50\% of \#SC\_1"
