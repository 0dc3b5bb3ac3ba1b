"""A report of a study whose runs are still training reads as one: its first line says how many
runs are finished, training, interrupted or not started; its verdicts are provisional; `kdspec
report` exits 3; and it is logged under ``report-partial/``, never over a complete report."""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from kdspec.analysis.study_progress import StudyProgress, blocked_by_teacher, report_state
from kdspec.cli import main
from kdspec.commands.report import EXIT_INCOMPLETE
from kdspec.plan import Plan, Study
from kdspec.tracking import schema
from kdspec.tracking.leases import Lease, now_ms
from kdspec.tracking.ownership import run_state
from kdspec.tracking.run_store import StoredRun
from tests.analysis.conftest import small_study_plan
from tests.analysis.mlflow_store import (
    experiment_for,
    log_parent,
    log_plan_run,
    open_client,
    write_predictions,
)
from tests.analysis.synthetic import Predictions, synthetic_predictions

HEADLINE = "Incomplete: 8 of 12 runs finished: 1 training, 1 interrupted or failed, 2 not started"


def _stored(status: str, *, heartbeat_age_s: float | None = None, start: int = 0) -> StoredRun:
    at = now_ms()
    lease = (Lease() if heartbeat_age_s is None else
             Lease(owner="node7:4242:beef", claimed_ms=at - 5000,
                   heartbeat_ms=at - int(1000 * heartbeat_age_s)))
    return StoredRun(mlflow_id=f"m{start}", kdspec_id="k", status=status, epochs_done=0,
                     start_time=start, experiment_id="1", failure="", lease=lease)


def test_a_run_state_is_the_rule_kdspec_run_decides_with() -> None:
    at = now_ms()
    run = small_study_plan().runs[0]

    def state(*stored: StoredRun) -> str:
        return report_state(run_state(run, list(stored), at_ms=at))

    assert state() == "fresh"
    assert state(_stored("RUNNING", heartbeat_age_s=10)) == "live"
    assert state(_stored("RUNNING", heartbeat_age_s=900)) == "resumable"
    assert state(_stored("KILLED")) == "resumable"  # tried before: not "not started"
    assert state(_stored("FAILED")) == "resumable"
    assert state(_stored("KILLED"), _stored("FINISHED", start=1)) == "finished"


def test_a_student_whose_teacher_has_not_finished_is_blocked() -> None:
    plan = small_study_plan()
    study = plan.studies[0]
    teacher = plan.runs_of(study, "teacher")[0]
    students = [r for r in plan.runs_of(study, "distilled") if r.teacher_id == teacher.id]
    states = {r: "finished" for r in study.run_ids}
    states.update({teacher.id: "live", **{r.id: "fresh" for r in students}})
    kinds = blocked_by_teacher(states, plan, study.run_ids)  # type: ignore[arg-type]
    assert [k for r, k in zip(study.run_ids, kinds, strict=True)
            if r in {s.id for s in students}] == ["blocked"] * len(students)


def test_the_headline_counts_runs_by_state() -> None:
    progress = StudyProgress.of(["finished"] * 12 + ["live"] * 3 + ["fresh"] * 40)
    assert progress.headline() == "Incomplete: 12 of 55 runs finished: 3 training, 40 not started"
    assert not progress.complete
    done = StudyProgress.of(["finished"] * 55)
    assert done.complete and done.headline() == "Complete: all 55 runs finished"
    unusable = StudyProgress.of(["finished"] * 5, unusable=1)
    assert not unusable.complete
    assert unusable.headline() == "Incomplete: 5 of 5 runs finished: 1 finished but unusable"


@dataclass(frozen=True)
class PartialStore:
    uri: str
    root: Path
    plan: Plan
    study: Study
    plan_json: Path
    predictions: Predictions
    parent_run_id: str
    experiment_id: str
    #: kdspec id -> role of the runs still to finish: (live, killed, missing, missing).
    unfinished: tuple[str, ...]


def _partial_store(root: Path) -> PartialStore:
    """Teachers, NDS and the DS of seed 0 FINISHED; DS seed 1 T=2 training (RUNNING, its lease
    renewed 10 s ago) and T=4 KILLED (interrupted); seed 2's DS not started."""
    plan = small_study_plan("partial")
    study = plan.studies[0]
    client, uri = open_client(root)
    predictions = synthetic_predictions(plan, study, n_test=600)
    experiment = experiment_for(client, study.tracking.experiment, root / "artifacts")
    parent = log_parent(client, experiment, study, plan)
    distilled = {(r.seed, r.temperature): r.id for r in plan.runs_of(study, "distilled")}
    live, killed = distilled[(1, 2.0)], distilled[(1, 4.0)]
    missing = (distilled[(2, 2.0)], distilled[(2, 4.0)])
    for run_id in study.run_ids:
        if run_id in missing:
            continue
        y_true, y_pred, attributes = predictions[run_id]
        path = write_predictions(root / f"{run_id}.npz", y_true, y_pred, attributes)
        status = {live: "RUNNING", killed: "KILLED"}.get(run_id, "FINISHED")
        mlflow_id = log_plan_run(client, experiment, plan.run(run_id), parent_run_id=parent,
                                 predictions=None if status != "FINISHED" else path,
                                 status=status)
        if run_id == live:
            at = str(now_ms() - 10_000)
            client.set_tag(mlflow_id, schema.TAG_LEASE_OWNER, "node7:4242:beef")
            client.set_tag(mlflow_id, schema.TAG_LEASE_CLAIMED, at)
            client.set_tag(mlflow_id, schema.TAG_LEASE_HEARTBEAT, at)
    plan_json = root / "plan.json"
    plan_json.write_text(plan.to_json())
    return PartialStore(uri, root, plan, study, plan_json, predictions, parent, experiment,
                        (live, killed, *missing))


