"""Smoke test of benchmarks/engine_overhead.py: its --quick mode runs and reports.

Only the shape of the output is checked; timings vary by machine and are not
asserted (the script itself states speed as ratios against baselines).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from _bench_run import run_quick

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "engine_overhead.py"
RATIO = re.compile(
    r"^ratio engine/(raw-anyio|gather) \((asyncio|trio)\): "
    r"fan-out \d+\.\d+x, chain \d+\.\d+x, sleep \d+\.\d+x$",
    re.MULTILINE,
)
# The module-scoped run (timeout 120 s) counts against whichever test sets it up first.
pytestmark = pytest.mark.timeout(130)


@pytest.fixture(scope="module")
def quick_run() -> subprocess.CompletedProcess[str]:
    return run_quick("engine_overhead.py", timeout=120)


def test_quick_mode_exits_zero(quick_run: subprocess.CompletedProcess[str]) -> None:
    assert quick_run.returncode == 0, quick_run.stderr


def test_prints_the_table_header(quick_run: subprocess.CompletedProcess[str]) -> None:
    header = next(line for line in quick_run.stdout.splitlines() if line.startswith("shape"))
    for column in ("implementation", "wall ms", "us/task", "x raw-anyio", "x gather"):
        assert column in header


def test_prints_every_ratio_line(quick_run: subprocess.CompletedProcess[str]) -> None:
    found = {(m[1], m[2]) for m in RATIO.finditer(quick_run.stdout)}
    assert found == {("raw-anyio", "asyncio"), ("gather", "asyncio"), ("raw-anyio", "trio")}


@pytest.mark.parametrize(
    ("impl", "backend"),
    [
        pytest.param("engine", "asyncio", id="engine-asyncio"),
        pytest.param("engine 1st run", "asyncio", id="engine-first-run-asyncio"),
        pytest.param("raw-anyio", "asyncio", id="raw-anyio-asyncio"),
        pytest.param("gather", "asyncio", id="gather-asyncio"),
        pytest.param("engine", "trio", id="engine-trio"),
        pytest.param("raw-anyio", "trio", id="raw-anyio-trio"),
    ],
)
def test_prints_a_row_per_shape(
    quick_run: subprocess.CompletedProcess[str], impl: str, backend: str
) -> None:
    rows = re.findall(
        rf"^(fan-out|chain|sleep) +\d+ {re.escape(impl)} +{backend} ",
        quick_run.stdout,
        re.MULTILINE,
    )
    assert sorted(rows) == ["chain", "fan-out", "sleep"]


def test_big_fan_out_completes_and_reports_memory(
    quick_run: subprocess.CompletedProcess[str],
) -> None:
    assert re.search(r"^\d+-task fan-out through Pipeline: SUCCESS", quick_run.stdout, re.M)
    assert re.search(r"^peak RSS \(ru_maxrss\): \d+ MiB", quick_run.stdout, re.M)
    assert re.search(r"^tracemalloc peak .*: \d+\.\d MiB", quick_run.stdout, re.M)


def test_the_shared_client_benchmark_runs_and_counts_logins() -> None:
    script = SCRIPT.with_name("shared_client.py")
    done = subprocess.run(
        [sys.executable, str(script), "--tasks", "8", "--reps", "1"],
        capture_output=True,
        text=True,
        timeout=50,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "per task  8 tasks" in done.stdout
    assert "8 logins/run" in done.stdout
    assert "1 logins/run" in done.stdout
    assert "ratio shared/per task: " in done.stdout


@pytest.mark.parametrize("impl", ["engine", "raw-anyio", "aiodag"])
def test_prints_cold_rows_for_every_shape(
    quick_run: subprocess.CompletedProcess[str], impl: str
) -> None:
    cold = quick_run.stdout.split("cold: build + validate + first run", 1)[1]
    rows = re.findall(rf"^(fan-out|chain|sleep) +(\d+) {re.escape(impl)} +\d", cold, re.MULTILINE)
    assert sorted(shape for shape, _ in rows) == ["chain", "fan-out", "sleep"]
