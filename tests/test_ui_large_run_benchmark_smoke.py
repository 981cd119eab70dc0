"""Smoke test of benchmarks/ui_large_run.py: its --quick mode records a run, serves the
UI in a child process and reports a row per route (timings are not asserted)."""

from __future__ import annotations

import re

import pytest
from _bench_run import run_quick

pytestmark = pytest.mark.timeout(120)
ROUTES = "run page|run fragment|run JSON|event stream|task page"
ROW = re.compile(rf"^({ROUTES}) +\d+ +[\d,]+ +\d+\.\d +\d+\.\d$", re.M)


def test_quick_mode_reports_every_route() -> None:
    done = run_quick("ui_large_run.py", timeout=110)
    assert done.returncode == 0, done.stderr
    assert "recorded a 2,000-task run" in done.stdout
    assert [m[1] for m in ROW.finditer(done.stdout)] == [
        "run page",
        "run fragment",
        "run JSON",
        "event stream",
        "task page",
    ]
