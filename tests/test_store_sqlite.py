"""SQLite specifics: WAL, schema versions and migrations, dead owners, two writer processes."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
from contextlib import ExitStack
from pathlib import Path

import pytest
from _processes import running
from test_store import T0, sample_run

from dremioframe_async.orchestration import Event, RunStarted, TaskState, TaskStateChanged
from dremioframe_async.store import (
    RunQuery,
    RunStatus,
    SQLiteStore,
    StoreSchemaError,
    StoreUnavailable,
    default_store_url,
    open_store,
)
from dremioframe_async.store._sql import MIGRATIONS, migration
from dremioframe_async.store._sqlite import SCHEMA_VERSION


def _query(path: Path, sql: str) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


@pytest.mark.asyncio
async def test_new_file_is_wal_and_at_the_latest_version(tmp_path: Path) -> None:
    path = tmp_path / "runs.sqlite"
    async with SQLiteStore(path) as store:
        await store.record(sample_run())
    assert _query(path, "PRAGMA journal_mode") == [("wal",)]
    assert _query(path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
    assert SCHEMA_VERSION == len(MIGRATIONS) >= 2


@pytest.mark.asyncio
async def test_a_version_1_file_is_migrated_and_keeps_its_runs(tmp_path: Path) -> None:
    path = tmp_path / "v1.sqlite"
    conn = sqlite3.connect(path)
    for statement in migration(1, "sqlite", ""):
        conn.execute(statement)
    conn.execute("PRAGMA user_version = 1")
    conn.execute(
        "INSERT INTO runs (run_id, pipeline, status, started) VALUES ('x', 'p', 'SUCCESS', 1)"
    )
    conn.commit()
    conn.close()
    async with SQLiteStore(path) as store:
        assert [r.run_id for r in await store.list_runs()] == ["x"]
    indexes = _query(
        path, "SELECT name FROM sqlite_master WHERE type = 'index' AND name LIKE 'runs_by%'"
    )
    assert sorted(indexes) == [
        ("runs_by_backfill",),
        ("runs_by_interval",),
        ("runs_by_pipeline",),
        ("runs_by_pipeline_started",),
        ("runs_by_started",),
        ("runs_by_status",),
        ("runs_by_status_started",),
    ]
    assert _query(path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]


# Before version 3 a run's planned tasks were written as PENDING rows at its start.
V2_ROWS = (
    "INSERT INTO runs (run_id, pipeline, status, started) VALUES ('old', 'p', 'FAILED', 1)",
    "INSERT INTO tasks (run_id, key, state) "
    "VALUES ('old', 'a', 'SUCCESS'), ('old', 'b', 'PENDING')",
)


@pytest.mark.asyncio
async def test_a_version_2_file_with_pending_rows_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "v2.sqlite"
    conn = sqlite3.connect(path)
    for statement in (*migration(1, "sqlite", ""), *migration(2, "sqlite", ""), *V2_ROWS):
        conn.execute(statement)
    conn.execute("PRAGMA user_version = 2")
    conn.commit()
    conn.close()
    async with SQLiteStore(path) as store:
        assert (await store.get_run("old")).counts == {"SUCCESS": 1, "PENDING": 1}
        tasks = await store.get_tasks("old")
        assert [(t.key, t.state) for t in tasks] == [("a", "SUCCESS"), ("b", "PENDING")]
        await store.record(sample_run("new"))
        assert [t.key for t in await store.get_tasks("new")] == ["a", "b", "c", "d"]
    assert _query(path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
    assert _query(path, "SELECT count(*) FROM tasks WHERE state = 'PENDING'") == [(1,)]


@pytest.mark.asyncio
async def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "future.sqlite"
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    store = SQLiteStore(path)
    with pytest.raises(StoreSchemaError, match="upgrade dremioframe_async"):
        await store.list_runs()


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("owner", "status"),
    [
        ("{host}:999999999:x", RunStatus.INTERRUPTED),  # no such pid
        ("{host}:{pid}:not-my-start", RunStatus.INTERRUPTED),  # pid recycled
        ("some-other-host:1:x", RunStatus.RUNNING),  # cannot tell: left alone
        ("{me}", RunStatus.RUNNING),  # this very process
    ],
    ids=["dead-pid", "recycled-pid", "other-host", "this-process"],
)
async def test_running_runs_of_dead_owners_are_interrupted(
    tmp_path: Path, owner: str, status: RunStatus
) -> None:
    import os
    import socket

    from dremioframe_async.store._owner import current_owner

    path = tmp_path / "runs.sqlite"
    async with SQLiteStore(path) as store:
        await store.record(sample_run()[:3])  # started, a ran; never finished
    owner = owner.format(host=socket.gethostname(), pid=os.getpid(), me=current_owner())
    conn = sqlite3.connect(path)
    conn.execute("UPDATE runs SET owner = ?", (owner,))
    if status is RunStatus.INTERRUPTED:
        # Its last heartbeat came before its last record: the record is its last sign of life.
        conn.execute("UPDATE runs SET heartbeat = ?", (T0 + 1,))
    conn.commit()
    conn.close()
    async with SQLiteStore(path) as store:
        run = await store.get_run("r1")
    assert run.status is status
    if status is RunStatus.INTERRUPTED:
        assert run.finished == T0 + 2  # the last thing the dead run recorded


_WRITER = """
import anyio, sys
from dremioframe_async.orchestration import RunStarted, RunFinished
from dremioframe_async.store import SQLiteStore
async def main():
    async with SQLiteStore(sys.argv[1], busy_timeout=30) as store:
        for i in range(40):
            rid = f"{sys.argv[2]}-{i}"
            keys = tuple(f"t{k}" for k in range(50))
            await store.record([RunStarted(rid, "p", float(i), {}, keys)])
            await store.record([RunFinished(rid, "p", "SUCCESS", float(i) + 1, float(i))])
