"""The demo: a real run in a subprocess, and a failing run against a FakeDremio we control."""

from __future__ import annotations

import io
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import anyio
import pytest
from _processes import running

from dremioframe_async import TaskState, demo
from dremioframe_async.demo import run_demo
from dremioframe_async.orchestration import Event, TaskStateChanged
from dremioframe_async.progress import Progress
from dremioframe_async.testing import FakeDremio, sample_table


@pytest.fixture(autouse=True)
def demo_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The demo records its run in the default store: here, a file of this test's own."""
    path = tmp_path / "demo-runs.sqlite"
    monkeypatch.setenv("DREMIOFRAME_ASYNC_STORE", f"sqlite:///{path}")
    return path


DISK_FULL = "disk full on executor 3 while spilling: " + "the cause is at the end, " * 6 + "END"


def test_demo_runs_end_to_end_in_a_subprocess(tmp_path: Path, demo_store: Path) -> None:
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
    # The run is in the default store, with its tasks' log lines, and the demo says how
    # to see it in the UI.
    run_id = proc.stdout.rsplit("/runs/", 1)[1].split()[0]
    assert "  dremioframe-async ui\n" in proc.stdout
    anyio.run(_check_recorded, demo_store, run_id)


async def _check_recorded(path: Path, run_id: str) -> None:
    from dremioframe_async.store import LogQuery, SQLiteStore

    store = SQLiteStore(path)
    try:
        assert (await store.get_run(run_id)).status.value == "SUCCESS"
        page = await store.get_logs(LogQuery(run_id, limit=100))
    finally:
        await store.aclose()
    keys = {line.key for line in page.lines}
    assert keys == {"extract[0]", "extract[1]", "extract[2]"}
    assert any(
        "wrote 1,000 rows" in x.message or "wrote 1000 rows" in x.message for x in page.lines
    )


@pytest.mark.asyncio
async def test_demo_against_a_given_server_alerts_and_cleans_up_on_failure() -> None:
    async with FakeDremio() as fake:
        for name in ("a", "b", "c"):
            fake.add_table(f"lake.raw.{name}", sample_table(700))
        fake.fail_jobs("raw.b", DISK_FULL)
        stream = io.StringIO()
        outcome = await run_demo(url=fake.url, pat=fake.token, folder="lake.raw", stream=stream)
    states = outcome.result.states
    assert outcome.result.status == "FAILED"
    assert states["alert"] == TaskState.SUCCESS
    assert states["cleanup"] == TaskState.SUCCESS
    assert states["validate"] == TaskState.UPSTREAM_FAILED
    assert "ALERT" in stream.getvalue()
    assert f"DremioJobFailed: {DISK_FULL}" in outcome.report  # typed, whole, never cut
    assert not outcome.out_dir.exists()


@pytest.mark.asyncio
async def test_demo_opens_one_client_for_the_run_and_closes_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[str] = []

    class Recorded(demo.DremioClient):
        async def __aenter__(self) -> Recorded:
            seen.append("open")
            return await super().__aenter__()

        async def __aexit__(self, *exc: object) -> None:
            seen.append("close")
            await super().__aexit__(*exc)

    monkeypatch.setattr(demo, "DremioClient", Recorded)
    async with FakeDremio() as fake:
        for name in ("a", "b", "c"):
            fake.add_table(f"lake.raw.{name}", sample_table(70))
        stream = io.StringIO()
        outcome = await run_demo(url=fake.url, pat=fake.token, folder="lake.raw", stream=stream)
    assert outcome.result.status == "SUCCESS", outcome.report
    assert seen == ["open", "close"]


def test_the_demo_pipeline_declares_its_client_as_a_resource(tmp_path: Path) -> None:
    def make() -> demo.DremioClient:
        raise AssertionError("not opened: the pipeline is only built")

    pipeline = demo.build_pipeline(
        make,
        "lake.raw",
        tmp_path,
        concurrency=2,
        limit=None,
        stream=io.StringIO(),
        remove_out_dir=False,
    )
    assert pipeline.resources == {"dremio": make}
    needs = {t.name: t.options.resources for t in pipeline.tasks}
    assert needs["list_tables"] == needs["extract"] == ("dremio",)


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


@contextmanager
def _demo_running(*argv: str) -> Iterator[tuple[subprocess.Popen[str], Path]]:
    code = "import sys; from dremioframe_async.demo import main; sys.exit(main(sys.argv[1:]))"
    pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
    with running([sys.executable, "-c", code, *argv], text=True, **pipes) as proc:
        assert proc.stderr is not None
        first = proc.stderr.readline()  # "demo: extracting ... into <folder>": the run starts now
        assert " into " in first, first + proc.communicate()[1]
        yield proc, Path(first.rsplit(" into ", 1)[1].strip())


