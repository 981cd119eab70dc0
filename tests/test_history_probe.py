"""Operator mistakes and hostile inputs on the command line: plain one-line answers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from _processes import running

HERE = Path(__file__).parent
PIPES = HERE / "_probe_pipelines.py"
_SCRIPT = Path(sys.executable).with_name("dremioframe-async")
COMMAND = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "dremioframe_async"]


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "DREMIOFRAME_ASYNC_STORE": f"sqlite:///{tmp_path / 'runs.sqlite'}",
        "PROBE_MARKER": str(tmp_path / "marker"),
    }


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*COMMAND, *args],
        env=env,
        capture_output=True,
        text=True,
        errors="backslashreplace",
        timeout=50,
        check=False,
    )


def one_error_line(proc: subprocess.CompletedProcess[str]) -> str:
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    return lines[0]


def test_ctrl_c_while_the_module_imports_is_interrupted_not_a_traceback(
    env: dict[str, str],
) -> None:
    with running(
        [*COMMAND, "run", f"{PIPES}:one_task"],
        env={**env, "PROBE_SLOW_IMPORT": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        assert proc.stderr is not None
        assert proc.stderr.readline().strip() == "importing"
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=30)
        assert proc.returncode == 130, err
        assert "Traceback" not in err
        assert "interrupted" in err


def test_a_coroutine_function_is_refused_without_being_called(env: dict[str, str]) -> None:
    proc = cli(env, "graph", f"{PIPES}:coroutine_factory")
    assert proc.returncode == 2
    line = one_error_line(proc)  # no "coroutine was never awaited" warning either
    assert "UsageError" in line
    assert "coroutine" in line
    assert not Path(env["PROBE_MARKER"]).exists()


@pytest.mark.parametrize("limit", ["0", "-1", "x"])
def test_runs_limit_must_be_positive(env: dict[str, str], limit: str) -> None:
    assert cli(env, "run", f"{PIPES}:one_task").returncode == 0
    proc = cli(env, "runs", "--limit", limit)
    assert proc.returncode == 2, proc.stdout  # never "no runs recorded" while runs exist
    assert "UsageError" in one_error_line(proc)
    assert "no runs recorded" not in proc.stdout


def test_show_refuses_an_empty_prefix(env: dict[str, str]) -> None:
    assert cli(env, "run", f"{PIPES}:one_task").returncode == 0
    proc = cli(env, "show", "")  # `show "$RUN_ID"` with the variable unset
    assert proc.returncode == 2
    assert "UsageError" in one_error_line(proc)
    assert proc.stdout == ""


@pytest.mark.parametrize("command", [["show", "\udcff"], ["runs", "--pipeline", "\udcff"]])
def test_undecodable_arguments_are_not_store_errors(
    env: dict[str, str], command: list[str]
) -> None:
    assert cli(env, "run", f"{PIPES}:one_task").returncode == 0
    args = [os.fsencode(a) for a in [*COMMAND, *command]]
    proc = subprocess.run(args, env=env, capture_output=True, timeout=50, check=False)
    err = proc.stderr.decode(errors="backslashreplace")
    assert "UnicodeEncodeError" not in err
    assert "Traceback" not in err
    if command[0] == "show":
        assert proc.returncode == 2, err
        assert "no run" in err
    else:
        assert proc.returncode == 0, err
        assert b"no runs of pipeline" in proc.stdout


def test_an_unparsable_postgres_url_is_a_usage_error(env: dict[str, str]) -> None:
    proc = cli(env, "runs", "--store", "postgresql://u:s3cret@[::1/db")
    assert proc.returncode == 2
    line = one_error_line(proc)
    assert "StoreURLError" in line
    assert "s3cret" not in proc.stderr


def test_resume_refused_for_another_hosts_run_does_not_claim_it_is_alive(
    tmp_path: Path,
) -> None:
    import sqlite3

    import anyio

    from dremioframe_async.orchestration import ResumeRefused
    from dremioframe_async.store import SQLiteStore

    sys.path.insert(0, str(HERE))
    from _probe_pipelines import one_task

    path = tmp_path / "runs.sqlite"

    async def record() -> None:
        store = SQLiteStore(path)
        try:
            await one_task().run(store=store, run_id="ghost")
        finally:
            await store.aclose()

    anyio.run(record)
    with sqlite3.connect(path) as conn:  # a crash on a host that no longer exists
        conn.execute("UPDATE runs SET status = 'RUNNING', owner = 'gone-host:4242:boot/1'")

    async def resume() -> None:
        store = SQLiteStore(path)
        try:
            await one_task().run(store=store, resume="ghost")
        finally:
            await store.aclose()

    with pytest.raises(ResumeRefused) as refused:
        anyio.run(resume)
    message = str(refused.value)
    assert "is alive" not in message  # nobody here can know that
    assert "gone-host:4242" in message
    assert "cannot be checked" in message


def test_a_sqlite_file_deleted_mid_run_is_reported_not_success(tmp_path: Path) -> None:
    import anyio

    from dremioframe_async import Pipeline, task
    from dremioframe_async.store import SQLiteStore

    path = tmp_path / "runs.sqlite"

    @task(name="first")
    async def first() -> int:
        return 1

    @task(name="cleaner")
    async def cleaner(x: int) -> int:
        # Someone cleans the folder while the run goes on: SQLite keeps writing to
        # the unlinked file, and every later event is lost with it.
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        return x

    @task(name="last")
    async def last(x: int) -> int:
        return x

    async def go() -> None:
        store = SQLiteStore(path)
        try:
            result = await Pipeline("deleted").add_task(last(cleaner(first()))).run(store=store)
        finally:
            await store.aclose()
        assert result.status == "SUCCESS"
        assert result.history_error is not None
        assert "deleted or replaced" in str(result.history_error)
        assert not result.ok

    anyio.run(go)


@pytest.mark.parametrize("command", [["runs"], ["show", "abc"]])
def test_reading_a_store_that_does_not_exist_says_so_and_creates_nothing(
    env: dict[str, str], tmp_path: Path, command: list[str]
) -> None:
    typo = tmp_path / "typo" / "runs.sqlite"
    proc = cli(env, *command, "--store", f"sqlite:///{typo}")
    assert proc.returncode == 4, proc.stdout  # not "no runs recorded"
    assert f"no such folder: {tmp_path / 'typo'}" in one_error_line(proc)
    assert not (tmp_path / "typo").exists()
    proc = cli(env, *command, "--store", f"sqlite:///{tmp_path / 'typo.sqlite'}")
    assert proc.returncode == 4, proc.stdout
    assert "no such file" in one_error_line(proc)
    assert not (tmp_path / "typo.sqlite").exists()


def test_output_cut_short_by_a_closed_pipe_is_not_an_error(env: dict[str, str]) -> None:
    assert cli(env, "run", f"{PIPES}:one_task").returncode == 0
    # `dremioframe-async show ID | head -1`: the reader goes away before the output ends.
    with running(
        [*COMMAND, "runs", "--limit", "5"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        assert proc.stdout is not None
        assert proc.stderr is not None
        proc.stdout.close()
        with proc.stderr:
            err = proc.stderr.read()
        assert proc.wait(timeout=30) == 0, err
        assert "BrokenPipeError" not in err
        assert err == ""
