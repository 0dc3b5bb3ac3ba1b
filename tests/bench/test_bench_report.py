"""bench/bench_report.py builds a plan `kdspec report` accepts (it once drifted from the
catalogue's ImageNet class names and the benchmark stopped at the plan check)."""

from __future__ import annotations

import pytest

from bench.bench_report import imagenet_sized_plan
from kdspec.catalogue.plan_checks import plan_problems


def test_the_benchmark_plan_passes_the_plan_checks() -> None:
    plan = imagenet_sized_plan(1000, seeds=5)
    assert plan_problems(plan) == []
    assert len(plan.runs) == 55


def test_a_class_count_imagenet_does_not_have_is_refused() -> None:
    with pytest.raises(SystemExit, match="--classes must be 1000"):
        imagenet_sized_plan(10, seeds=1)