# Big enough that the extraction is still going when the signal arrives.
_SLOW = ("--tables", "6", "--rows", "1200000", "--concurrency", "2")


def test_ctrl_c_runs_the_cleanup_prints_the_table_and_removes_the_folder() -> None:
    with _demo_running(*_SLOW) as (proc, folder):
        assert folder.is_dir()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=50)
    assert proc.returncode == 130, err
    rows = {line.split()[0]: line.split()[1] for line in out.splitlines()[2:] if line.strip()}
    assert rows["cleanup"] == "SUCCESS", out
    assert "CANCELLED" in rows.values()
    assert not folder.exists()


def test_two_ctrl_c_end_the_demo_and_remove_the_folder() -> None:
    with _demo_running(*_SLOW) as (proc, folder):
        proc.send_signal(signal.SIGINT)
        assert proc.stderr is not None
        while "interrupted" not in proc.stderr.readline():  # the first one was heard
            assert proc.poll() is None
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=50)
    assert proc.returncode == 130, err
    assert not folder.exists()


@pytest.mark.asyncio
async def test_cancelled_demo_removes_its_folder_even_when_the_cleanup_is_stopped() -> None:
    scope = anyio.CancelScope()
    stop = anyio.Event()
    stop.set()  # the second cancellation came at once: the cleanup task never runs
    seen: list[Path] = []

    class CancelOnExtract(Progress):
        def __call__(self, event: Event) -> None:
            super().__call__(event)
            if isinstance(event, TaskStateChanged) and event.key.startswith("extract["):
                scope.cancel()

    stream = io.StringIO()
    async with FakeDremio() as fake:
        for name in ("a", "b"):
            fake.add_table(f"lake.raw.{name}", sample_table(700))
        with scope:
            await run_demo(
                url=fake.url,
                pat=fake.token,
                folder="lake.raw",
                stream=stream,
                progress=CancelOnExtract(stream, live=False),
                stop_cleanup=stop,
            )
    assert scope.cancelled_caught
    seen.append(Path(stream.getvalue().split(" into ", 1)[1].split()[0]))
    assert not seen[0].exists()


@pytest.mark.asyncio
async def test_the_demo_times_its_run_apart_from_the_setup(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rows per second are the pipeline's: generating the embedded server's tables
    (made slow here) is reported as setup, not counted in the run."""
    import dremioframe_async.testing as testing

    real = testing.sample_table

    def slow_sample(rows: int, *, offset: int = 0) -> object:
        time.sleep(0.1)  # the setup's own cost, not an ordering
        return real(rows, offset=offset)

    monkeypatch.setattr(testing, "sample_table", slow_sample)
    outcome = await run_demo(tables=4, rows=400, stream=io.StringIO())
    assert outcome.result.status == "SUCCESS"
    run = outcome.result
    assert outcome.setup_seconds >= 4 * 0.1
    ran = run.finished - run.started
    assert outcome.seconds >= ran - 0.01  # the whole run is timed...
    assert outcome.seconds < ran + 0.3  # ...and not the 0.4 s of setup before it


@pytest.mark.parametrize(
    ("argv", "kind"),
    [
        (["--url", "ftp://nope"], "DremioConfigError"),
        (["--url", "http://127.0.0.1:9", "--via", "flight"], "DremioConfigError"),
    ],
    ids=["bad-url", "flight-without-url"],
)
def test_a_bad_demo_argument_is_one_line_and_exit_2(argv: list[str], kind: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DREMIO_")}
    proc = subprocess.run(
        [sys.executable, "-m", "dremioframe_async", "demo", *argv],
        capture_output=True,
        text=True,
        timeout=50,
        check=False,
        env=env,
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith(f"dremioframe-async demo: error: {kind}: "), proc.stderr
    assert len(proc.stderr.splitlines()) == 1, proc.stderr


@pytest.mark.asyncio
async def test_the_demo_progress_lines_keep_one_denominator() -> None:
    stream = io.StringIO()
    outcome = await run_demo(
        tables=8, rows=800, concurrency=2, stream=stream, progress=Progress(stream, live=False)
    )
    assert outcome.result.status == "SUCCESS"
    totals = re.findall(r"demo_extract: \d+/(\d+) done", stream.getvalue())
    assert len(totals) >= 3, stream.getvalue()
    assert set(totals) == {str(6 + 8)}, stream.getvalue()  # 6 tasks, 8 extract instances
