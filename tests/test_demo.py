"""The demo: a real run in a subprocess, and a failing run against a FakeDremio we control."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dremioframe_async import TaskState
from dremioframe_async.demo import run_demo
from dremioframe_async.testing import FakeDremio, sample_table


def test_demo_runs_end_to_end_in_a_subprocess(tmp_path: Path) -> None:
    code = "import sys; from dremioframe_async.demo import main; sys.exit(main(sys.argv[1:]))"
    argv = ["--tables", "3", "--rows", "3000", "--out", str(tmp_path / "out")]
    proc = subprocess.run(
        [sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=50, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert "SUCCESS: 3,000 rows" in proc.stdout
    assert "extract[2]" in proc.stdout
    assert "demo_extract: " in proc.stderr  # progress lines when stderr is not a terminal
    files = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert files == ["orders_apac.parquet", "orders_eu.parquet", "orders_us.parquet"]


@pytest.mark.asyncio
async def test_demo_against_a_given_server_alerts_and_cleans_up_on_failure() -> None:
    async with FakeDremio() as fake:
        for name in ("a", "b", "c"):
            fake.add_table(f"lake.raw.{name}", sample_table(700))
        fake.fail_jobs("raw.b", "disk full")
        stream = io.StringIO()
        outcome = await run_demo(url=fake.url, pat=fake.token, folder="lake.raw", stream=stream)
    states = outcome.result.states
    assert outcome.result.status == "FAILED"
    assert states["alert"] == TaskState.SUCCESS
    assert states["cleanup"] == TaskState.SUCCESS
    assert states["validate"] == TaskState.UPSTREAM_FAILED
    assert "ALERT" in stream.getvalue()
    assert "disk full" in outcome.report
    assert not outcome.out_dir.exists()


@pytest.mark.parametrize(
    "entry",
    [
        pytest.param("from dremioframe_async.demo import main; code = main([])", id="demo"),
        pytest.param("from dremioframe_async.cli import main; code = main(['demo'])", id="cli"),
    ],
)
def test_demo_without_the_testing_extra_exits_at_once_with_the_install_hint(entry: str) -> None:
    # sys.modules["duckdb"] = None makes `import duckdb` fail, as when it is not installed.
    code = f"import sys; sys.modules['duckdb'] = None; {entry}; sys.exit(code)"
    env = {k: v for k, v in os.environ.items() if k not in ("DREMIO_URL", "DREMIO_PAT")}
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env=env,
    )
    assert time.perf_counter() - started < 15
    assert proc.returncode == 2, proc.stderr
    assert "pip install 'dremioframe_async[testing]'" in proc.stderr
    assert "Traceback" not in proc.stderr