def _report(store: PartialStore, out: Path, *extra: str) -> tuple[int, str]:
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        code = main(["report", str(store.plan_json), "--tracking-uri", store.uri, "--out",
                     str(out), *extra])
    return code, stderr.getvalue()


@pytest.fixture(scope="module")
def partial(tmp_path_factory: pytest.TempPathFactory) -> tuple[PartialStore, Path, int, str]:
    store = _partial_store(tmp_path_factory.mktemp("partial-store"))
    out = tmp_path_factory.mktemp("partial-report")
    code, err = _report(store, out, "--no-log")
    return store, out, code, err


def test_the_first_line_says_the_study_is_incomplete_by_state(
        partial: tuple[PartialStore, Path, int, str]) -> None:
    _, out, code, err = partial
    assert code == EXIT_INCOMPLETE == 3
    first = (out / "report.md").read_text().splitlines()[0]
    assert first == (f"**{HEADLINE}. Every verdict in this report is provisional; report "
                     "again when the study has finished.**")
    html = (out / "report.html").read_text()
    body = html[html.index("<body>") + len("<body>"):]
    assert body.startswith(f'<p class="status incomplete" role="status">{HEADLINE}.')
    assert f"kdspec report: partial: {HEADLINE.lower()}; verdicts provisional:" in err


def test_verdicts_of_a_partial_study_are_provisional_not_final(
        partial: tuple[PartialStore, Path, int, str]) -> None:
    text = (partial[1] / "report.md").read_text()
    first_screen = text[:text.index("## Setup")]
    assert "Nothing the paper claims is supported" not in first_screen
    assert "little power" not in first_screen
    assert (f"**Main finding.** {HEADLINE}. Every verdict here is provisional: it rests on the "
            "runs finished so far") in first_screen
    table = [line for line in first_screen.splitlines() if line.startswith("| ")][1:]
    verdicts = [line.split(" | ")[1] for line in table if not line.startswith("|---")]
    assert verdicts and all(v.startswith("provisional: ") for v in verdicts), verdicts
    claims = text[text.index("## The paper's claims"):]
    assert claims.split("**Main finding.** ")[1].startswith(f"Provisional ({HEADLINE}): ")
    runs = text[text.index("## Runs"):]
    assert f"**Main finding.** {HEADLINE}. 8 of 12 planned runs" in runs


def test_a_complete_study_says_so_first_and_keeps_final_verdicts(
        complete_report: tuple[Path, int, str, str]) -> None:
    out, code, _, _ = complete_report
    assert code == 0
    text = (out / "report.md").read_text()
    assert text.splitlines()[0] == "**Complete: all 12 runs finished.**"
    assert "provisional" not in text.lower()


@pytest.mark.integration
def test_a_partial_report_never_replaces_a_complete_one_in_mlflow(tmp_path: Path) -> None:
    """Partial: logged under report-partial/ with the state in a tag, no metric. Complete:
    report/, metrics, the tag removed. A run deleted later makes the study partial again: the
    complete report and its metrics stay as they were."""
    store = _partial_store(tmp_path / "store")
    client = MlflowClient(tracking_uri=store.uri)
    parent = store.parent_run_id

    def listed(folder: str) -> set[str]:
        return {Path(a.path).name for a in client.list_artifacts(parent, folder)}

    code, err = _report(store, tmp_path / "first")
    assert code == 3 and f"logged to MLflow run {parent} (report-partial/)" in err
    run = client.get_run(parent)
    assert run.data.tags[schema.TAG_REPORT_PARTIAL] == HEADLINE
    assert "report.md" in listed("report-partial") and not listed("report")
    assert not run.data.metrics  # a partial study's numbers are not its results

    for run_id in store.unfinished:  # the study finishes
        y_true, y_pred, attributes = store.predictions[run_id]
        path = write_predictions(tmp_path / f"{run_id}.npz", y_true, y_pred, attributes)
        log_plan_run(client, store.experiment_id, store.plan.run(run_id), parent_run_id=parent,
                     predictions=path)
    code, _ = _report(store, tmp_path / "complete")
    assert code == 0
    run = client.get_run(parent)
    assert schema.TAG_REPORT_PARTIAL not in run.data.tags
    assert "report.md" in listed("report") and "n_sc_T2" in run.data.metrics
    complete_md = Path(client.download_artifacts(parent, "report/report.md",
                                                 str(tmp_path / "dl1"))).read_text()
    assert complete_md.startswith("**Complete: all 12 runs finished.**")
    metrics = dict(run.data.metrics)

    teacher = next(r for r in client.search_runs([store.experiment_id])
                   if r.data.tags.get(schema.TAG_KIND) == schema.KIND_RUN
                   and r.data.tags.get(schema.TAG_ROLE) == "teacher")
    client.delete_run(teacher.info.run_id)
    code, _ = _report(store, tmp_path / "again")
    assert code == 3
    run = client.get_run(parent)
    assert run.data.tags[schema.TAG_REPORT_PARTIAL].startswith("Incomplete: 11 of 12 runs")
    assert dict(run.data.metrics) == metrics
    kept = Path(client.download_artifacts(parent, "report/report.md",
                                          str(tmp_path / "dl2"))).read_text()
    assert kept == complete_md
    partial_md = Path(client.download_artifacts(parent, "report-partial/report.md",
                                                str(tmp_path / "dl3"))).read_text()
    assert partial_md.startswith("**Incomplete: 11 of 12 runs finished: 1 not started.")
