"""`make gpu-check`: everything kdspec needs to show on a GPU machine, in one command.

1. the machine: torch, CUDA, the card, the driver;
2. the GPU suite (``tests/gpu``): every training path against fp32 eager, a compiled teacher
   against an eager one, lockstep = solo, cache = live, determinism, a group's peak memory;
3. the benchmark: ``bench_distillation.py --paper-shaped --fair`` (kdspec against the plain
   fp32 loop, the loop in kdspec's precision, and that loop on kdspec's data path);
4. a short study end to end through ``kdspec run`` and ``kdspec report`` into a fresh store;

then one summary, ``summary.md`` and ``summary.json``, in ``--out``. It runs nothing that needs
the network: on a GPU machine without kdspec's dependencies, install the wheels fetched
beforehand (docs/speed.md, "Checking a GPU machine"). Modes:

    python bench/gpu_check.py                 # on CUDA, under 8 minutes on an H200
    python bench/gpu_check.py --quick         # on CUDA, under 3 minutes
    python bench/gpu_check.py --cpu           # the same steps on the CPU, small (CI runs it)

Exit status 0 when every step passed (skips named in the summary), 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ElementTree
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

#: The end-to-end study: small enough for the CPU mode, real enough to touch every stage. Its
#: teacher trains one or two epochs on a few hundred synthetic images and may well sit at
#: chance, which `kdspec run` refuses for a teacher unless the spec accepts it: the step checks
#: that every stage runs on the device, not what the teacher learns.
E2E_SPEC = """
# Written by bench/gpu_check.py: the end-to-end step (kdspec run, then kdspec report).
study gpu_check {{
  dataset synthetic {{ generated_train = {train}  generated_test = {test} }}
  teacher {teacher} {{ epochs = {epochs}  batch_size = 128  lr = 0.1  accept_chance = true }}
  student lenet5 {{ epochs = {epochs}  batch_size = 128  optimizer = adam  lr = 0.002 }}
  distill {{ temperatures = [2, 4]  loss = 0.1 * hard + 0.9 * soft }}
  seeds = 2
  tracking {{ experiment = "kdspec-gpu-check" }}
}}
"""


@dataclass
class Step:
    """One step of the check: what ran, how long, whether it passed, and its figures."""

    name: str
    command: list[str]
    seconds: float = 0.0
    passed: bool = False
    detail: str = ""
    figures: dict[str, object] = field(default_factory=dict)


def run_step(step: Step, *, env: dict[str, str], cwd: Path, log: Path,
             timeout_s: float) -> Step:
    """Run ``step.command``, its output to ``log`` and to the console, timed."""
    print(f"== {step.name}: {' '.join(step.command)}", flush=True)
    start = time.perf_counter()
    with log.open("w") as handle:
        try:
            done = subprocess.run(step.command, cwd=cwd, env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True, timeout=timeout_s,
                                  check=False)
            output, code = done.stdout, done.returncode
        except subprocess.TimeoutExpired as expired:
            output = expired.stdout if isinstance(expired.stdout, str) else ""
            code = -1
            output += f"\n(stopped after {timeout_s:.0f} s)"
        handle.write(output)
    sys.stdout.write(output[-4000:])
    step.seconds = time.perf_counter() - start
    step.passed = code == 0
    if not step.passed:
        step.detail = f"exit code {code}; last lines:\n" + "\n".join(output.splitlines()[-15:])
    return step


def machine() -> dict[str, object]:
    """What the check ran on."""
    import torch

    info: dict[str, object] = {
        "host": platform.node(), "python": platform.python_version(),
        "torch": torch.__version__, "torch_cuda": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(), "cpu_threads": torch.get_num_threads(),
    }
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info["device"] = props.name
        info["device_memory_gib"] = round(props.total_memory / 2**30, 1)
    smi = shutil.which("nvidia-smi")
    if smi:
        done = subprocess.run([smi, "--query-gpu=driver_version", "--format=csv,noheader"],
                              capture_output=True, text=True, check=False)
        info["driver"] = done.stdout.strip()
    return info


def suite_figures(junit: Path) -> dict[str, object]:
    """Passed, failed and skipped tests of the GPU suite, each with its time."""
    if not junit.is_file():
        return {}
    cases = []
    for case in ElementTree.parse(junit).getroot().iter("testcase"):
        outcome = "passed"
        for child in case:
            if child.tag in ("failure", "error"):
                outcome = "failed"
            elif child.tag == "skipped":
                outcome = "skipped: " + (child.get("message") or "")
        cases.append({"test": f"{case.get('classname')}::{case.get('name')}",
                      "seconds": float(case.get("time") or 0), "outcome": outcome})
    return {"tests": cases,
            "passed": sum(c["outcome"] == "passed" for c in cases),
            "failed": sum(c["outcome"] == "failed" for c in cases),
            "skipped": sum(str(c["outcome"]).startswith("skipped") for c in cases)}


def bench_command(args: argparse.Namespace, json_out: Path) -> list[str]:
    command = [sys.executable, str(REPO / "bench" / "bench_distillation.py"), "--paper-shaped",
               "--fair", "--device", args.device, "--json", str(json_out)]
    if args.device == "cpu" or args.quick:
        command.append("--quick")
        command += ["--epochs", "2"]  # two epochs, so warm-up is measured apart
    else:  # full size takes ~10 min on an H200 with the fair variants: a 20,000-image study
        command += ["--train-subset", "20000", "--test-subset", "4000", "--epochs", "2",
                    "--workers", "8"]
    return command


def e2e_steps(args: argparse.Namespace, workdir: Path) -> tuple[Step, Step, Path]:
    small = args.device == "cpu" or args.quick
    spec = workdir / "gpu_check.kdspec"
    spec.write_text(E2E_SPEC.format(train=512 if small else 10_000, test=256 if small else 2000,
                                    teacher="resnet20" if small else "resnet56",
                                    epochs=1 if small else 2))
    uri = f"sqlite:///{workdir / 'gpu_check.db'}"
    extra = ["--cpu"] if args.device == "cpu" else []
    run = Step("kdspec run", [sys.executable, "-m", "kdspec.cli", "run", str(spec),
                              "--tracking-uri", uri, "--log-dir", str(workdir / "logs"),
                              "--cache-dir", str(workdir / "cache"), *extra])
    report = Step("kdspec report", [sys.executable, "-m", "kdspec.cli", "report", str(spec),
                                    "--tracking-uri", uri, "--out", str(workdir / "report")])
    return run, report, workdir / "report"


def summary_markdown(info: dict[str, object], steps: list[Step], args: argparse.Namespace
                     ) -> str:
    mode = "cpu" if args.device == "cpu" else ("cuda --quick" if args.quick else "cuda")
    lines = [f"# kdspec gpu-check ({mode})", "",
             "Machine: " + ", ".join(f"{k} {v}" for k, v in info.items()), "",
             "| step | result | seconds |", "|---|---|---|"]
    for step in steps:
        lines.append(f"| {step.name} | {'passed' if step.passed else 'FAILED'} | "
                     f"{step.seconds:.0f} |")
    suite = next((s for s in steps if s.name == "GPU suite"), None)
    if suite and suite.figures.get("tests"):
        lines += ["", "GPU suite:", "", "| test | outcome | s |", "|---|---|---|"]
        for case in suite.figures["tests"]:  # type: ignore[attr-defined]
            lines.append(f"| {case['test']} | {case['outcome']} | {case['seconds']:.1f} |")
    bench = next((s for s in steps if s.name == "benchmark"), None)
    if bench and bench.figures:
        fig = bench.figures
        lines += ["", "Benchmark (paper-shaped study; ratio = plain loop time / kdspec time):",
                  "", "| plain loop | whole study ratio | distillation ratio |", "|---|---|---|",
                  f"| fp32, DataLoader | {fig.get('ratio_whole', float('nan')):.2f}x | "
                  f"{fig.get('ratio_distillation', float('nan')):.2f}x |"]
        fair = fig.get("fair")
        if isinstance(fair, dict):
            for name, row in fair["variants"].items():
                lines.append(f"| {name} | {row['ratio_whole']:.2f}x | "
                             f"{row['ratio_distillation']:.2f}x |")
    for step in steps:
        if not step.passed and step.detail:
            lines += ["", f"{step.name} failed:", "", "```", step.detail, "```"]
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cpu", dest="device", action="store_const", const="cpu",
                        default="cuda", help="the same steps on the CPU, small (CI runs it)")
    parser.add_argument("--quick", action="store_true", help="small steps (under 3 min on CUDA)")
    parser.add_argument("--out", type=Path, default=REPO / "gpu-check",
                        help="where summary.md, summary.json and the logs go")
    parser.add_argument("--skip-bench", action="store_true", help="leave out the benchmark")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, MLFLOW_DISABLE_TELEMETRY="true", PYTHONUNBUFFERED="1",
               KDSPEC_GPU_CHECK_DEVICE=args.device,
               KDSPEC_GPU_CHECK_QUICK="1" if args.quick or args.device == "cpu" else "0")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            print("gpu-check: CUDA is not available here; use --cpu for the CPU mode",
                  file=sys.stderr)
            return 1
    else:
        env["CUDA_VISIBLE_DEVICES"] = ""
    info = machine()
    started = time.perf_counter()
    junit = args.out / "gpu_suite.xml"
    suite = Step("GPU suite", [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                               "tests/gpu", "-m", "gpu", f"--junitxml={junit}"])
    steps = [run_step(suite, env=env, cwd=REPO, log=args.out / "gpu_suite.log",
                      timeout_s=600)]
    suite.figures = suite_figures(junit)
    if not args.skip_bench:
        bench_json = args.out / "benchmark.json"
        bench = Step("benchmark", bench_command(args, bench_json))
        steps.append(run_step(bench, env=env, cwd=REPO, log=args.out / "benchmark.log",
                              timeout_s=900))
        if bench_json.is_file():
            bench.figures = json.loads(bench_json.read_text())
    with tempfile.TemporaryDirectory(prefix="kdspec-gpu-check-") as scratch:
        run, report, report_dir = e2e_steps(args, Path(scratch))
        steps.append(run_step(run, env=env, cwd=Path(scratch), log=args.out / "e2e_run.log",
                              timeout_s=600))
        if run.passed:
            steps.append(run_step(report, env=env, cwd=Path(scratch),
                                  log=args.out / "e2e_report.log", timeout_s=300))
            report.passed = report.passed and (report_dir / "report.md").is_file()
            if (report_dir / "report.md").is_file():
                shutil.copy(report_dir / "report.md", args.out / "e2e_report.md")
    total = time.perf_counter() - started
    result = {"machine": info, "mode": {"device": args.device, "quick": args.quick},
              "seconds": total, "steps": [asdict(s) for s in steps],
              "passed": all(s.passed for s in steps)}
    (args.out / "summary.json").write_text(json.dumps(result, indent=2, default=str))
    text = summary_markdown(info, steps, args) + f"\nTotal: {total:.0f} s.\n"
    (args.out / "summary.md").write_text(text)
    print("\n" + text)
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