anyio.run(main)
"""


@pytest.mark.asyncio
async def test_two_processes_write_one_file(tmp_path: Path) -> None:
    path = tmp_path / "shared.sqlite"
    async with SQLiteStore(path):
        pass  # create the schema once so both writers start on an existing file
    with ExitStack() as stack:
        procs = [
            stack.enter_context(
                running([sys.executable, "-c", _WRITER, str(path), name], stderr=subprocess.PIPE)
            )
            for name in ("left", "right")
        ]
        for proc in procs:
            _, err = proc.communicate(timeout=50)
            assert proc.returncode == 0, err.decode()
    async with SQLiteStore(path) as store:
        runs = await store.list_runs(limit=None)
    assert len(runs) == 80
    assert {r.status for r in runs} == {RunStatus.SUCCESS}
    assert {sum(r.counts.values()) for r in runs} == {50}


@pytest.mark.asyncio
async def test_sqlite_never_runs_on_the_event_loop_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loop_thread = threading.get_ident()
    seen: list[int] = []
    real_connect = sqlite3.connect

    def spy(*args: object, **kwargs: object) -> sqlite3.Connection:
        seen.append(threading.get_ident())
        return real_connect(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(sqlite3, "connect", spy)
    async with SQLiteStore(tmp_path / "runs.sqlite") as store:
        await store.record([RunStarted("r", "p", T0, {}, ())])
    assert seen
    assert loop_thread not in seen


@pytest.mark.asyncio
@pytest.mark.parametrize("max_values", [250_000, 999], ids=["default", "sqlite-before-3.32"])
async def test_a_big_batch_is_written_in_chunks(tmp_path: Path, max_values: int) -> None:
    keys = tuple(f"t{i}" for i in range(1300))  # 512 + 512 + 256 + 16 + 4 rows
    events: list[Event] = [RunStarted("big", "etl", T0, {}, keys)]
    events += [
        TaskStateChanged("big", "etl", key, TaskState.SUCCESS, T0 + 1, 1, result=i)
        for i, key in enumerate(keys)
    ]
    async with SQLiteStore(tmp_path / "big.sqlite") as store:
        assert store._conn is not None
        store._conn.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, max_values)
        await store.record(events)
        tasks = await store.get_tasks("big")
    assert [(t.key, t.result) for t in tasks] == [(key, i) for i, key in enumerate(keys)]


@pytest.mark.asyncio
async def test_rows_written_through_another_handle_are_merged_not_duplicated(
    tmp_path: Path,
) -> None:
    # A store inserts task rows it has not written yet without an upsert; a row
    # that exists anyway (written through another handle) falls back to the upsert.
    path = tmp_path / "runs.sqlite"
    events = sample_run()
    async with SQLiteStore(path) as first, SQLiteStore(path) as second:
        await first.record(events[:2])  # the run starts; a is RUNNING
        await second.record(events[2:])  # a's SUCCESS arrives through another handle
        tasks = {t.key: t for t in await second.get_tasks("r1")}
        assert (tasks["a"].started, tasks["a"].finished) == (T0 + 1, T0 + 2)
        assert tasks["a"].result == {"rows": [1, 2]}
        assert (await second.get_run("r1")).counts == {
            "SUCCESS": 2,
            "FAILED": 1,
            "UPSTREAM_FAILED": 1,
        }
        assert first._written.runs() == {"r1": {"a"}}  # still running, as far as it knows
        assert second._written.runs() == {}  # it saw the run end


@pytest.mark.asyncio
async def test_a_missing_folder_is_an_error_naming_it_and_is_not_created(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'typo' / 'runs.sqlite'}")
    with pytest.raises(StoreUnavailable, match=r"no such folder: .*typo") as info:
        await store.list_runs()
    assert f"sqlite:///{tmp_path}/typo/runs.sqlite" in str(info.value)  # the URL as given
    assert not (tmp_path / "typo").exists()
    await store.aclose()


@pytest.mark.asyncio
async def test_a_relative_sqlite_url_that_meant_an_absolute_path_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "abs").mkdir()
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    old_style = f"sqlite://{tmp_path / 'abs' / 'runs.sqlite'}"  # three slashes, meant absolute
    store = open_store(old_style)
    with pytest.raises(StoreUnavailable) as info:
        await store.list_runs()
    assert f"did you mean sqlite:///{tmp_path / 'abs' / 'runs.sqlite'}, four slashes" in str(
        info.value
    )
    await store.aclose()


@pytest.mark.asyncio
async def test_the_default_file_s_folder_is_created(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DREMIOFRAME_ASYNC_STORE", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    async with open_store(default_store_url()) as store:
        await store.list_runs()
    assert (tmp_path / "data" / "dremioframe_async" / "runs.sqlite").is_file()


@pytest.mark.asyncio
async def test_a_runs_task_keys_are_not_rewritten_by_its_heartbeats(tmp_path: Path) -> None:
    path = tmp_path / "runs.sqlite"
    keys = tuple(f"extract_partition_{i}" for i in range(100_000))  # 2.7 MB of JSON
    async with SQLiteStore(path, writer="thread") as store:
        await store.record([RunStarted("big", "p", T0, {}, keys)])
        assert _query(path, "SELECT task_keys FROM runs") == [(None,)]
        before = _query(path, "PRAGMA wal_checkpoint(TRUNCATE)")
        assert before[0][0] == 0  # not busy: the WAL is empty now
        [(beaten,)] = _query(path, "SELECT heartbeat FROM runs")
        await store._beat(["big"])
        assert _query(path, "SELECT heartbeat FROM runs") > [(beaten,)]
        wal = (tmp_path / "runs.sqlite-wal").stat().st_size
        assert 0 < wal < 200_000  # the run's row, not its keys
        tasks = await store.get_tasks("big")
        assert len(tasks) == len(keys)
        assert {t.state for t in tasks} == {TaskState.PENDING}
        assert (await store.get_run("big")).counts == {"PENDING": len(keys)}


@pytest.mark.asyncio
async def test_runs_recorded_with_their_keys_in_the_runs_row_read_the_same(
    tmp_path: Path,
) -> None:
    path = tmp_path / "runs.sqlite"
    async with SQLiteStore(path) as store:
        await store.record(sample_run())  # creates the file at the latest version
    conn = sqlite3.connect(path)
    conn.execute(
        "INSERT INTO runs (run_id, pipeline, status, started, task_keys) "
        """VALUES ('older', 'p', 'FAILED', 1, '["a", "b"]')"""
    )
    conn.execute("INSERT INTO tasks (run_id, key, state) VALUES ('older', 'a', 'SUCCESS')")
    conn.commit()
    conn.close()
    async with SQLiteStore(path) as store:
        tasks = await store.get_tasks("older")
        assert [(t.key, t.state) for t in tasks] == [
            ("a", TaskState.SUCCESS),
            ("b", TaskState.PENDING),
        ]
        assert (await store.get_run("older")).counts == {"SUCCESS": 1, "PENDING": 1}
        page = await store.query_runs(RunQuery(limit=10))
        assert {r.run_id: r.counts for r in page.runs}["older"] == {"SUCCESS": 1, "PENDING": 1}
        listed = {r.run_id: r.counts for r in await store.list_runs()}
        assert listed["older"] == {"SUCCESS": 1, "PENDING": 1}
