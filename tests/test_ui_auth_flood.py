"""1,000 wrong passwords, 50 at a time, against a UI in a subprocess
(benchmarks/ui_auth_flood.py): its RSS grows by at most 50 MiB, a signed-in user's
requests stay under 100 ms at p99, and repeated failures get 429 with Retry-After."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "ui_auth_flood.py"


@pytest.mark.timeout(230)  # two runs of up to 110 s each
@pytest.mark.parametrize("clients", [1, 50], ids=["one-client", "fifty-addresses"])
def test_wrong_passwords_leave_memory_and_signed_in_users_alone(clients: int) -> None:
    """One client (throttled after 5 tries) and 50 loopback addresses (5 free tries each,
    so 250+ real scrypt checks)."""

    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                sys.executable,
                str(SCRIPT),
                *("--attempts", "1000", "--concurrency", "50", "--clients", str(clients)),
            ],
            capture_output=True,
            text=True,
            timeout=110,
            check=False,
            cwd=SCRIPT.parents[1],
        )

    proc = run()
    if proc.returncode != 0:  # one scheduling stall can cross a threshold: measure again
        proc = run()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "429 with Retry-After" in proc.stdout
    assert "signed-in GET / during flood" in proc.stdout
