"""The report of a methods block: the answer first (which methods change which classes and
groups beyond the NDS and beyond label smoothing, after Holm over methods x claims), then the
ledger, the method x class map, every claim of the family and how the family is formed.

Written beside the block's variant comparison: ``methods.md``, ``methods.html``,
``methods.csv`` (the ledger), ``method_claims.csv``, ``method_class_map.csv`` and
``method_class_map.png``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from kdspec.analysis.csv_tables import Cell, write_csv
from kdspec.analysis.fairness import METRIC_LABELS
from kdspec.analysis.flagged_runs import flagged_lines
from kdspec.analysis.method_claims import CONTROL_NAMES, MethodClaim, arm_namer
from kdspec.analysis.method_design import LABEL_SMOOTHING, RANDOM_TEACHER, ClassComparison
from kdspec.analysis.method_figure import METHODS_MAP_CSV, METHODS_MAP_FIGURE, class_map_figure
from kdspec.analysis.method_ledger import LedgerRow, MethodsLedger, Spread
from kdspec.analysis.published_methods import MSG_CAVEAT, SOURCES, PublishedTop1
from kdspec.analysis.records import RunPredictions
from kdspec.analysis.report_html import render_html
from kdspec.analysis.report_markdown import render_markdown
from kdspec.analysis.report_model import ReportDocument, Section, Table
from kdspec.analysis.report_summary import verdict_label

METHODS_MD, METHODS_HTML = "methods.md", "methods.html"
METHODS_CSV, METHOD_CLAIMS_CSV = "methods.csv", "method_claims.csv"
MSG_COMPLETE = "Complete: all {total} runs of the block's {arms} arms finished"
MSG_INCOMPLETE = ("Incomplete: {parts}. Every verdict here is provisional; report again when "
                  "the block has finished")
MSG_NONE_BEYOND = "no arm {what} after Holm over the block"
MSG_NOT_REPORTED = "no usable run, not in the family"


def _pct(value: Spread, digits: int = 2) -> str:
    if math.isnan(value.mean):
        return "-"
    sd = "" if math.isnan(value.sd) else f" +- {100 * value.sd:.{digits}f}"
    return f"{100 * value.mean:.{digits}f}{sd}"


def _points(value: Spread) -> str:
    return "-" if math.isnan(value.mean) else f"{100 * value.mean:+.2f}"


def _changed(comparison: ClassComparison | None, alpha: float) -> str:
    if comparison is None:
        return "-"
    if math.isnan(comparison.p_value):
        return f"n/a ({len(comparison.seeds)} seeds)"
    up, down = comparison.changed(alpha)
    return f"{up + down} of {int(comparison.testable.sum())} ({up} up, {down} down)"


def _classes(comparison: ClassComparison, names: tuple[str, ...], alpha: float,
             most: int = 4) -> str:
    hit = [int(c) for c in comparison.significant(alpha).nonzero()[0]]
    hit.sort(key=lambda c: -abs(float(comparison.change[c])))
    shown = ", ".join(f"{names[c]} {comparison.change[c]:+.3f}" for c in hit[:most])
    more = f", {len(hit) - most} more" if len(hit) > most else ""
    return f"{len(hit)} classes: {shown}{more}" if hit else "no single class after Holm"


def _published(value: PublishedTop1 | None) -> str:
    return "-" if value is None else f"{value.value:.2f} [{value.source}]"


def status_line(ledger: MethodsLedger) -> tuple[str, bool]:
    """The first line (complete, or where each incomplete arm stands) and whether incomplete."""
    arms = [r.arm for r in ledger.rows]
    ids = {rid for arm in arms for rid in arm.study.run_ids}
    late = [f"{arm.label}: {arm.analysis.records.state.headline().removeprefix('Incomplete: ')}"
            for arm in arms if not arm.analysis.records.complete]
    late += [f"{name}: {MSG_NOT_REPORTED}" for name in ledger.not_reported]
    if not late:
        return MSG_COMPLETE.format(total=len(ids), arms=len(arms)) + ".", False
    return MSG_INCOMPLETE.format(parts="; ".join(late)) + ".", True


def used_runs(ledger: MethodsLedger) -> list[RunPredictions]:
    """The block's used runs, each once (teachers and NDS are shared by the arms)."""
    seen: dict[str, RunPredictions] = {}
    for row in ledger.rows:
        for run in row.arm.analysis.records.runs:
            seen.setdefault(run.kdspec_id, run)
    return list(seen.values())


