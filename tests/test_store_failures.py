"""Store failures surface: at open, on first use, and when writes fail during a run."""

from __future__ import annotations

import secrets
import sqlite3
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import asyncpg
import pytest
from _store_fixtures import drop_schema

from dremioframe_async import DremioFrameError, Pipeline, PipelineFailed, task
from dremioframe_async.orchestration import Event, Record, RunFinished, RunStarted, hand_back
from dremioframe_async.store import (
    HistoryIncomplete,
    MemoryStore,
    PostgresStore,
    RunStatus,
    SQLiteStore,
    StoreError,
    StoreUnavailable,
)

pytestmark = pytest.mark.asyncio


def _pipeline(calls: list[str], during: Any = None) -> Pipeline:
    """first -> second; ``during`` (async, optional) runs inside ``first``."""

    @task(name="first")
    async def first() -> int:
        calls.append("first")
        if during is not None:
            await during()
        return 1

    @task(name="second")
    async def second() -> int:
        calls.append("second")
        return 2

    return Pipeline("fragile").add_task(first() >> second())


async def test_an_unreachable_postgres_fails_the_run_before_any_task() -> None:
    calls: list[str] = []
    store = PostgresStore("postgresql://postgres:hunter2@127.0.0.1:1/db", connect_timeout=5)
    with pytest.raises(StoreUnavailable) as info:
        await _pipeline(calls).run(store=store)
    message = str(info.value)
    assert calls == []
    assert "\n" not in message
    assert "hunter2" not in message
    assert "postgresql://postgres:***@127.0.0.1:1/db" in message
    assert isinstance(info.value, DremioFrameError)
    assert isinstance(info.value.__cause__, OSError)  # the driver's error, for --traceback


async def test_a_missing_driver_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "asyncpg", None)  # import asyncpg now raises ImportError
    store = PostgresStore("postgresql://u@127.0.0.1:1/db")
    with pytest.raises(StoreUnavailable, match=r"pip install 'dremioframe_async\[postgres\]'"):
        await store.list_runs()


