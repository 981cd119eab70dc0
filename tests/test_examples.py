"""Every example runs as documented and prints what it promises."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

EXAMPLES = [
    ("examples/01_decorator.py", "sum: 6"),
    ("examples/02_chain.py", "loaded 3 rows"),
    ("examples/03_fan_out_fan_in.py", "per table: [8, 8, 10, 11]"),
    ("examples/04_retries.py", "payload after 3 attempts"),
    ("examples/05_alert_and_cleanup.py", "run status: FAILED"),
    ("examples/06_reference_passing.py", "has 2 rows"),
    ("examples/07_web_ui.py", "inline run SUCCESS, listed by the UI: True"),
    ("examples/08_http_and_slack.py", "fetched after 2 attempts"),
    ("examples/09_shell.py", 'arguments seen: ["orders; rm -rf /"]'),
    ("examples/10_data_quality.py", "3/6 checks passed"),
    (
        "examples/11_email.py",
        "parts: ['multipart/alternative', 'text/plain', 'text/html', 'text/csv']",
    ),
    ("examples/12_s3.py", "downloaded copy identical: True"),
    (
        "examples/14_incremental_nightly.py",
        "3 nights: 100 rows in 2 files, watermark 2026-11-02T00:49:00",
    ),
    ("examples/15_backfill.py", "again: 0 runs, 7 days already done"),
    ("examples/16_dremio_resource.py", "FakeDremio saw 1 login(s) in the whole run"),
    ("examples/main_pipeline.py", "SUCCESS: 24 tables, 192000 rows, 5 retries"),
    ("-m examples.project_layout", "validated rows: 2300"),
]


@pytest.mark.parametrize(("target", "expected"), EXAMPLES, ids=[e[0] for e in EXAMPLES])
def test_example_runs(target: str, expected: str) -> None:
    proc = subprocess.run(
        [sys.executable, *target.split()],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert expected in proc.stdout
