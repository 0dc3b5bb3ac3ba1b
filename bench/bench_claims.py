"""Calibration of the report's claims: false-positive rates on null studies, power on planted
effects, and the coverage of the intervals the report labels as confidence intervals.

Every replicate simulates a study (``bench/claim_scenarios.py``: known truth, predictions on a
test set) and runs the report's own statistics on it: ``study_accuracy``,
``study_significance``, ``study_fairness`` and ``study_claims`` (Holm over the claims), exactly
as ``kdspec report`` does. For each scenario it prints, per claim and for "any claim", the share
of replicates that say "supported", with its Monte-Carlo standard error
``sqrt(r (1 - r) / R)``. A null scenario passes when every rate is at most alpha + 2 SE.

Coverage (null scenarios, where the truth is 0; under the accuracy-only change it is 0 up to
the small difference between a ratio of means and a mean of ratios): the report's per-class
``1 - alpha`` Welch intervals of the mean change (NDS vs DS at the highest T), and its 95 %
t intervals over seeds of the mean excess DPD/EOD of each population.

The paper-effect scenario plants the paper's Trifeature EOD effect (Table 2: DS, mean over
T = 1..10, 1.52 points below the NDS) on the excess scale and compares the share of replicates
that support "DS EOD below NDS" with the power the report predicts for that effect (from each
replicate's own seeds: median-unbiased, so its median over replicates is the one to compare).

The methods scenarios (``bench/method_scenarios.py``, ``bench/method_calibration.py``) simulate
a ``vary { distill { method = [...] } }`` block of six arms sharing their NDS and teachers, and
tally each arm's claims after Holm over the whole block: per arm and claim, and "any claim"
(null blocks) or "any claim the planted effect does not make true" (the planted block).

    python bench/bench_claims.py                     # 1,000 replicates per scenario (~1 h on 2 cores)
    python bench/bench_claims.py --replicates 200 --workers 2
    python bench/bench_claims.py --only methods --workers 1   # the methods blocks only
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.claim_scenarios import (  # noqa: E402
    NULL_SCENARIOS,
    PLANTED_SCENARIOS,
    Scenario,
    scenario_plan,
    simulate_records,
)
from bench.method_calibration import (  # noqa: E402
    KINDS,
    MethodsTally,
    block_verdicts,
    limit,
    passes,
)
from bench.method_scenarios import (  # noqa: E402
    METHOD_NULLS,
    METHOD_PLANTED,
    METHODS,
    MethodsScenario,
)
from kdspec.analysis.accuracy import study_accuracy  # noqa: E402
from kdspec.analysis.claims import study_claims  # noqa: E402
from kdspec.analysis.fairness import study_fairness  # noqa: E402
from kdspec.analysis.records import GroupKey  # noqa: E402
from kdspec.analysis.significance import study_significance  # noqa: E402

#: Relabellings per randomization test in the benchmark (validity holds for any number).
PERMUTATIONS = 499
ALPHA = 0.05
#: The paper's Trifeature effect on EOD (Table 2): DS mean over T = 1..10 minus the NDS, points.
PAPER_EOD_EFFECT = (1.67 + 1.60 + 1.38 + 1.32 + 1.25 + 1.27 + 1.21 + 1.15 + 1.08 + 1.01) / 10 \
    - 2.81
PAPER_SCENARIO = Scenario(
    "paper-size fairness effect (Trifeature EOD, T = 1..10, 5,000 test images)", null=False,
    paper_design=True, temperatures=tuple(float(t) for t in range(1, 11)), per_class=500,
    nds_gap=0.06, ds_gap=(0.0255, 0.0255), true_claims=("fairer",))


def claim_key(claim: str) -> str:
    """A short name for a claim's row."""
    text = claim.lower()
    for key, words in (("class change", "beyond chance"), ("#SC rises", "#sc rises"),
                       ("#TC falls", "#tc falls"), ("bias w/o accuracy", "class bias"),
                       ("fairer DPD", "dpd below"), ("fairer EOD", "eod below"),
                       ("DPD falls", "dpd over"), ("EOD falls", "eod over")):
        if words in text:
            return key
    return claim[:20]


@dataclass
class Tally:
    """Counts over the replicates of one scenario."""

    replicates: int = 0
    supported: dict[str, int] | None = None
    any_supported: int = 0
    class_ci: list[float] | None = None  # per replicate: share of classes covered
    seed_ci: list[float] | None = None  # per replicate: share of (population, metric) covered
    eod_power: list[float] | None = None
    eod_supported: int = 0
    eod_effect: list[float] | None = None

    def __post_init__(self) -> None:
        self.supported = {}
        self.class_ci, self.seed_ci = [], []
        self.eod_power, self.eod_effect = [], []


