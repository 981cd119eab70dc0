"""Running a script of benchmarks/ in --quick mode, for the smoke tests of its output."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def run_quick(script: str, timeout: float = 55) -> subprocess.CompletedProcess[str]:
    """Run ``benchmarks/<script> --quick`` from the repository root and capture its output."""
    return subprocess.run(
        [sys.executable, str(BENCHMARKS / script), "--quick"],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=BENCHMARKS.parent,
    )
