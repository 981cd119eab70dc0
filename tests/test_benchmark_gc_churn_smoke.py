"""Smoke test of benchmarks/gc_churn.py: its --quick mode runs, reports both rows,
and back-to-back large runs leave no garbage cycle and no fan-out instance alive
(a leak, not a timing: timings are not asserted)."""

from __future__ import annotations

import re
import subprocess

import pytest
from _bench_run import run_quick

ROW = re.compile(
    r"^(frozen|plain) +(\d+) +(\d+)/(\d+)/(\d+) +[\d.]+ +[\d.]+ +[\d.]+ +(\d+)/(\d+) +(\d+) +\d+$",
    re.MULTILINE,
)
# The module-scoped run (timeout 120 s) counts against whichever test sets it up first.
pytestmark = pytest.mark.timeout(130)


@pytest.fixture(scope="module")
def quick_run() -> subprocess.CompletedProcess[str]:
    return run_quick("gc_churn.py", timeout=120)


def test_quick_mode_exits_zero(quick_run: subprocess.CompletedProcess[str]) -> None:
    assert quick_run.returncode == 0, quick_run.stderr


@pytest.mark.parametrize("mode", ["frozen", "plain"])
def test_nothing_is_left_alive(quick_run: subprocess.CompletedProcess[str], mode: str) -> None:
    rows = {m[1]: m for m in ROW.finditer(quick_run.stdout)}
    assert mode in rows, quick_run.stdout
    row = rows[mode]
    assert int(row[2]) > 0  # pairs run
    assert int(row[7]) > 0  # cycles made
    assert int(row[6]) == 0  # cycles alive
    assert int(row[8]) == 0  # instances alive