async def test_an_unwritable_sqlite_path_fails_the_run_before_any_task(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    calls: list[str] = []
    store = SQLiteStore(tmp_path / "file" / "runs.sqlite")
    with pytest.raises(StoreUnavailable) as info:
        await _pipeline(calls).run(store=store)
    assert calls == []
    assert f"sqlite:///{tmp_path}/file/runs.sqlite" in str(info.value)
    assert "\n" not in str(info.value)


class _Watched(SQLiteStore):
    """A real SQLiteStore that signals when a write has failed."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, busy_timeout=0.01)
        self.failed = anyio.Event()

    async def record(self, events: Sequence[Event]) -> None:
        try:
            await super().record(events)
        except StoreError:
            self.failed.set()
            raise


async def _lock(path: Path) -> sqlite3.Connection:
    """Another connection holding the file's write lock until it is closed."""

    def take() -> sqlite3.Connection:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        conn.execute("BEGIN EXCLUSIVE")
        return conn

    return await anyio.to_thread.run_sync(take)


async def test_a_write_that_fails_for_a_while_is_retried(tmp_path: Path) -> None:
    path = tmp_path / "runs.sqlite"
    store = _Watched(path)
    locks: list[sqlite3.Connection] = []

    @task(name="lock")
    async def lock() -> None:
        locks.append(await _lock(path))  # its SUCCESS event is written under the lock

    @task(name="release")
    async def release() -> None:
        await store.failed.wait()  # a batch was refused at least once
        locks[0].rollback()  # the lock goes away within the retry budget
        locks[0].close()

    result = await Pipeline("flaky").add_task(lock() >> release()).run(store=store)
    assert (result.status, result.history_error, result.ok) == ("SUCCESS", None, True)
    run = await store.get_run(result.run_id)
    assert (run.status, run.counts) == (RunStatus.SUCCESS, {"SUCCESS": 2})
    await store.aclose()


async def test_history_lost_during_a_run_is_reported_on_the_result(tmp_path: Path) -> None:
    path = tmp_path / "runs.sqlite"
    store = _Watched(path)
    locks: list[sqlite3.Connection] = []

    async def block() -> None:
        locks.append(await _lock(path))  # held until the run has ended

    calls: list[str] = []
    with anyio.fail_after(30):
        result = await _pipeline(calls, block).run(store=store)
    locks[0].rollback()
    locks[0].close()
    assert calls == ["first", "second"]
    assert result.status == "SUCCESS"
    assert not result.ok
    error = result.history_error
    assert isinstance(error, HistoryIncomplete)
    assert isinstance(error, StoreError)
    assert error.run_id == result.run_id
    assert error.lost >= 3  # first and second ending, and the run's end at least
    assert "database is locked" in str(error)
    assert "history_incomplete" in repr(result)
    with pytest.raises(HistoryIncomplete):
        result.raise_for_status()
    # What did reach the store: the run's start, written before its first task.
    run = await store.get_run(result.run_id)
    assert run.status is RunStatus.RUNNING
    await store.aclose()


async def test_a_failed_run_with_lost_history_still_raises_pipeline_failed(
    tmp_path: Path,
) -> None:
    path = tmp_path / "runs.sqlite"
    store = _Watched(path)
    locks: list[sqlite3.Connection] = []

    @task(name="breaks")
    async def breaks() -> None:
        locks.append(await _lock(path))
        raise RuntimeError("task failed")

    result = await Pipeline("fails").add_task(breaks()).run(store=store)
    locks[0].rollback()
    locks[0].close()
    assert result.status == "FAILED"
    assert isinstance(result.history_error, HistoryIncomplete)
    with pytest.raises(PipelineFailed):
        result.raise_for_status()
    await store.aclose()


async def test_postgres_history_lost_mid_run_is_reported(pg_url: str) -> None:
    schema = f"dfa_test_{secrets.token_hex(6)}"
    store = PostgresStore(pg_url, schema=schema, max_size=2)

    async def break_the_table() -> None:
        conn = await asyncpg.connect(pg_url)
        try:
            await conn.execute(f'ALTER TABLE "{schema}".tasks RENAME TO gone')
        finally:
            await conn.close()

    calls: list[str] = []
    try:
        result = await _pipeline(calls, break_the_table).run(store=store)
        assert (result.status, calls) == ("SUCCESS", ["first", "second"])
        assert isinstance(result.history_error, HistoryIncomplete)
        assert "UndefinedTableError" in str(result.history_error)
        assert pg_url.rsplit("/", 1)[1] in str(result.history_error)  # names the store
    finally:
        await store.aclose()
        await drop_schema(pg_url, schema)


async def test_a_listener_still_sees_every_event_when_the_store_fails(tmp_path: Path) -> None:
    path = tmp_path / "runs.sqlite"
    store = _Watched(path)
    locks: list[sqlite3.Connection] = []
    seen: list[str] = []

    async def block() -> None:
        locks.append(await _lock(path))

    result = await _pipeline([], block).run(
        store=store, on_event=lambda e: seen.append(type(e).__name__)
    )
    locks[0].rollback()
    locks[0].close()
    assert result.history_error is not None
    assert seen[0] == "RunStarted"
    assert seen[-1] == "RunFinished"
    assert seen.count("TaskStateChanged") == 4
    await store.aclose()


class _Refuses:
    """A recorder of one's own (the RunRecorder protocol) that cannot write at all."""

    async def record(self, events: Sequence[Event]) -> None:
        raise RuntimeError("disk on fire")

    async def load_prior_run(self, run_id: str) -> Any:
        raise LookupError(run_id)


class _AnswersEarly:
    """A recorder that returns for a run's middle batches before writing them, and
    hands them back with the error of its next failed ``record`` (``fails`` times)."""

    def __init__(self, fails: int) -> None:
        self.fails = fails
        self.written: list[Record] = []
        self.held: list[Record] = []
        self.holding = anyio.Event()

    async def record(self, events: Sequence[Record]) -> None:
        if any(isinstance(e, RunStarted) for e in events):
            self.written.extend(events)
            return
        if not any(isinstance(e, RunFinished) for e in events):
            self.held.extend(events)  # "recorded", to the runner
            self.holding.set()
            return
        if self.fails:
            self.fails -= 1
            error = RuntimeError("the writer behind went away")
            hand_back(error, self.held)
            self.held = []
            raise error
        self.written.extend(events)

    async def load_prior_run(self, run_id: str) -> Any:
        raise LookupError(run_id)


def _holding_pipeline(recorder: _AnswersEarly) -> Pipeline:
    @task(name="first")
    async def first() -> int:
        await recorder.holding.wait()  # its RUNNING was answered early
        return 1

    @task(name="second")
    async def second() -> int:
        return 2

    return Pipeline("early").add_task(first() >> second())


async def test_events_a_recorder_hands_back_are_recorded_again_in_order() -> None:
    recorder = _AnswersEarly(fails=1)
    with anyio.fail_after(30):
        result = await _holding_pipeline(recorder).run(store=recorder)
    assert result.history_error is None
    kinds = [
        (type(e).__name__, getattr(e, "key", ""), getattr(e, "state", "")) for e in recorder.written
    ]
    assert kinds[0][0] == "RunStarted"
    assert kinds[-1][0] == "RunFinished"
    # first's RUNNING, handed back, went in again ahead of what followed it
    changes = [(key, str(state)) for name, key, state in kinds if name == "TaskStateChanged"]
    assert changes == [
        ("first", "RUNNING"),
        ("first", "SUCCESS"),
        ("second", "RUNNING"),
        ("second", "SUCCESS"),
    ]


async def test_events_a_recorder_hands_back_count_as_lost() -> None:
    recorder = _AnswersEarly(fails=1_000)
    with anyio.fail_after(60):
        result = await _holding_pipeline(recorder).run(store=recorder)
    error = result.history_error
    assert isinstance(error, HistoryIncomplete)
    assert "the writer behind went away" in str(error)
    # All five after the start: two per task and the run's end, the handed-back too.
    assert error.lost == 5


async def test_any_recorder_that_cannot_record_the_start_stops_the_run() -> None:
    calls: list[str] = []
    with pytest.raises(StoreError, match=r"not started: .*RuntimeError: disk on fire") as info:
        await _pipeline(calls).run(store=_Refuses())
    assert calls == []
    assert isinstance(info.value.__cause__, RuntimeError)


async def test_a_store_that_waits_on_its_own_is_not_retried_past_the_budget(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dremioframe_async.orchestration import _dispatch

    monkeypatch.setattr(_dispatch, "RECORD_RETRY_BUDGET", 0.2)
    path = tmp_path / "runs.sqlite"
    store = _Watched(path)
    store._busy_timeout = 0.3  # each attempt waits longer than the whole budget
    locks: list[sqlite3.Connection] = []
    attempts: list[int] = []
    real_record = SQLiteStore.record

    async def counted(self: SQLiteStore, events: Sequence[Event]) -> None:
        attempts.append(len(events))
        await real_record(self, events)

    async def block() -> None:
        locks.append(await _lock(path))
        monkeypatch.setattr(SQLiteStore, "record", counted)

    result = await _pipeline([], block).run(store=store)
    locks[0].rollback()
    locks[0].close()
    assert isinstance(result.history_error, HistoryIncomplete)
    # One attempt per batch: none was retried, each having waited past the budget.
    assert len(attempts) <= 3
    await store.aclose()


async def test_a_run_cancelled_while_its_start_is_written_is_recorded_cancelled(
    tmp_path: Path,
) -> None:
    path = tmp_path / "runs.sqlite"
    store = SQLiteStore(path, busy_timeout=20)
    await store.list_runs()  # open it before its file gets locked
    lock = await _lock(path)
    calls: list[str] = []
    seen: list[Any] = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: _pipeline(calls).run(store=store, on_event=seen.append))
        await anyio.wait_all_tasks_blocked()  # the start's write waits for the lock
        tg.cancel_scope.cancel()
        lock.rollback()  # the write goes through; the run never starts a task
        lock.close()
    assert calls == []
    (run,) = await store.list_runs()
    assert (run.status, run.pipeline) == (RunStatus.CANCELLED, "fragile")  # not RUNNING
    assert (type(seen[0]).__name__, type(seen[-1]).__name__) == ("RunStarted", "RunFinished")
    await store.aclose()


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
async def test_a_run_started_in_a_cancelled_scope_is_recorded_cancelled(
    kind: str, tmp_path: Path
) -> None:
    # The cancellation landed as the start took the dispatcher's lock, before it took
    # the start: the pump still wrote RunStarted, and no RunFinished ever followed.
    store = MemoryStore() if kind == "memory" else SQLiteStore(tmp_path / "runs.sqlite")
    calls: list[str] = []
    seen: list[Any] = []
    with anyio.CancelScope() as scope:
        scope.cancel()
        await _pipeline(calls).run(store=store, on_event=seen.append, run_id="late")
    assert calls == []
    run = await store.get_run("late")
    assert run.status is RunStatus.CANCELLED  # not RUNNING
    assert (type(seen[0]).__name__, type(seen[-1]).__name__) == ("RunStarted", "RunFinished")
    await store.aclose()


async def test_a_postgres_start_cancelled_mid_write_is_recorded_cancelled(pg_url: str) -> None:
    # asyncpg abandons a cancelled statement: the run's start may or may not have
    # landed, and the runner never got to start (or end) the run.
    schema = f"dfa_test_{secrets.token_hex(6)}"
    store = PostgresStore(pg_url, schema=schema, max_size=2)
    await store.list_runs()  # create the schema before locking its table
    locker = await asyncpg.connect(pg_url)
    calls: list[str] = []
    seen: list[Any] = []
    try:
        tx = locker.transaction()
        await tx.start()
        await locker.execute(f'LOCK TABLE "{schema}".runs IN ACCESS EXCLUSIVE MODE')
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: _pipeline(calls).run(store=store, on_event=seen.append))
            await anyio.wait_all_tasks_blocked()  # the start's INSERT waits for the lock
            tg.cancel_scope.cancel()
            with anyio.CancelScope(shield=True):
                await anyio.wait_all_tasks_blocked()  # the run has taken the cancellation
                await tx.rollback()  # the lock goes; what the run wrote at its end lands
        assert calls == []
        (run,) = await store.list_runs()
        assert (run.status, run.pipeline) == (RunStatus.CANCELLED, "fragile")
        assert [type(e).__name__ for e in seen] == ["RunStarted", "RunFinished"]
    finally:
        await locker.close()
        await store.aclose()
        await drop_schema(pg_url, schema)


