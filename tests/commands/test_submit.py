"""``kdspec submit``: the array script of a plan (one task per shard, requeue, append, the
warning signal passed on to kdspec), checked as text, as bash, and with stand-ins for sbatch
and kdspec; the real Slurm runs it in tests/cluster."""

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

REPO = Path(__file__).resolve().parents[2]
QUICKSTART = REPO / "specs" / "quickstart.kdspec"


def test_dry_run_prints_the_array_script(capsys: pytest.CaptureFixture[str],
                                         tmp_path: Path) -> None:
    assert main(["submit", str(QUICKSTART), "--shards", "4", "--tracking-uri",
                 "http://mlflow.lab:5000", "--gpus", "1", "--mem", "32G", "--time", "2:00:00",
                 "--dry-run"]) == 0
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
    assert main(["submit", str(QUICKSTART), "--shards", "2", "--submit"]) == 0
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
                                            job_name="t", time="1:00:00", cpus=1)))
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
               SLURM_ARRAY_TASK_ID="2", SLURM_ARRAY_JOB_ID="7")
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
