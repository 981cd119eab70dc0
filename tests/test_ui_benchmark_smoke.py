"""Smoke test of benchmarks/ui_runs_page.py: a small run reports every figure."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "ui_runs_page.py"


def test_small_run_reports_times_ratios_and_weight() -> None:
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--runs", "5200", "--repeat", "1"],
        capture_output=True,
        text=True,
        timeout=50,
        check=False,
        cwd=SCRIPT.parents[1],
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "5200 runs recorded" in out
    for label in ("runs page, first 50", "runs page, 100 pages deep", "run detail page"):
        assert label in out
    assert "ratio deep page / first page:" in out
    assert "page weight:" in out