# -- an exception that cannot be printed ---------------------------------------------------


class _Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no text for this one")


@pytest.mark.parametrize("kind", ["memory", "sqlite-process", "sqlite-thread", "postgres"])
async def test_an_exception_that_cannot_be_printed_is_recorded_with_the_rest(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Its str() raising once kept every record of the run out of the store, for good
    (the failed batch was carried into each later one), and the run stayed RUNNING."""
    schema = f"dfa_test_{secrets.token_hex(6)}"
    if kind == "memory":
        store: Any = MemoryStore()
    elif kind == "postgres":
        pg_url = request.getfixturevalue("pg_url")
        store = PostgresStore(pg_url, schema=schema)
    else:
        store = SQLiteStore(tmp_path / "runs.sqlite", writer=kind.removeprefix("sqlite-"))

    @task(name="fine")
    async def fine() -> int:
        return 1

    @task(name="odd")
    async def odd() -> None:
        raise _Unprintable()

    pipeline = Pipeline("unprintable").add_task(fine()).add_task(fine()).add_task(odd())
    try:
        result = await pipeline.run(store=store)
        assert result.status == "FAILED"
        assert result.history_error is None
        run = await store.get_run(result.run_id)
        assert run.status is RunStatus.FAILED
        tasks = {t.key: t for t in await store.get_tasks(result.run_id)}
        assert {k: t.state.value for k, t in tasks.items()} == {
            "fine": "SUCCESS",
            "fine_2": "SUCCESS",
            "odd": "FAILED",
        }
        (attempt,) = tasks["odd"].attempts
        assert attempt.error_type is not None
        assert attempt.error_type.endswith("_Unprintable")
        assert attempt.error_message == "<str() of _Unprintable raised RuntimeError>"
        assert attempt.error_traceback is not None
        assert "_Unprintable" in attempt.error_traceback
    finally:
        await store.aclose()
        if kind == "postgres":
            await drop_schema(request.getfixturevalue("pg_url"), schema)


# -- SQLite's own rollback -----------------------------------------------------------------


async def test_a_transaction_sqlite_rolled_back_itself_keeps_its_error(tmp_path: Path) -> None:
    """On a full disk SQLite rolls the transaction back as the statement fails; the
    ROLLBACK after it failed ("no transaction is active") and hid why (seen on a 2 MB
    tmpfs). Here the body rolls back itself, as SQLite does, then raises."""
    from dremioframe_async.store._sqlite import _transaction

    conn = sqlite3.connect(tmp_path / "t.sqlite", isolation_level=None)
    conn.execute("CREATE TABLE t (a)")

    def insert(value: int, error: Exception, rolled_back: bool) -> None:
        with _transaction(conn):
            conn.execute("INSERT INTO t VALUES (?)", (value,))
            if rolled_back:
                conn.execute("ROLLBACK")  # what SQLite did on its own
            raise error

    full = sqlite3.OperationalError("database or disk is full")
    with pytest.raises(sqlite3.OperationalError, match="database or disk is full"):
        insert(1, full, rolled_back=True)
    with pytest.raises(ZeroDivisionError):  # and a transaction still open is rolled back
        insert(2, ZeroDivisionError(), rolled_back=False)
    assert not conn.in_transaction
    assert conn.execute("SELECT count(*) FROM t").fetchone() == (0,)
    conn.close()
