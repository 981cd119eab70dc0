"""Smoke test of benchmarks/serve.py: --quick starts real serve processes and reports.

Timings are not asserted (they depend on the machine's load); the shape of the
report is, and that every process count ran its runs.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "serve.py"
LATENCY = re.compile(
    r"^(\d) process(?:es)? +latency to claim p50 +\d+\.\d ms \(<= 50 (?:met|MISSED)\), "
    r"p99 +\d+\.\d ms \(<= 250 (?:met|MISSED)\); to task start p50 +\d+\.\d ms, p99 +\d+\.\d ms$",
    re.MULTILINE,
)
CLAIMS = re.compile(
    r"^(\d) process(?:es)? +40 queued at once: "
    r"claims/s +\d+\.\d(?: \(>= 200 with 4 (met|MISSED)\))?"
    r", all claimed in \d+\.\d\d s, all ended in \d+\.\d\d s \(\d+\.\d runs/s\); "
    r"CPU ms per run: serve \d+\.\d\d, PostgreSQL \d+\.\d\d$",
    re.MULTILINE,
)


@pytest.mark.timeout(120)
def test_quick_mode_reports_latency_and_claims_for_1_2_and_4_processes(pg_url: str) -> None:
    env = {**os.environ, "DREMIOFRAME_ASYNC_BENCH_PG": pg_url}  # this session's database
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick"],
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
        cwd=SCRIPT.parents[1],
        env=env,
    )
    assert done.returncode == 0, done.stderr
    assert [m[1] for m in LATENCY.finditer(done.stdout)] == ["1", "2", "4"], done.stdout
    claims = list(CLAIMS.finditer(done.stdout))
    assert [m[1] for m in claims] == ["1", "2", "4"], done.stdout
    assert claims[2][2] in ("met", "MISSED")  # only the 4-process row has the target
    assert "load average before:" in done.stdout
