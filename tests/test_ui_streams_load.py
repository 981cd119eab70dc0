"""2,000 event streams on runs of another process (benchmarks/ui_streams.py): the
UI in a subprocess stays under 50% of a core and ``GET /`` under 50 ms at p99."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "ui_streams.py"


@pytest.mark.timeout(350)  # two runs of up to 170 s each
def test_two_thousand_streams_of_another_process_stay_cheap() -> None:
    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(SCRIPT), "--streams", "2000", "--max-streams", "2000"],
            capture_output=True,
            text=True,
            timeout=170,
            check=False,
            cwd=SCRIPT.parents[1],
        )

    proc = run()
    if proc.returncode != 0:  # one scheduling stall can cross a threshold: measure again
        proc = run()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "{'open': 2000}" in proc.stdout


@pytest.mark.timeout(180)
def test_streams_past_the_cap_are_refused_with_retry_after() -> None:
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--streams", "300", "--max-streams", "200", "--seconds", "2"],
        capture_output=True,
        text=True,
        timeout=170,
        check=False,
        cwd=SCRIPT.parents[1],
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "'open': 200" in proc.stdout
    assert "'503 with Retry-After': 100" in proc.stdout
