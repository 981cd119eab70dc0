"""Smoke test of benchmarks/dask_scaling.py: its --quick mode runs and reports.

Only the shape of the output is checked; timings vary by machine and are not
asserted (the script states speed as ratios measured in the same run).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from _bench_run import run_quick

pytest.importorskip("distributed", reason="needs the dask extra: pip install -e '.[dask]'")

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "dask_scaling.py"


@pytest.fixture(scope="module")
def quick_run() -> subprocess.CompletedProcess[str]:
    return run_quick("dask_scaling.py")


def test_quick_mode_exits_zero(quick_run: subprocess.CompletedProcess[str]) -> None:
    assert quick_run.returncode == 0, quick_run.stderr


def test_reports_the_scaling_ratio_and_the_load(
    quick_run: subprocess.CompletedProcess[str],
) -> None:
    assert re.search(r"^ratio local/dask: \d+\.\d+x \(ideal \d+x\)$", quick_run.stdout, re.M)
    assert len(re.findall(r"^load average \d+\.\d+ \(1 min\)", quick_run.stdout, re.M)) == 2


@pytest.mark.parametrize("shape", ["fan-out of 20", "chain of 5"])
def test_reports_the_overhead_per_task_of_both_executors(
    quick_run: subprocess.CompletedProcess[str], shape: str
) -> None:
    for executor in ("local threads", "dask"):
        pattern = rf"^{shape}\s+{executor}\s+\d+\.\d\s+\d+$"
        assert re.search(pattern, quick_run.stdout, re.M), quick_run.stdout
    assert f"ratio dask/local per task ({shape}):" in quick_run.stdout