def one_replicate(args: tuple[Scenario, int]) -> dict[str, object]:
    """Simulate and analyse one study; return what the tally needs."""
    scenario, index = args
    plan = scenario_plan(scenario, permutations=PERMUTATIONS)
    rng = np.random.default_rng([index, abs(hash(scenario.name)) % 2**31])
    records = simulate_records(scenario, plan, rng)
    accuracy = study_accuracy(records)
    significance = study_significance(accuracy, records.study.analysis)
    fairness = study_fairness(records)
    claims = study_claims(records, accuracy, significance, fairness,
                          power=scenario.paper_design)
    out: dict[str, object] = {
        "supported": [claim_key(c.claim) for c in claims.claims if c.verdict == "supported"]}
    top = max(scenario.temperatures)
    test = significance.get("nds_vs_ds", top)
    if scenario.null and test is not None and not test.skipped:
        ok = test.testable
        out["class_ci"] = float(np.mean((test.ci_low[ok] <= 0) & (test.ci_high[ok] >= 0)))
    if fairness is not None and scenario.nds_gap == 0 and scenario.ds_gap == (0.0, 0.0):
        covered = []
        for group in (GroupKey("student"), GroupKey("distilled", top)):
            summary = fairness.summary("color", group)
            for metric in ("dpd", "eod"):
                interval = summary.excess(metric).excess_ci  # type: ignore[arg-type]
                if not math.isnan(interval.low):
                    covered.append(interval.low <= 0 <= interval.high)
        out["seed_ci"] = float(np.mean(covered)) if covered else math.nan
    if scenario.paper_design and fairness is not None:
        row = next(c for c in claims.claims if claim_key(c.claim) == "fairer EOD")
        out["eod_power"] = row.power_value
        out["eod_supported"] = row.verdict == "supported"
        ds = [r.excess("eod") for r in fairness.runs if r.group.role == "distilled"]
        nds = [r.excess("eod") for r in fairness.runs if r.group.role == "student"]
        out["eod_effect"] = 100 * (float(np.mean(ds)) - float(np.mean(nds)))
    return out


def run_scenario(scenario: Scenario, replicates: int, pool: multiprocessing.pool.Pool
                 ) -> Tally:
    tally = Tally()
    assert tally.supported is not None and tally.class_ci is not None
    assert tally.seed_ci is not None and tally.eod_power is not None
    assert tally.eod_effect is not None
    for out in pool.imap_unordered(one_replicate, [(scenario, i) for i in range(replicates)],
                                   chunksize=4):
        tally.replicates += 1
        supported = out["supported"]
        assert isinstance(supported, list)
        for key in supported:
            tally.supported[key] = tally.supported.get(key, 0) + 1
        tally.any_supported += bool(supported)
        if "class_ci" in out:
            tally.class_ci.append(float(out["class_ci"]))  # type: ignore[arg-type]
        if "seed_ci" in out and not math.isnan(float(out["seed_ci"])):  # type: ignore[arg-type]
            tally.seed_ci.append(float(out["seed_ci"]))  # type: ignore[arg-type]
        if "eod_power" in out:
            tally.eod_power.append(float(out["eod_power"]))  # type: ignore[arg-type]
            tally.eod_supported += bool(out["eod_supported"])
            tally.eod_effect.append(float(out["eod_effect"]))  # type: ignore[arg-type]
    return tally


def rate(count: int, total: int) -> str:
    r = count / total
    return f"{100 * r:5.1f} % +- {100 * math.sqrt(max(r * (1 - r), 1e-12) / total):.1f}"


def report(scenario: Scenario, tally: Tally, keys: list[str]) -> tuple[str, bool]:
    """One markdown row per scenario, and whether a null scenario passed."""
    n = tally.replicates
    cells = [rate((tally.supported or {}).get(k, 0), n) for k in keys]
    cells.append(rate(tally.any_supported, n))
    passed = True
    if scenario.null:
        limit = ALPHA + 2 * math.sqrt(ALPHA * (1 - ALPHA) / n)
        passed = all((tally.supported or {}).get(k, 0) / n <= limit for k in keys) and \
            tally.any_supported / n <= limit
    coverage = []
    if tally.class_ci:
        coverage.append(f"class CI {100 * float(np.mean(tally.class_ci)):.1f} %")
    if tally.seed_ci:
        coverage.append(f"seed CI {100 * float(np.mean(tally.seed_ci)):.1f} %")
    return (f"| {scenario.name} | {' | '.join(cells)} | {'; '.join(coverage) or '-'} |",
            passed)


