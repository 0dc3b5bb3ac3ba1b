"""The tables ``kdspec run`` prints: what ``--dry-run`` would do, and the end-of-run summary."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING

from kdspec.plan import Run

if TYPE_CHECKING:  # the runtime (torch) is imported only when a plan runs
    from kdspec.runtime.executor import Preparation
    from kdspec.runtime.lockstep_group import Outcome


def _temperature(run: Run) -> str:
    return "-" if run.temperature is None else f"{run.temperature:g}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(c)) for c in column) for column in zip(header, *rows, strict=False)]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
             for row in (header, *rows)]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines) + "\n"


def dry_run_table(prep: Preparation, *, shard: str) -> str:
    """One row per run: id, role, arch, seed, T, and train / reuse / resume at epoch k /
    skip (why), plus the lockstep group size of each trained distilled run."""
    rows: list[list[str]] = []
    group_size = {run.id: len(group.runs) for group in prep.groups for run in group.runs}
    for action in prep.actions:
        run = action.run
        what = action.describe()
        if action.kind != "reuse" and group_size.get(run.id, 1) > 1:
            what += f" (lockstep x{group_size[run.id]})"
        rows.append([run.id, run.role, run.arch, str(run.seed), _temperature(run), what])
    for rid, reason in prep.blocked.items():
        rows.append([rid, "distilled", "", "", "", f"skip: {reason}"])
    counts = Counter(a.kind for a in prep.actions)
    elsewhere = (f", {counts['elsewhere']} running elsewhere" if counts["elsewhere"] else "")
    footer = (f"shard {shard}: {len(prep.actions) + len(prep.blocked)} runs: "
              f"{counts['train']} to train, {counts['resume']} to resume, "
              f"{counts['reuse']} to reuse{elsewhere}, {len(prep.blocked)} blocked\n")
    return _table(["run", "role", "arch", "seed", "T", "action"], rows) + footer


def summary_table(outcomes: Sequence[Outcome]) -> str:
    """One row per run: status (finished / reused / failed / skipped / elsewhere /
    interrupted), test accuracy (a reused run's stored one), MLflow run id, and the reason of
    a failure or an interruption and a run's flags; then the counts."""
    rows = []
    for o in outcomes:
        acc = "" if o.test_acc is None else f"{o.test_acc:.4f}"
        detail = "; ".join(part for part in (o.reason or o.note, *o.flags) if part)
        rows.append([o.run.id, o.run.role, str(o.run.seed), _temperature(o.run), o.status, acc,
                     o.mlflow_id, detail])
    counts = Counter(o.status for o in outcomes)
    elsewhere = (f", {counts['elsewhere']} running elsewhere" if counts["elsewhere"] else "")
    interrupted = (f", {counts['interrupted']} interrupted" if counts["interrupted"] else "")
    flagged = sum(1 for o in outcomes if o.flags)
    suspect = (f"; {flagged} flagged (at chance, or a loss that never fell: see detail)"
               if flagged else "")
    footer = (f"{counts['finished']} finished, {counts['reused']} reused{elsewhere}, "
              f"{counts['failed']} failed, {counts['skipped']} skipped{interrupted}{suspect}\n")
    header = ["run", "role", "seed", "T", "status", "test_acc", "mlflow_run", "detail"]
    return _table(header, rows) + footer
