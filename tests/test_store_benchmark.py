"""Smoke test of benchmarks/store_overhead.py: a tiny run exits 0 and prints both shapes.

Timings are not asserted (the script states them as ratios against no store).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "store_overhead.py"
ROW = re.compile(
    r"^SQLiteStore +\d+\.\d+ +\d+\.\d+x +-?\d+\.\d +-?\d+\.\d +-?\d+\.\d +<= [\d.]+x "
    r"(met|MISSED)$"
)


def test_store_overhead_runs_and_reports_both_shapes(pg_url: str) -> None:
    env = {**os.environ, "DREMIOFRAME_ASYNC_BENCH_PG": pg_url}  # this session's database
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--tasks", "200", "--sleep-tasks", "20", "--repeat", "1"],
        capture_output=True,
        text=True,
        timeout=50,
        check=False,
        cwd=SCRIPT.parents[1],
        env=env,
    )
    assert done.returncode == 0, done.stderr
    assert "fan-out: 200 tasks" in done.stdout
    assert "sleep: 20 tasks" in done.stdout
    assert len([line for line in done.stdout.splitlines() if ROW.match(line)]) == 2, done.stdout
    assert len(re.findall(r"^PostgresStore +\d", done.stdout, re.MULTILINE)) == 2
