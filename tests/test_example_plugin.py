"""The example plugin package in examples/: pip-installed (as a user installs it), its dataset
and models run a tiny study through ``kdspec run`` and ``kdspec report``; without it, the same
spec's names are did-you-mean errors, not tracebacks."""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PLUGIN = ROOT / "examples" / "kdspec-example-plugin"

#: The plugin's own example study, made smaller (6 runs of a few seconds each).
TINY_STUDY = """
recipe quick {
  epochs = 2
  batch_size = 64
  optimizer = adam
  lr = 0.003
  weight_decay = 0
  schedule constant {}
}

study stripes_bias {
  dataset stripes { generated_train = 512  generated_test = 200 }
  teacher stripe_cnn { recipe = quick }
  student stripe_mlp { recipe = quick }
  distill { temperatures = [4]  loss = 0.2 * hard + 0.8 * soft }
  fairness { sensitive = tint  multiclass = one_vs_rest }
  seeds = 2
}
"""


def kdspec(args: list[str], *, cwd: Path, site: Path | None,
           timeout: float = 600) -> subprocess.CompletedProcess[str]:
    path = [str(ROOT)] if site is None else [str(site), str(ROOT)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path)}
    return subprocess.run([sys.executable, "-m", "kdspec.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example plugin installed by pip into a folder of its own (put on PYTHONPATH)."""
    target = tmp_path_factory.mktemp("site")
    source = tmp_path_factory.mktemp("source") / PLUGIN.name
    shutil.copytree(PLUGIN, source)  # setuptools builds in the source folder: not in the repo
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                    "--no-build-isolation", "--target", str(target), str(source)],
                   check=True, cwd=source, timeout=300,
                   env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"})
    return target


@pytest.mark.integration
@pytest.mark.extended
def test_example_plugin_runs_a_study_end_to_end(site: Path, tmp_path: Path) -> None:
    listed = kdspec(["list"], cwd=tmp_path, site=site)
    assert listed.returncode == 0, listed.stderr
    for name in ("stripe_cnn", "stripe_mlp", "stripes"):
        line = next(row for row in listed.stdout.splitlines() if row.split()[:1] == [name])
        assert "plugin kdspec-example-plugin" in line

    (tmp_path / "stripes.kdspec").write_text(TINY_STUDY)
    store = f"sqlite:///{tmp_path / 'mlruns.db'}"
    ran = kdspec(["run", "stripes.kdspec", "--tracking-uri", store, "--quiet"], cwd=tmp_path,
                 site=site)
    assert ran.returncode == 0, ran.stderr
    reported = kdspec(["report", "stripes.kdspec", "--tracking-uri", store], cwd=tmp_path,
                      site=site)
    assert reported.returncode == 0, reported.stderr
    folder = tmp_path / "reports" / "stripes" / "stripes_bias"
    report = (folder / "report.md").read_text()
    assert "6 of 6 planned runs were found FINISHED" in report
    assert "Teacher: stripe_cnn" in report and "student: stripe_mlp" in report
    assert "Over 'tint'" in report  # the plugin's sensitive attribute reached the fairness part
    with (folder / "significance.csv").open() as table:
        rows = {row["class_name"] for row in csv.DictReader(table)}
    assert rows == {"horizontal", "vertical", "diagonal", "antidiagonal"}


@pytest.mark.integration
def test_without_the_plugin_its_names_are_did_you_mean_errors(tmp_path: Path) -> None:
    spec = tmp_path / "stripes.kdspec"
    spec.write_text(TINY_STUDY.replace("stripe_mlp", "lenet5"))
    checked = kdspec(["check", str(spec)], cwd=tmp_path, site=None)
    assert checked.returncode == 2
    assert "unknown dataset 'stripes'" in checked.stderr
    assert "unknown architecture 'stripe_cnn'" in checked.stderr
    assert "help:" in checked.stderr and "Traceback" not in checked.stderr
