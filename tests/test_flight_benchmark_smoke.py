"""Smoke test of benchmarks/dremio_fetch.py: its --quick mode runs and reports every figure.

Only the shape of the output is checked; timings vary by machine and are not
asserted (the script states speed as ratios against baselines of the same run).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from _bench_run import run_quick

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "dremio_fetch.py"
NUMBER = r"[\d,]+(?:\.\d+)?"


@pytest.fixture(scope="module")
def quick_run() -> subprocess.CompletedProcess[str]:
    return run_quick("dremio_fetch.py")


def test_quick_mode_exits_zero(quick_run: subprocess.CompletedProcess[str]) -> None:
    assert quick_run.returncode == 0, quick_run.stderr


@pytest.mark.parametrize(
    ("mode", "latency"),
    [
        pytest.param("REST sequential (1 page at a time)", 0, id="rest-seq-0ms"),
        pytest.param("REST concurrent (8 pages)", 0, id="rest-conc-0ms"),
        pytest.param("REST concurrent (8), decode in thread", 0, id="rest-thread-0ms"),
        pytest.param("Flight", 0, id="flight"),
        pytest.param("REST sequential (1 page at a time)", 20, id="rest-seq-20ms"),
        pytest.param("REST concurrent (8 pages)", 20, id="rest-conc-20ms"),
    ],
)
def test_prints_a_row_per_mode(
    quick_run: subprocess.CompletedProcess[str], mode: str, latency: int
) -> None:
    row = rf"^{re.escape(mode)} +{latency} ms +{NUMBER} +{NUMBER} +{NUMBER} +{NUMBER}$"
    assert re.search(row, quick_run.stdout, re.M), quick_run.stdout


@pytest.mark.parametrize(
    "ratio",
    [
        "flight/rest-concurrent rows/s (0 ms)",
        "rest-concurrent/sequential rows/s (0 ms)",
        "rest-concurrent/sequential rows/s (20 ms)",
        "decode-in-thread/on-loop rows/s (0 ms)",
    ],
)
def test_prints_every_ratio(quick_run: subprocess.CompletedProcess[str], ratio: str) -> None:
    assert re.search(rf"^ratio {re.escape(ratio)}: {NUMBER}x$", quick_run.stdout, re.M)


def test_prints_decode_and_demo_comparisons(quick_run: subprocess.CompletedProcess[str]) -> None:
    assert re.search(rf"ratio per-column/struct: {NUMBER}x$", quick_run.stdout, re.M)
    assert re.search(rf"ratio rest/flight: {NUMBER}x$", quick_run.stdout, re.M)


def test_prints_the_fan_out_rows(quick_run: subprocess.CompletedProcess[str]) -> None:
    limits = re.findall(
        rf"^ +max_concurrency=(\d+) +{NUMBER} s +{NUMBER} tables/s +x{NUMBER}$",
        quick_run.stdout,
        re.M,
    )
    assert limits == ["1", "8", "64"]