def _verdict(claim: MethodClaim, provisional: bool, *, p: bool = False) -> str:
    """The verdict, with its p after Holm when ``p``, then the flagged runs it rests on."""
    text = verdict_label(claim.test, provisional=provisional)
    text += f" (p {_p(claim.test.p_adjusted)})" if p else ""
    return text + (f"; {claim.flagged}" if claim.flagged else "")


def _supported(ledger: MethodsLedger, kind: str, words: str = "") -> list[MethodClaim]:
    return [c for c in ledger.claims.claims if c.kind == kind and c.test.verdict == "supported"
            and words in c.test.claim.lower()]


def answer(ledger: MethodsLedger, provisional: bool) -> str:
    """The first paragraph: which arms change which classes and groups beyond the NDS, beyond
    label smoothing and beyond a random teacher, with n, alpha and the family."""
    alpha, names = ledger.alpha, ledger.class_names
    rows = {r.arm.method: r for r in ledger.rows}
    counts = sorted({len(r.vs_nds.seeds) for r in ledger.rows})
    n = (str(counts[0]) if len(counts) == 1 else f"{counts[0]}-{counts[-1]}") if counts else "0"
    parts = []
    beyond_nds = _supported(ledger, "paper", "beyond chance")
    parts.append("Beyond the NDS: " + ("; ".join(
        f"{rows[c.arm].arm.label} changes class-level accuracy "
        f"({_classes(rows[c.arm].vs_nds, names, alpha)}; p after Holm "
        f"{c.test.p_adjusted:.3g})" for c in beyond_nds)
        if beyond_nds else MSG_NONE_BEYOND.format(what="changes class-level accuracy")) + ".")
    for control in (LABEL_SMOOTHING, RANDOM_TEACHER):
        if control not in rows:
            continue
        found = _supported(ledger, f"vs {control}")
        what = f"differs from {CONTROL_NAMES[control]} class by class"
        comparisons = ledger.claims.comparisons
        parts.append(f"Beyond {CONTROL_NAMES[control]}: " + ("; ".join(
            f"{rows[c.arm].arm.label} ({_classes(comparisons[(c.arm, control)], names, alpha)}"
            f"; p after Holm {c.test.p_adjusted:.3g})" for c in found)
            if found else MSG_NONE_BEYOND.format(what=what)) + ".")
    if ledger.attribute is not None:
        fairer = _supported(ledger, "paper", "below nds")
        parts.append(f"Groups over '{ledger.attribute}': " + ("; ".join(
            f"{rows[c.arm].arm.label}: {c.test.claim.split('] ', 1)[1].rstrip('.')} "
            f"(p after Holm {c.test.p_adjusted:.3g})" for c in fairer)
            if fairer else MSG_NONE_BEYOND.format(
                what="has a lower excess DPD or EOD than the NDS")) + ".")
    head = ("Provisional (the block is incomplete): " if provisional else "")
    return (head + " ".join(parts) + f" Family: {ledger.claims.family}; n = {n} seeds per "
            "comparison (the seed is the unit; an arm's DS and its reference are paired by seed).")


