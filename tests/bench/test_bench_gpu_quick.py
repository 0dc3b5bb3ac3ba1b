"""`make bench-gpu`'s study runs end to end on a CPU in its quick form, so the GPU run is one
command when a device comes: synthetic CIFAR-shaped data, ResNet-56 -> ResNet-20, kdspec in
bf16 against the plain fp32 loop, the table with both times and their ratio."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.integration
@pytest.mark.extended  # CI also runs it as make gpu-check GPU_CHECK_ARGS=--cpu
def test_the_paper_shaped_benchmark_runs_on_cpu_quick(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bench_distillation.py"), "--paper-shaped",
         "--device", "cpu", "--quick", "--workers", "0", "--workdir", str(tmp_path)],
        capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert "synthetic (128 train / 64 test), teacher resnet56, student resnet20" in out
    assert "the baseline in fp32" in out
    # bf16 named by --paper-shaped, so every role trains in it, whatever the CPU
    assert "kdspec: precision = bf16, compile = auto -> trained teachers bf16, NDS bf16, DS bf16" \
        in out
    assert "whole study (s)" in out and "x" in out.split("whole study (s)")[1].splitlines()[0]
    spec = (tmp_path / "bench.kdspec").read_text()
    assert "dataset synthetic { generated_train = 128  generated_test = 64 }" in spec
