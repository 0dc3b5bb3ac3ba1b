"""``kdspec submit``: the array script of a plan (one task per shard, requeue, append, the
warning signal passed on to kdspec, the task requeueing itself after it), checked as text, as
bash, and with stand-ins for sbatch, scontrol and kdspec; the checks made from the login node
(a sqlite store for several tasks, the store and the data, the cost per shard against the time
limit); the real Slurm runs it in tests/cluster."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kdspec.cli import main
from kdspec.commands.submit import ArrayJob, batch_script
from kdspec.commands.submit_checks import shard_costs, slurm_seconds
from kdspec.dsl import load_plan
from kdspec.errors import KdspecError
from tests.mlflow_server import free_port

REPO = Path(__file__).resolve().parents[2]
QUICKSTART = REPO / "specs" / "quickstart.kdspec"
CIFAR10 = REPO / "specs" / "cifar10.kdspec"
DIGITS = """
recipe r { epochs = 1  batch_size = 32  lr = 0.05 }
study small {
  dataset digits { }
  teacher lenet5 { recipe = r }
  student lenet5 { recipe = r }
  distill { temperatures = [2]  loss = 0.2 * hard + 0.8 * soft }
  seeds = 2
}
"""


def test_dry_run_prints_the_array_script(capsys: pytest.CaptureFixture[str],
                                         tmp_path: Path) -> None:
    assert main(["submit", str(QUICKSTART), "--shards", "4", "--tracking-uri",
                 "http://mlflow.lab:5000", "--gpus", "1", "--mem", "32G", "--time", "2:00:00",
                 "--skip-checks", "--dry-run"]) == 0
    script = capsys.readouterr().out
    for line in ("#SBATCH --array=0-3", "#SBATCH --requeue", "#SBATCH --open-mode=append",
                 "#SBATCH --signal=B:USR1@120", "#SBATCH --gres=gpu:1", "#SBATCH --mem=32G",
                 "#SBATCH --time=2:00:00", "export MLFLOW_TRACKING_URI=http://mlflow.lab:5000",
                 '--shard "${SLURM_ARRAY_TASK_ID}/4"', "sbatch --array=k <this file>"):
        assert line in script, line
    checked = subprocess.run(["bash", "-n"], input=script, text=True, capture_output=True)
    assert checked.returncode == 0, checked.stderr
    assert not (tmp_path / ".kdspec").exists()


def test_submit_writes_the_script_and_hands_it_to_sbatch(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "sbatch"
    fake.write_text(f"#!/bin/sh\necho \"$@\" > {tmp_path / 'sbatch-args'}\n"
                    "echo 'Submitted batch job 4242'\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.chdir(tmp_path)
    assert main(["submit", str(QUICKSTART), "--shards", "2", "--submit", "--skip-checks",
                 "--allow-sqlite"]) == 0
    script = tmp_path / ".kdspec" / "submit" / "quickstart.sbatch"
    assert script.exists() and (tmp_path / ".kdspec" / "slurm").is_dir()
    assert (tmp_path / "sbatch-args").read_text().strip() == str(script.relative_to(tmp_path))
    assert "Submitted batch job 4242" in capsys.readouterr().out


def test_the_warning_signal_reaches_kdspec_and_its_exit_code_is_the_tasks(
        tmp_path: Path) -> None:
    """The script under bash with a stand-in kdspec: USR1 sent to the batch shell (what
    --signal=B:USR1 does) is passed on; the shell waits for kdspec and exits with its code."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    marker = tmp_path / "kdspec-args"
    fake = bin_dir / "kdspec"
    fake.write_text(
        f"#!{sys.executable}\n"
        "import signal, sys, time, pathlib\n"
        f"pathlib.Path({str(marker)!r}).write_text(' '.join(sys.argv[1:]))\n"
        "def stop(number, frame):\n"
        "    time.sleep(0.5)  # releasing its runs\n"
        "    sys.exit(128 + number)\n"
        "signal.signal(signal.SIGUSR1, stop)\n"
        "time.sleep(60)\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    script = tmp_path / "job.sbatch"
    script.write_text(batch_script(ArrayJob(spec=QUICKSTART, shards=3, workdir=tmp_path,
                                            job_name="t", time="1:00:00", cpus=1,
                                            max_requeues=0)))
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
               SLURM_ARRAY_TASK_ID="2", SLURM_ARRAY_JOB_ID="7", SLURM_JOB_ID="8")
    shell = subprocess.Popen(["bash", str(script)], env=env, stdout=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 20
    while not marker.exists():
        assert time.monotonic() < deadline and shell.poll() is None
        time.sleep(0.05)
    shell.send_signal(signal.SIGUSR1)
    out, _ = shell.communicate(timeout=20)
    assert shell.returncode == 138, out
    assert marker.read_text() == f"run {QUICKSTART} --shard 2/3 --quiet"
    assert "exited 138" in out


def test_several_tasks_on_a_sqlite_store_are_refused_with_the_reason(
        capsys: pytest.CaptureFixture[str], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert main(["submit", str(CIFAR10), "--shards", "4", "--gpus", "1", "--time", "2:00:00",
                 "--dry-run"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert ("4 array tasks would share the store sqlite:///mlruns.db: a sqlite store lives in "
            "files on one disk") in captured.err
    assert "--tracking-uri http://HOST:5000" in captured.err and "--allow-sqlite" in captured.err
    assert main(["submit", str(CIFAR10), "--shards", "4", "--gpus", "1", "--time", "2:00:00",
                 "--dry-run", "--allow-sqlite", "--skip-checks"]) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith("#!/bin/bash")
    assert ("warning: 4 array tasks share the sqlite store sqlite:///mlruns.db (--allow-sqlite)"
            in captured.err)


def test_one_task_on_sqlite_is_fine(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    spec = tmp_path / "small.kdspec"
    spec.write_text(DIGITS)
    assert main(["submit", str(spec), "--shards", "1", "--dry-run"]) == 0
    captured = capsys.readouterr()
    assert captured.err == "" and "#SBATCH --array=0-0" in captured.out
    assert not (tmp_path / "mlruns.db").exists()  # checked, never created


def test_the_store_and_the_data_are_checked_from_the_login_node(
        capsys: pytest.CaptureFixture[str], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    spec = tmp_path / "small.kdspec"
    spec.write_text(DIGITS)
    dead = f"http://127.0.0.1:{free_port()}"
    assert main(["submit", str(spec), "--shards", "2", "--tracking-uri", dead,
                 "--dry-run"]) == 1
    err = capsys.readouterr().err
    assert f"cannot reach the MLflow tracking server at {dead}" in err
    assert "checked from this machine; --skip-checks" in err
    cifar = tmp_path / "cifar.kdspec"
    cifar.write_text(DIGITS.replace("digits { }", 'cifar10 { root = "nowhere" }')
                     .replace("lenet5", "resnet20"))
    assert main(["submit", str(cifar), "--shards", "1", "--dry-run"]) == 1
    err = capsys.readouterr().err
    assert "cifar10: data not found at" in err and "nowhere" in err
    assert main(["submit", str(cifar), "--shards", "1", "--dry-run", "--skip-checks"]) == 0


def test_a_plan_longer_than_the_time_limit_is_a_warning_with_the_numbers(
        capsys: pytest.CaptureFixture[str], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["submit", str(CIFAR10), "--shards", "4", "--gpus", "1", "--time", "2:00:00",
                 "--tracking-uri", "http://mlflow.lab:5000", "--skip-checks",
                 "--dry-run"]) == 0
    err = capsys.readouterr().err
    cost = shard_costs(load_plan(CIFAR10), 4)
    assert 69 < cost.total_hours < 70 and len(cost.shard_hours) == 4
    assert sum(cost.shard_hours) == pytest.approx(cost.total_hours)
    largest = max(cost.shard_hours)
    assert (f"warning: the plan is about 69.2 GPU-hours (at 2 TFLOP/s effective, as `kdspec "
            f"plan` estimates); its largest shard about {largest:.3g} h, over --time 2:00:00 "
            "(1:58:00 of training before the stop signal)") in err
    assert "requeues itself to resume" in err
    needed = -(-largest * 3600 // (7200 - 120))
    assert f"needs about {needed:.0f} allocations" in err
    assert "more than the 10 requeues a task may make" in err  # 27 h in 2 h allocations
    assert main(["submit", str(CIFAR10), "--shards", "4", "--gpus", "1", "--time",
                 "2-00:00:00", "--tracking-uri", "http://mlflow.lab:5000", "--skip-checks",
                 "--dry-run"]) == 0
    assert capsys.readouterr().err == ""  # two days fit


@pytest.mark.parametrize(("text", "seconds"), [
    ("90", 5400), ("1:30", 90), ("2:00:00", 7200), ("1-12", 129600), ("1-00:30", 88200),
    ("2-01:02:03", 176523), ("UNLIMITED", None)])
def test_slurm_time_limits_are_read_as_slurm_reads_them(text: str,
                                                         seconds: int | None) -> None:
    assert slurm_seconds(text) == seconds


def test_a_time_slurm_would_refuse_stops_submit() -> None:
    with pytest.raises(KdspecError, match="is not a Slurm time"):
        slurm_seconds("2h")


def test_the_script_requeues_itself_after_the_warning_and_forwards_the_selection() -> None:
    script = batch_script(ArrayJob(spec=QUICKSTART, shards=2, workdir=Path("/lab/work"),
                                   job_name="t", time="1:00:00", cpus=1, max_requeues=7,
                                   overrides=("seeds=2", "recipe.quick.epochs=1"),
                                   studies=("fashion_mnist_classes",)))
    assert ("--quiet --set seeds=2 --set recipe.quick.epochs=1 --study fashion_mnist_classes"
            in script)
    assert 'if [ "$status" -eq 138 ]; then' in script
    assert 'if [ "$restarts" -lt 7 ]; then' in script
    assert 'scontrol requeue "${SLURM_JOB_ID}" && exit 0' in script
    with pytest.raises(KdspecError, match="--max-requeues must be 0 or more"):
        batch_script(ArrayJob(spec=QUICKSTART, shards=2, workdir=Path("/lab/work"),
                              job_name="t", time="1:00:00", cpus=1, max_requeues=-1))


def _stand_ins(tmp_path: Path, exit_code: int) -> tuple[Path, Path]:
    """A kdspec that exits ``exit_code`` at once and an scontrol that records its arguments."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "scontrol-args"
    for name, body in (("kdspec", f"exit {exit_code}"),
                       ("scontrol", f'echo "$@" >> {calls}')):
        tool = bin_dir / name
        tool.write_text(f"#!/bin/sh\n{body}\n")
        tool.chmod(tool.stat().st_mode | stat.S_IEXEC)
    return bin_dir, calls


@pytest.mark.parametrize(("exit_code", "restarts", "requeued", "said"), [
    (138, "0", True, "requeueing (requeue 1 of at most 3)"),
    (138, "2", True, "requeueing (requeue 3 of at most 3)"),
    (138, "3", False, "not requeued: 3 requeues made (--max-requeues)"),
    (0, "1", False, "exited 0"),
    (1, "0", False, "kdspec run failed (exit 1): its error is the line above; not requeued"),
    (143, "0", False, "exited 143"),
    (138, None, False, "not under Slurm (no SLURM_JOB_ID): not requeued"),
])
def test_the_task_requeues_itself_only_when_the_warning_stopped_it(
        tmp_path: Path, exit_code: int, restarts: str | None, requeued: bool,
        said: str) -> None:
    bin_dir, calls = _stand_ins(tmp_path, exit_code)
    script = tmp_path / "job.sbatch"
    script.write_text(batch_script(ArrayJob(spec=QUICKSTART, shards=3, workdir=tmp_path,
                                            job_name="t", time="1:00:00", cpus=1,
                                            max_requeues=3)))
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
               SLURM_ARRAY_TASK_ID="1", SLURM_ARRAY_JOB_ID="7", SLURM_JOB_ID="9",
               SLURM_RESTART_COUNT=restarts or "0")
    if restarts is None:
        del env["SLURM_JOB_ID"]
    done = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True,
                          timeout=30)
    assert said in done.stdout
    if requeued:
        assert calls.read_text() == "requeue 9\n" and done.returncode == 0
    else:
        assert not calls.exists() and done.returncode == exit_code


def test_a_task_without_its_environment_stops_at_once_saying_so(tmp_path: Path) -> None:
    script = tmp_path / "job.sbatch"
    script.write_text(batch_script(ArrayJob(spec=QUICKSTART, shards=1, workdir=tmp_path,
                                            job_name="t", time="1:00:00", cpus=1,
                                            venv=tmp_path / "gone")))
    env = dict(os.environ, SLURM_ARRAY_TASK_ID="0", SLURM_JOB_ID="3")
    done = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True,
                          timeout=30)
    assert done.returncode == 1
    assert f"kdspec task 0: cannot activate {tmp_path / 'gone'} on" in done.stdout