def ledger_table(ledger: MethodsLedger) -> Table:
    header = ["arm", "n", "DS test accuracy %", "published top-1 %", "worst class %",
              "classes changed vs NDS", "vs KD"]
    for metric in ledger.metrics:
        label = METRIC_LABELS[metric]
        header += [f"{label} %", f"excess {label} %", f"excess {label} DS - NDS, points"]
    individual = any(r.individual is not None for r in ledger.rows)
    header += ["I(f)"] if individual else []
    rows = [("teacher", str(ledger.teacher.n), _pct(ledger.teacher),
             _published(ledger.published_teacher), "-", "-", "-",
             *(["-"] * 3 * len(ledger.metrics)), *(["-"] if individual else [])),
            ("NDS", str(ledger.nds.n), _pct(ledger.nds), _published(ledger.published_nds),
             _pct(ledger.nds_worst), "-", "-", *(["-"] * 3 * len(ledger.metrics)),
             *(["-"] if individual else []))]
    for row in ledger.rows:
        cells = [row.arm.label, str(row.accuracy.n), _pct(row.accuracy),
                 _published(row.published), _pct(row.worst), _changed(row.vs_nds, ledger.alpha),
                 _changed(row.vs_kd, ledger.alpha)]
        for metric in ledger.metrics:
            fair = row.fairness.get(metric)
            cells += ([_pct(fair.value), _pct(fair.excess), _points(fair.change)] if fair
                      else ["-"] * 3)
        if individual:
            cells.append("-" if row.individual is None or math.isnan(row.individual.mean)
                         else f"{row.individual.mean:.4g}")
        rows.append(tuple(cells))
    sources = sorted({p.source for p in [ledger.published_teacher, ledger.published_nds,
                                         *(r.published for r in ledger.rows)] if p})
    published = (" " + MSG_CAVEAT + " Sources: " + "; ".join(
        f"[{k}] {v}" for k, v in _sources(sources)) + "." if sources else
        " Published top-1: none, the design is not the CIFAR-100 benchmark's (dataset "
        "cifar100, one of its five pairs, a method it lists).")
    return Table(tuple(header), tuple(rows),
                 f"Per arm, over seeds (mean +- sd, ddof = 1; each seed's DS averaged over the "
                 f"arm's temperatures). Classes changed: per-class paired t-tests over seeds of "
                 f"the {ledger.normalization}-normalised class accuracy, Holm over the classes, "
                 f"alpha = {ledger.alpha:g}; vs KD: the same against the KD arm's DS. These "
                 f"counts control the error over one arm's classes; the claims below control "
                 f"it over the whole block." + (f" DPD/EOD over '{ledger.attribute}', the "
                 "excess being the value minus a no-group-effect reference; DS - NDS below 0: "
                 "fairer beyond accuracy." if ledger.attribute else "") + published)


def _sources(keys: Sequence[str]) -> list[tuple[str, str]]:
    return [(k, SOURCES[k]) for k in keys]


def verdict_table(ledger: MethodsLedger, provisional: bool) -> Table:
    """Rows: arms; columns: the claim kinds; cells: verdict (p after Holm)."""
    kinds: list[tuple[str, str, str]] = [("paper", "beyond chance", "class change vs NDS"),
                                         ("paper", "class bias", "bias w/o accuracy change")]
    for metric in ledger.metrics:
        kinds.append(("paper", f"{metric} below", f"fairer {METRIC_LABELS[metric]}"))
    for control in (LABEL_SMOOTHING, RANDOM_TEACHER):
        if any(c.kind == f"vs {control}" for c in ledger.claims.claims):
            kinds.append((f"vs {control}", "", f"differs from {CONTROL_NAMES[control]}"))
    rows = []
    for row in ledger.rows:
        cells = [row.arm.label]
        for kind, words, _ in kinds:
            claim = next((c for c in ledger.claims.of(row.arm.method, kind)
                          if words in c.test.claim.lower()), None)
            cells.append("-" if claim is None else _verdict(claim, provisional, p=True))
        rows.append(tuple(cells))
    return Table(("arm", *(k[2] for k in kinds)), tuple(rows),
                 "Verdict (p after Holm over the block). Supported: Holm-adjusted p < alpha; "
                 "not supported: the design can answer and the test does not reject; "
                 "inconclusive: it cannot answer. Every claim is in the claims section.")


