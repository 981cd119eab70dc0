"""Smoke test of benchmarks/dask_io.py: its --quick mode runs the extraction both ways and reports.

Only the shape of the output is checked; timings vary by machine and are not
asserted (the script states speed as ratios measured in the same run).
"""

from __future__ import annotations

import re
import subprocess

import pytest
from _bench_run import run_quick

pytest.importorskip("distributed", reason="needs the dask extra: pip install -e '.[dask]'")


@pytest.fixture(scope="module")
def quick_run() -> subprocess.CompletedProcess[str]:
    return run_quick("dask_io.py")


def test_quick_mode_exits_zero(quick_run: subprocess.CompletedProcess[str]) -> None:
    assert quick_run.returncode == 0, quick_run.stderr


@pytest.mark.parametrize("mode", ["one process", "dask x2"])
def test_reports_rows_per_second_and_where_the_time_goes(
    quick_run: subprocess.CompletedProcess[str], mode: str
) -> None:
    number = r"[\d,]+\.?\d*"
    on_worker = r"-" if mode == "one process" else number
    numbers = rf"{number}\s+{number}\s+{number}\s+{on_worker}\s+{number}\s+{number}\s+{number}"
    pattern = rf"^{mode}\s+{numbers}\s+\d+%$"
    assert re.search(pattern, quick_run.stdout, re.M), quick_run.stdout


def test_reports_the_ratio_and_the_load(quick_run: subprocess.CompletedProcess[str]) -> None:
    assert re.search(r"^ratio one process/dask \(wall\): \d+\.\d+x", quick_run.stdout, re.M)
    assert re.search(r"^12 tables, 60,000 rows over Arrow Flight", quick_run.stdout, re.M)
    assert len(re.findall(r"^load average \d+\.\d+ \(1 min\)", quick_run.stdout, re.M)) == 2
