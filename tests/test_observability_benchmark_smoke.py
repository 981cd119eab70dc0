"""Smoke test of benchmarks/observability_overhead.py: a small run prints every row.

Timings are not asserted (the script states speed as ratios against its baseline).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "observability_overhead.py"
ROWS = ("baseline", "capture", "capture+1 line", "otel, unconfigured", "metrics", "otel, in-memory")


@pytest.mark.timeout(130)  # above the script's own 120 s timeout
def test_small_run_prints_a_row_per_configuration_and_shape() -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--n", "20", "--reps", "2", "--mapped", "300"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    for shape in ("fan-out", "sleep"):
        block = done.stdout.split(f"\n{shape} fan-out, 20 middle tasks", 1)[1]
        for row in ROWS:
            assert re.search(rf"^{re.escape(row)} +\d+\.\d+ +\d+\.\d+ ", block, re.MULTILINE), row
    # run, items, the mapped task and its first 100 instances
    assert "mapped task, 300 instances, 3 reps: 103 spans with tracing on" in done.stdout