def _p(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.3g}"


def claims_table(ledger: MethodsLedger, provisional: bool) -> Table:
    rows = tuple((c.test.claim, c.test.result, _p(c.test.p_value), _p(c.test.p_adjusted),
                  _verdict(c, provisional), c.test.power, c.test.seeds_needed)
                 for c in ledger.claims.claims)
    return Table(("claim", "result", "p", "p after Holm", "verdict", "power",
                  "seeds for 80 % power"), rows,
                 f"Family-wise control: {ledger.claims.family}. Power and MDE at the Holm "
                 f"worst case alpha / {ledger.claims.tested}, from the seeds' own spread (a "
                 "pilot estimate).")


def family_text(ledger: MethodsLedger) -> tuple[str, ...]:
    arms = ", ".join(r.arm.label for r in ledger.rows)
    return (
        f"The family: every claim with a p-value of the {len(ledger.rows)} arms ({arms}): "
        "each arm's paper claims, tested on its own study as its report tests them, and each "
        "arm against the controls the block has (differs from label smoothing, differs from a "
        f"random teacher). {ledger.claims.tested} claims have a p-value; Holm's step-down over "
        f"them at alpha = {ledger.alpha:g} keeps the chance that any claim of a block where "
        "no method does anything is called supported at most alpha, under any dependence "
        "(the arms share their seeds' NDS and teachers). Claims a design cannot answer (one "
        "temperature: no trend) are inconclusive and not in the family. Each arm's own "
        "report keeps its own, smaller family (Holm over that study's claims); a claim "
        "supported there and not here does not survive the block's family, and the verdict "
        "here is the one that controls the error over the methods compared.",
        f"Options: {ledger.normalization} normalisation of class accuracy; class tests paired "
        "over seeds (an arm's DS and the reference of the same seed); per arm the DS of a seed "
        "is its mean over the arm's temperatures; alpha, correction and n as above.",
    )


def citations(ledger: MethodsLedger) -> tuple[str, ...]:
    return tuple(f"{r.arm.label}: {type(r.arm.study.method).citation}" for r in ledger.rows)


def methods_document(ledgers: Sequence[MethodsLedger], out_dir: Path) -> ReportDocument:
    """The methods report of a block (one part per group of its other settings)."""
    first = ledgers[0]
    statuses = [status_line(ledger) for ledger in ledgers]
    provisional = any(late for _, late in statuses)
    runs = [run for ledger in ledgers for run in used_runs(ledger)]
    sections = []
    for ledger in ledgers:
        suffix = ("" if not ledger.settings else
                  " (" + ", ".join(f"{k} = {v}" for k, v in ledger.settings) + ")")
        figure = class_map_figure(ledger, out_dir / _suffixed(METHODS_MAP_FIGURE, ledger))
        sections.append(Section(
            f"What the methods change{suffix}", finding=answer(ledger, provisional),
            tables=(verdict_table(ledger, provisional), ledger_table(ledger)),
            figures=(figure,) if figure is not None else ()))
        sections.append(Section(f"The claims per method{suffix}",
                                paragraphs=family_text(ledger),
                                tables=(claims_table(ledger, provisional),),
                                bullets=citations(ledger)))
    return ReportDocument(
        f"Methods of {first.block}: what each changes, per class and per group",
        tuple(sections), status=" ".join(s for s, _ in statuses), incomplete=provisional,
        notices=flagged_lines(runs, len({r.kdspec_id for r in runs}),
                              arm_namer([r.arm for ledger in ledgers for r in ledger.rows])))


def _suffixed(name: str, ledger: MethodsLedger) -> str:
    if not ledger.settings:
        return name
    tag = "-".join(v for _, v in ledger.settings).replace("/", "_")
    stem, dot, ext = name.rpartition(".")
    return f"{stem}-{tag}{dot}{ext}"


