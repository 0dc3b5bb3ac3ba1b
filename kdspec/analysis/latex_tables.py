"""The report's main tables as LaTeX (booktabs) for a paper: accuracy, #SC/#TC, fairness.

Each file is one ``tabular`` (``\\usepackage{booktabs}`` in the preamble), preceded by ``%``
comment lines that say what the numbers are (units, n, the test's options), so a table pasted
into a paper keeps its provenance. Numbers are the report's own, in per cent where a share.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from kdspec.analysis.fairness import METRIC_LABELS
from kdspec.analysis.significance import CORRECTION_LABELS, ClassTests
from kdspec.analysis.study_analysis import StudyAnalysis

ACCURACY_TEX = "accuracy.tex"
SIGNIFICANCE_TEX = "significance.tex"
FAIRNESS_TEX = "fairness.tex"
_ESCAPES = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
            "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}",
            "^": r"\textasciicircum{}"}


def escape(text: str) -> str:
    """``text`` with LaTeX's special characters escaped."""
    return "".join(_ESCAPES.get(ch, ch) for ch in text)


def _pm(mean: float, sd: float, scale: float = 100.0) -> str:
    if math.isnan(mean):
        return "--"
    if math.isnan(sd):
        return f"{scale * mean:.2f}"
    return f"{scale * mean:.2f} $\\pm$ {scale * sd:.2f}"


def tabular(header: Sequence[str], rows: Sequence[Sequence[str]], comments: Sequence[str],
            *, align: str) -> str:
    """A booktabs tabular: header cells escaped, body cells already LaTeX."""
    lines = [f"% {c}" for c in comments]
    lines += [f"\\begin{{tabular}}{{{align}}}", "\\toprule",
              " & ".join(escape(h) for h in header) + r" \\", "\\midrule"]
    lines += [" & ".join(row) + r" \\" for row in rows]
    lines += ["\\bottomrule", "\\end{tabular}"]
    return "\n".join(lines) + "\n"


def accuracy_tex(analysis: StudyAnalysis) -> str:
    study = analysis.records.study
    rows = [(escape(g.key.label), str(g.n), _pm(g.mean, g.sd)) for g in analysis.accuracy.groups]
    return tabular(("Model", "n", "Accuracy (%)"), rows, (
        f"kdspec report {study.name}: test accuracy in per cent, mean +- sample sd over seeds.",
        f"{study.teacher.arch} -> {study.student.arch} on {study.dataset.name}."), align="lrr")


def _count(test: ClassTests | None, bh: bool = False) -> str:
    if test is None or test.skipped:
        return "--"
    return str(test.n_significant_bh if bh else test.n_significant)


def significance_tex(analysis: StudyAnalysis) -> str:
    sig = analysis.significance
    rows = []
    for t in analysis.records.study.temperatures:
        sc, tc = sig.get("nds_vs_ds", t), sig.get("teacher_vs_ds", t)
        ran = [x for x in (sc, tc) if x is not None and not x.skipped]
        chance = f"{ran[0].expected_by_chance:.2g}" if ran else "--"
        rows.append((f"{t:g}", _count(sc), _count(sc, True), _count(tc), _count(tc, True),
                     chance))
    return tabular(("T", "#SC", "#SC (BH)", "#TC", "#TC (BH)", "chance"), rows, (
        f"kdspec report {analysis.records.study.name}: classes significantly affected, "
        f"Welch's t-test per class on the '{sig.normalization}'-normalised class accuracy,",
        f"alpha = {sig.alpha:g}, correction: {CORRECTION_LABELS[sig.correction]}; (BH): after "
        f"Benjamini-Hochberg; chance: alpha x testable classes.",
        "#SC: NDS vs DS; #TC: teacher vs DS."), align="rrrrrr")


def fairness_tex(analysis: StudyAnalysis) -> str | None:
    fairness = analysis.fairness
    if fairness is None or not fairness.runs:
        return None
    attribute = fairness.attributes[0]
    rows = []
    for group in analysis.accuracy.groups:
        s = fairness.summary(attribute, group.key)
        rows.append((escape(group.key.label), str(s.n),
                     *(cell for m in fairness.metrics
                       for cell in (_pm(s.mean(m), s.sd(m)),
                                    _pm(s.excess(m).excess_mean, s.excess(m).excess_sd)))))
    split = fairness.splits.get(attribute)
    floor = (f" A perfect classifier scores DPD {100 * split.perfect_dpd:.2f}, EOD "
             f"{100 * split.perfect_eod:.2f} on this test set (a reference, not a lower "
             "bound)." if split is not None else "")
    how = (f"one-vs-rest per class, {fairness.aggregate} over classes" if fairness.multiclass
           else "binary target")
    header = [h for m in fairness.metrics
              for h in (f"{METRIC_LABELS[m]} (%)", f"excess {METRIC_LABELS[m]} (%)")]
    return tabular(("Model", "n", *header), rows,
                   (f"kdspec report {analysis.records.study.name}: group fairness over "
                    f"'{attribute}' in per cent ({how}), mean +- sd over seeds; lower is "
                    "fairer. Excess: the value minus what a model with no group effect scores "
                    f"at the same predictions (attribute permuted within each true class).{floor}",),
                   align="lr" + "r" * len(header))


def write_latex_tables(analysis: StudyAnalysis, out_dir: Path) -> list[Path]:
    """accuracy.tex, significance.tex and (with fairness) fairness.tex."""
    written = []
    for name, text in ((ACCURACY_TEX, accuracy_tex(analysis)),
                       (SIGNIFICANCE_TEX, significance_tex(analysis)),
                       (FAIRNESS_TEX, fairness_tex(analysis))):
        if text is not None:
            path = out_dir / name
            path.write_text(text, encoding="utf-8")
            written.append(path)
    return written