def one_block(args: tuple[MethodsScenario, int]) -> list[tuple[str, str, bool]]:
    """The verdicts of one simulated methods block (a pool worker's task)."""
    scenario, index = args
    return block_verdicts(scenario, index, permutations=PERMUTATIONS)


def run_methods(scenario: MethodsScenario, replicates: int, pool: multiprocessing.pool.Pool
                ) -> MethodsTally:
    tally = MethodsTally()
    for verdicts in pool.imap_unordered(one_block, [(scenario, i) for i in range(replicates)],
                                        chunksize=4):
        tally.add(scenario, verdicts)
    return tally


def methods_table(scenario: MethodsScenario, tally: MethodsTally) -> tuple[str, bool]:
    """A markdown table per methods scenario (rows: arms, columns: claims), and whether its
    null rates are within alpha + 2 SE."""
    n = tally.replicates
    arms = [a for a in METHODS if any(arm == a for arm, _ in tally.tested)]
    overall = "any claim" if scenario.null else "any claim not planted"
    lines = [f"{scenario.name} ({n} blocks; a null rate passes up to "
             f"{100 * limit(ALPHA, n):.1f} %):", "",
             f"| arm | {' | '.join(KINDS)} |", "|---" * (len(KINDS) + 1) + "|"]
    for arm in arms:
        cells = [rate(tally.supported.get((arm, k), 0), n) if (arm, k) in tally.tested
                 else "-" for k in KINDS]
        lines.append(f"| {arm} | {' | '.join(cells)} |")
    count = tally.any_supported if scenario.null else tally.any_false
    lines += ["", f"{overall} (family-wise, Holm over the block): {rate(count, n)}"]
    return "\n".join(lines), passes(scenario, tally, ALPHA)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--replicates", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--only", default="", help="run the scenarios whose name has this text")
    parser.add_argument("--no-paper", action="store_true",
                        help="skip the paper-effect power check")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    scenarios = [s for s in NULL_SCENARIOS + PLANTED_SCENARIOS if args.only in s.name]
    keys = ["class change", "#SC rises", "#TC falls", "bias w/o accuracy", "fairer DPD",
            "fairer EOD", "DPD falls", "EOD falls"]
    print(f"{args.replicates} replicates per scenario, alpha = {ALPHA}, {PERMUTATIONS} "
          f"relabellings per randomization test; 'supported' after Holm over the study's "
          f"claims; +- is one Monte-Carlo SE.\n")
    if scenarios:
        print(f"| scenario | {' | '.join(keys)} | any claim | coverage (nominal 95 %) |")
        print("|---" * (len(keys) + 3) + "|")
    failed = []
    started = time.perf_counter()
    with multiprocessing.Pool(args.workers) as pool:
        for scenario in scenarios:
            row, passed = report(scenario, run_scenario(scenario, args.replicates, pool), keys)
            print(row, flush=True)
            if not passed:
                failed.append(scenario.name)
        if not args.no_paper and args.only in PAPER_SCENARIO.name:
            tally = run_scenario(PAPER_SCENARIO, args.replicates, pool)
            assert tally.eod_power is not None and tally.eod_effect is not None
            n = tally.replicates
            predicted = np.array(tally.eod_power)
            print(f"\n{PAPER_SCENARIO.name}: planted excess-EOD effect "
                  f"{float(np.mean(tally.eod_effect)):+.2f} points (paper {PAPER_EOD_EFFECT:+.2f}); "
                  f"'DS EOD below NDS' supported in {rate(tally.eod_supported, n)}; the power "
                  f"the report predicts (median-unbiased, one value per replicate): median "
                  f"{100 * float(np.nanmedian(predicted)):.1f} %, mean "
                  f"{100 * float(np.nanmean(predicted)):.1f} %")
        for block in METHOD_NULLS + METHOD_PLANTED:
            if args.only not in block.name:
                continue
            text, passed = methods_table(block, run_methods(block, args.replicates, pool))
            print(f"\n{text}", flush=True)
            if not passed:
                failed.append(block.name)
    print(f"\n{time.perf_counter() - started:.0f} s; null scenarios above alpha + 2 SE: "
          f"{', '.join(failed) or 'none'}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
