"""Smoke test of benchmarks/partitioned_extract.py: its --quick mode runs and reports.

Only the shape of the output is checked; timings vary by machine and are not asserted.
"""

from __future__ import annotations

import re

import pytest
from _bench_run import run_quick


@pytest.mark.timeout(190)  # above the script's own 180 s timeout
def test_quick_mode_reports_every_part_count() -> None:
    done = run_quick("partitioned_extract.py", timeout=180)
    assert done.returncode == 0, done.stderr
    header = next(line for line in done.stdout.splitlines() if line.strip().startswith("parts"))
    for column in ("median s", "rows/s", "x base", "rss MiB", "arrow MiB"):
        assert column in header
    labels = re.findall(r"^\s*(baseline|\d+)\s+\d+\.\d+\s+[\d,]+\s", done.stdout, re.MULTILINE)
    assert labels == ["baseline", "1", "2", "4", "8"]
    ratios = re.findall(r"^ratio parts=(\d)/parts=1: \d+\.\d+x rows/s$", done.stdout, re.MULTILINE)
    assert ratios == ["2", "4", "8"]