def ledger_csv(ledgers: Sequence[MethodsLedger], path: Path) -> Path:
    """One row per arm and number: block settings, arm, quantity, mean, sd, n."""
    rows: list[Sequence[Cell]] = []
    for ledger in ledgers:
        settings = "; ".join(f"{k}={v}" for k, v in ledger.settings)
        for row in ledger.rows:
            rows += _arm_rows(settings, row, ledger.alpha)
    return write_csv(path, ("settings", "arm", "study", "quantity", "mean", "sd", "n"), rows)


def _arm_rows(settings: str, row: LedgerRow, alpha: float) -> list[Sequence[Cell]]:
    out: list[Sequence[Cell]] = []
    name, study = row.arm.method, row.arm.study.name

    def add(quantity: str, value: Spread) -> None:
        out.append((settings, name, study, quantity, value.mean, value.sd, value.n))

    add("accuracy", row.accuracy)
    add("worst_class_accuracy", row.worst)
    for label, comparison in (("vs_nds", row.vs_nds), ("vs_kd", row.vs_kd)):
        if comparison is not None and not math.isnan(comparison.p_value):
            up, down = comparison.changed(alpha)
            out.append((settings, name, study, f"classes_up_{label}", up, None,
                        len(comparison.seeds)))
            out.append((settings, name, study, f"classes_down_{label}", down, None,
                        len(comparison.seeds)))
    for metric, fair in row.fairness.items():
        add(metric, fair.value)
        add(f"{metric}_excess", fair.excess)
        add(f"{metric}_excess_ds_minus_nds", fair.change)
    if row.individual is not None:
        add("individual_fairness", row.individual)
    if row.published is not None:
        out.append((settings, name, study, "published_top1", row.published.value, None, None))
    return out


def claims_csv(ledgers: Sequence[MethodsLedger], path: Path) -> Path:
    rows: list[Sequence[Cell]] = [
        ("; ".join(f"{k}={v}" for k, v in ledger.settings), c.arm, c.kind, c.test.claim,
         c.test.p_value, c.test.p_adjusted, c.test.verdict, ledger.alpha, "holm",
         ledger.claims.tested, c.flagged)
        for ledger in ledgers for c in ledger.claims.claims]
    return write_csv(path, ("settings", "arm", "kind", "claim", "p", "p_holm", "verdict",
                            "alpha", "correction", "family_size", "flagged_runs"), rows)


def class_map_csv(ledgers: Sequence[MethodsLedger], path: Path) -> Path:
    """Per arm and class: the change vs the NDS, its Holm-adjusted p, whether significant."""
    rows: list[Sequence[Cell]] = []
    for ledger in ledgers:
        settings = "; ".join(f"{k}={v}" for k, v in ledger.settings)
        for row in ledger.rows:
            test = row.vs_nds
            hit = test.significant(ledger.alpha)
            for c, name in enumerate(ledger.class_names):
                rows.append((settings, row.arm.method, name, float(test.change[c]),
                             float(test.adjusted[c]), bool(hit[c]),
                             float(test.change[c]) if hit[c] else None, len(test.seeds)))
    return write_csv(path, ("settings", "arm", "class", "mean_change_vs_nds", "p_holm",
                            "significant", "significant_change", "n"), rows)


def write_methods_report(ledgers: Sequence[MethodsLedger], out_dir: Path) -> tuple[Path, ...]:
    """methods.md, methods.html, the ledger, claims and map CSVs and the map figure(s)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    document = methods_document(ledgers, out_dir)
    markdown = out_dir / METHODS_MD
    markdown.write_text(render_markdown(document), encoding="utf-8")
    html = out_dir / METHODS_HTML
    html.write_text(render_html(document), encoding="utf-8")
    figures = tuple(f.path for s in document.sections for f in s.figures)
    return (markdown, html, ledger_csv(ledgers, out_dir / METHODS_CSV),
            claims_csv(ledgers, out_dir / METHOD_CLAIMS_CSV),
            class_map_csv(ledgers, out_dir / METHODS_MAP_CSV)) + figures
