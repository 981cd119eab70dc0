"""SQLiteStore's writer process: plain batches written by a child process, and the
ways that child can go (killed, cut short, failing, outlived)."""

from __future__ import annotations

import contextlib
import gc
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio import wait_all_tasks_blocked
from anyio.lowlevel import checkpoint

from dremioframe_async import Pipeline, task
from dremioframe_async.orchestration import (
    HistoryIncomplete,
    Record,
    RunFinished,
    RunStarted,
    RunStatus,
    TaskRecord,
    TaskState,
    handed_back,
)
from dremioframe_async.store import (
    SQLiteStore,
    StoreConfigError,
    StoreUnavailable,
    StoreURLError,
    _sqlite,
    _sqlite_writer,
    open_store,
)
from dremioframe_async.store._sqlite_writer import EARLY_FRAMES, WriterProcess, plain_ends

pytestmark = pytest.mark.anyio


def fan(width: int, leaf_result: object = None) -> Pipeline:
    @task(name="root")
    async def root() -> int:
        return 0

    @task(name="leaf")
    async def leaf() -> object:
        await checkpoint()
        return leaf_result

    top = root()
    for _ in range(width):
        top >> leaf()
    return Pipeline("fan", max_concurrency=width + 1).add_task(top)


async def ready(store: SQLiteStore) -> WriterProcess:
    """The store's writer process once it takes batches."""
    with anyio.fail_after(60):
        assert await store.start_writer()
    assert store._writer is not None
    return store._writer


@contextlib.contextmanager
def write_lock(path: Path) -> Iterator[sqlite3.Connection]:
    """Another connection holding the file's write lock (the child waits on it to
    write) until the block ends or it rolls back."""
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        yield blocker
    finally:
        if blocker.in_transaction:
            blocker.execute("ROLLBACK")
        blocker.close()


def gone(pid: int) -> bool:
    """Whether ``pid`` has exited (a zombie waiting for its parent counts as gone).

    A process reaped between the open and the read raises ProcessLookupError: gone too.
    """
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except (FileNotFoundError, ProcessLookupError):
        return True


class Spy:
    """Counts the batches this process's thread writes."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.sizes: list[int] = []
        original = SQLiteStore._write

        def spy(
            store: SQLiteStore,
            conn: sqlite3.Connection,
            events: list[Record],
            owner: str,
            **how: bool,
        ) -> list[str]:
            self.sizes.append(len(events))
            return original(store, conn, events, owner, **how)

        monkeypatch.setattr(SQLiteStore, "_write", spy)


async def test_plain_batches_are_written_by_the_writer_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with SQLiteStore(tmp_path / "runs.sqlite") as store:
        await ready(store)
        here = Spy(monkeypatch)
        result = await fan(300, leaf_result=7).run(store=store)
        assert result.history_error is None
        tasks = await store.get_tasks(result.run_id)
        assert len(tasks) == 301
        assert {t.state for t in tasks} == {TaskState.SUCCESS}
        assert {t.result for t in tasks if t.key != "root"} == {7}
        assert (await store.get_run(result.run_id)).status == "SUCCESS"
        # Only the run's start (its parameters are not plain) went through this
        # process's thread; every record and the run's end went to the child.
        assert here.sizes == [1]


async def test_batches_that_are_not_plain_are_written_here_with_their_tracebacks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    @task(name="boom")
    async def boom() -> None:
        raise ValueError("no good")

    @task(name="locked")
    async def locked() -> object:
        return threading.Lock()  # cannot be pickled: it must not reach the child

    @task(name="huge")
    async def huge() -> int:
        return 10**5000  # past the interpreter's digit limit: skipped, not an error

    async with SQLiteStore(tmp_path / "runs.sqlite") as store:
        await ready(store)
        here = Spy(monkeypatch)
        pipeline = Pipeline("mixed").add_task(boom()).add_task(locked()).add_task(huge())
        result = await pipeline.run(store=store)
        assert result.history_error is None
        tasks = {t.key: t for t in await store.get_tasks(result.run_id)}
        assert tasks["boom"].state == TaskState.FAILED
        attempt = tasks["boom"].attempts[-1]
        assert attempt.error_type == "ValueError"
        assert "in boom" in (attempt.error_traceback or "")  # its frames, formatted here
        assert tasks["locked"].result_type == "_thread.lock"
        assert tasks["huge"].result_type == "int"
        assert not tasks["huge"].result_stored
        assert len(here.sizes) >= 2  # the start, and the batch with the error and the lock


async def test_a_killed_writer_is_retired_and_the_run_is_recorded_whole(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    release = anyio.Event()

    @task(name="wait")
    async def wait() -> None:
        await release.wait()

    async with SQLiteStore(tmp_path / "runs.sqlite") as store:
        writer = await ready(store)
        top = wait()
        for _ in range(200):
            top >> fan_leaf()
        async with anyio.create_task_group() as tg:
            outcome = []

            async def run() -> None:
                outcome.append(await Pipeline("killed").add_task(top).run(store=store))

            tg.start_soon(run)
            await wait_all_tasks_blocked()
            os.kill(writer.pid, signal.SIGKILL)
            await anyio.to_thread.run_sync(writer._process.wait)
            release.set()
        result = outcome[0]
        assert result.status == "SUCCESS"
        assert result.history_error is None
        tasks = await store.get_tasks(result.run_id)
        assert len(tasks) == 201
        assert {t.state for t in tasks} == {TaskState.SUCCESS}
        assert "writer process retired" in caplog.text
        assert store._writer is None  # the thread writes from now on


@task(name="leaf")
async def fan_leaf() -> None:
    await checkpoint()


def _record(run_id: str, key: str, state: TaskState, at: float) -> TaskRecord:
    return (run_id, key, state, at, 1, None, None, "", (), None, "p", at - 1.0)


async def test_a_batch_cut_short_never_lands_after_the_next_one(tmp_path: Path) -> None:
    path = tmp_path / "runs.sqlite"
    async with SQLiteStore(path, busy_timeout=10.0) as store:
        writer = await ready(store)
        run_id, now = "r1", time.time()
        start = RunStarted(run_id, "p", now, {}, ("a",))
        await store.record([start])
        # Another connection holds the write lock: the child waits on it with the
        # next batch, and reads nothing more meanwhile.
        with write_lock(path):
            await store.record([_record(run_id, "a", TaskState.RUNNING, now)])  # early
            # A batch too large for the socket's buffer, cancelled halfway through.
            many: list[Record] = [
                _record(run_id, f"x{i}", TaskState.SUCCESS, now) for i in range(200_000)
            ]
            with anyio.CancelScope() as scope:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(store.record, many)
                    await wait_all_tasks_blocked()
                    scope.cancel()
            assert writer.retired
        # The later state, written by this process's thread once the child is gone,
        # after the early batch the child may not have written.
        await store.record([_record(run_id, "a", TaskState.SUCCESS, now + 2)])
        assert gone(writer.pid)
        tasks = await store.get_tasks(run_id)
        assert [(t.key, t.state) for t in tasks] == [("a", TaskState.SUCCESS)]
        assert tasks[0].finished == pytest.approx(now + 2)


async def test_a_wait_for_an_answer_cancelled_keeps_the_writer(tmp_path: Path) -> None:
    path = tmp_path / "runs.sqlite"
    async with SQLiteStore(path, busy_timeout=10.0) as store:
        writer = await ready(store)
        run_id, now = "r1b", time.time()
        await store.record([RunStarted(run_id, "p", now, {}, ("a",))])
        with write_lock(path):
            end = RunFinished(run_id, "p", RunStatus.FAILED, now + 1, now)
            with anyio.CancelScope() as scope:
                async with anyio.create_task_group() as tg:
                    failed = _record(run_id, "a", TaskState.FAILED, now + 1)
                    tg.start_soon(store.record, [failed, end])  # waits for its answer
                    await wait_all_tasks_blocked()
                    scope.cancel()
            # Sent whole and not answered yet: the next exchange reads its answer.
            assert not writer.retired
            assert writer.owed == 1
            await store.record([_record(run_id, "a", TaskState.SUCCESS, now + 2)])
        tasks = await store.get_tasks(run_id)
        assert [(t.key, t.state) for t in tasks] == [("a", TaskState.SUCCESS)]
        assert not writer.retired


def _end(run_id: str, at: float) -> RunFinished:
    return RunFinished(run_id, "p", RunStatus.SUCCESS, at, at - 1.0)


async def test_a_failed_write_in_the_child_is_the_callers_error(tmp_path: Path) -> None:
    path = tmp_path / "runs.sqlite"
    async with SQLiteStore(path) as store:
        writer = await ready(store)
        path.unlink()
        sqlite3.connect(path).close()  # another file where the store's was
        now = time.time()
        with pytest.raises(StoreUnavailable, match="deleted or replaced") as caught:
            await store.record([_record("r2", "a", TaskState.SUCCESS, now), _end("r2", now)])
        assert str(caught.value).count(store.name) == 1
        # It left after the batch it could not write; this process's thread then
        # found the file replaced too.
        assert writer.retired
        assert handed_back(caught.value) == []  # nothing of r2 was answered early


async def test_early_batches_are_answered_before_the_child_writes_them(tmp_path: Path) -> None:
    path = tmp_path / "runs.sqlite"
    async with SQLiteStore(path, busy_timeout=20.0) as store:
        writer = await ready(store)
        run_id, now = "e1", time.time()
        await store.record([RunStarted(run_id, "p", now, {}, ("a", "b"))])
        with write_lock(path) as blocker:  # the child cannot write until it is released
            with anyio.fail_after(10):  # answered without the child: it waits on the lock
                await store.record([_record(run_id, "a", TaskState.SUCCESS, now)])
            assert writer.owed == 1
            ended = anyio.Event()

            async def finish() -> None:
                await store.record(
                    [_record(run_id, "b", TaskState.SUCCESS, now), _end(run_id, now)]
                )
                ended.set()

            async with anyio.create_task_group() as tg:
                tg.start_soon(finish)
                await wait_all_tasks_blocked()
                assert not ended.is_set()  # the run's end waits for the child
                blocker.execute("ROLLBACK")
        assert writer.owed == 0
        assert not writer.retired
        assert {t.key: t.state for t in await store.get_tasks(run_id)} == {
            "a": TaskState.SUCCESS,
            "b": TaskState.SUCCESS,
        }


async def test_a_full_window_of_early_batches_waits_for_the_oldest_answer_only(
    tmp_path: Path,
) -> None:
    """Once a batch beyond EARLY_FRAMES is sent, it waits until the child has written
    the oldest (what a lost child takes back stays bounded), not for the child's whole
    backlog; cancelled while it waits, the batch it sent is still written."""
    path = tmp_path / "runs.sqlite"
    async with SQLiteStore(path, busy_timeout=20.0) as store:
        writer = await ready(store)
        run_id, now = "w1", time.time()
        keys = [f"t{i}" for i in range(EARLY_FRAMES + 2)]
        await store.record([RunStarted(run_id, "p", now, {}, tuple(keys))])
        with write_lock(path) as blocker:  # the child cannot write until it is released
            with anyio.fail_after(10):
                for key in keys[:EARLY_FRAMES]:
                    await store.record([_record(run_id, key, TaskState.SUCCESS, now)])
            assert writer.owed == EARLY_FRAMES
            sent = anyio.Event()

            async def one_more(key: str, scope: anyio.CancelScope | None = None) -> None:
                with scope or anyio.CancelScope():
                    await store.record([_record(run_id, key, TaskState.SUCCESS, now)])
                    sent.set()

            # Cancelled while it waits for the child: its batch was sent, and stays sent.
            async with anyio.create_task_group() as tg:
                scope = anyio.CancelScope()
                tg.start_soon(one_more, keys[EARLY_FRAMES], scope)
                await wait_all_tasks_blocked()
                assert not sent.is_set()  # the window is full: it waits for the child
                scope.cancel()
            assert not sent.is_set()
            assert writer.owed == EARLY_FRAMES + 1
            async with anyio.create_task_group() as tg:
                tg.start_soon(one_more, keys[-1])
                await wait_all_tasks_blocked()
                assert not sent.is_set()
                blocker.execute("ROLLBACK")
            assert sent.is_set()
        assert not writer.retired
        assert writer.owed == EARLY_FRAMES  # the oldest answers read, not every one
        await store.record([_end(run_id, now)])
        assert writer.owed == 0
        tasks = await store.get_tasks(run_id)
        assert {t.key: t.state for t in tasks} == dict.fromkeys(keys, TaskState.SUCCESS)


async def test_a_child_that_fails_while_the_window_is_full_takes_the_batch_sent_last(
    tmp_path: Path,
) -> None:
    """The batch past the window is sent, then the child fails the oldest frame: the
    batch is the writer's, as a lost frame, and the next exchange has the thread
    write every lost frame once. The call that sent it does not fail, write it a
    second time, or hand it back to its own caller."""
    path = tmp_path / "runs.sqlite"
    async with SQLiteStore(path, busy_timeout=0.5) as store:
        writer = await ready(store)
        run_id, now = "f1", time.time()
        keys = [f"t{i}" for i in range(EARLY_FRAMES + 1)]
        await store.record([RunStarted(run_id, "p", now, {}, tuple(keys))])
        written: list[str] = []
        write = store._write

        def counting(conn: sqlite3.Connection, events: Any, owner: str, **kw: Any) -> None:
            write(conn, events, owner, **kw)
            written.extend(e[1] for e in events if isinstance(e, tuple))

        store._write = counting  # type: ignore[method-assign]
        with write_lock(path):  # the child's first frame fails on the lock's timeout
            for key in keys[:EARLY_FRAMES]:
                await store.record([_record(run_id, key, TaskState.SUCCESS, now)])
            with anyio.fail_after(30):
                await store.record([_record(run_id, keys[-1], TaskState.SUCCESS, now)])
            assert writer.retired
        await store.record([_end(run_id, now)])
        assert sorted(written) == sorted(keys)  # each once, by the thread
        tasks = await store.get_tasks(run_id)
        assert {t.key: t.state for t in tasks} == dict.fromkeys(keys, TaskState.SUCCESS)


async def test_a_read_waits_for_the_early_batches(tmp_path: Path) -> None:
    path = tmp_path / "runs.sqlite"
    async with SQLiteStore(path, busy_timeout=20.0) as store:
        await ready(store)
        run_id, now = "e2", time.time()
        await store.record([RunStarted(run_id, "p", now, {}, ("a",))])
        with write_lock(path) as blocker:
            await store.record([_record(run_id, "a", TaskState.SUCCESS, now)])  # early
            read: list[list[TaskState]] = []

            async def look() -> None:
                read.append([t.state for t in await store.get_tasks(run_id)])

            async with anyio.create_task_group() as tg:
                tg.start_soon(look)
                await wait_all_tasks_blocked()
                assert not read  # it waits for the child's answer, not only for the lock
                blocker.execute("ROLLBACK")
        assert read == [[TaskState.SUCCESS]]


async def test_early_batches_of_a_killed_child_are_written_here_in_order(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "runs.sqlite"
    async with SQLiteStore(path, busy_timeout=20.0) as store:
        writer = await ready(store)
        run_id, now = "e3", time.time()
        await store.record([RunStarted(run_id, "p", now, {}, ("a", "b"))])
        with write_lock(path):
            await store.record([_record(run_id, "a", TaskState.RUNNING, now)])
            await store.record([_record(run_id, "b", TaskState.RUNNING, now)])
            await store.record([_record(run_id, "a", TaskState.SUCCESS, now + 1)])
            assert writer.owed == 3  # all answered: none written yet
            os.kill(writer.pid, signal.SIGKILL)
            await anyio.to_thread.run_sync(writer._process.wait)
        await store.record(
            [_record(run_id, "b", TaskState.SUCCESS, now + 2), _end(run_id, now + 3)]
        )
        assert writer.retired
        assert "writer process retired" in caplog.text
        tasks = await store.get_tasks(run_id)
        assert [(t.key, t.state) for t in tasks] == [
            ("a", TaskState.SUCCESS),  # its later record won: the batches kept their order
            ("b", TaskState.SUCCESS),
        ]
        assert tasks[0].finished == pytest.approx(now + 1)
        with sqlite3.connect(path) as check:  # rows in the order the store heard of them
            keys = [k for (k,) in check.execute("SELECT key FROM tasks ORDER BY rowid")]
        assert keys == ["a", "b"]


async def _a_batch_the_child_will_refuse(
    store: SQLiteStore, path: Path
) -> tuple[WriterProcess, float, list[Any]]:
    """Runs "mine" and "other" started; the file replaced; an early batch of "mine"
    sent (answered at once: the child will refuse it)."""
    writer = await ready(store)
    now = time.time()
    await store.record([RunStarted("mine", "p", now, {}, ("a",))])
    await store.record([RunStarted("other", "p", now, {}, ("x",))])
    path.unlink()
    sqlite3.connect(path).close()  # another file where the store's was
    early = [_record("mine", "a", TaskState.RUNNING, now)]
    await store.record(early)
    return writer, now, early


async def test_early_batches_that_cannot_be_written_go_back_to_their_run(
    tmp_path: Path,
) -> None:
    path = tmp_path / "runs.sqlite"
    async with SQLiteStore(path) as store:
        writer, now, early = await _a_batch_the_child_will_refuse(store, path)
        refused: StoreUnavailable | None = None
        try:
            await store.record([_record("other", "x", TaskState.RUNNING, now)])
        except StoreUnavailable as exc:
            refused = exc
        # Sent early while the child was still there (the batch is the writer's), or
        # the child had left already (a loaded machine): then the thread, which writes
        # the carried batches first, found the file replaced. This batch is its
        # caller's, and nothing of the other run's comes back with it.
        sent_early = refused is None
        if refused is not None:
            assert "deleted or replaced" in str(refused)
            assert handed_back(refused) == []
        with pytest.raises(StoreUnavailable, match="deleted or replaced") as caught:
            await store.record([_record("mine", "a", TaskState.SUCCESS, now), _end("mine", now)])
        assert writer.retired
        # Handed back to the run they belong to, in order, for its runner to retry
        # and count; the other run's early batch stays with the store.
        assert handed_back(caught.value) == early
        assert [r[0] for r in store._carry] == (["other"] if sent_early else [])


async def test_a_batch_sent_after_the_child_left_goes_back_to_its_own_run_only(
    tmp_path: Path,
) -> None:
    """The other order of the test above, made certain: the child refused a run's
    early batch and has exited before another run records. The thread, which writes
    the carried batches first, finds the file replaced: the other run's call fails
    with nothing of the first run's handed to it, and the first run gets its early
    batch back with its next call."""
    path = tmp_path / "runs.sqlite"
    async with SQLiteStore(path) as store:
        writer, now, early = await _a_batch_the_child_will_refuse(store, path)
        await anyio.to_thread.run_sync(writer._process.wait)  # and leave
        with pytest.raises(StoreUnavailable, match="deleted or replaced") as refused:
            await store.record([_record("other", "x", TaskState.RUNNING, now)])
        assert handed_back(refused.value) == []
        with pytest.raises(StoreUnavailable, match="deleted or replaced") as caught:
            await store.record([_record("mine", "a", TaskState.SUCCESS, now), _end("mine", now)])
        assert handed_back(caught.value) == early
        assert store._carry == []


async def test_the_writer_starts_with_the_first_record(tmp_path: Path) -> None:
    async with SQLiteStore(tmp_path / "runs.sqlite") as store:
        await store.list_runs()
        assert store._writer is None  # reading starts no process
        await fan(2).run(store=store)
        writer: WriterProcess | None = getattr(store, "_writer")  # noqa: B009 -- unnarrowed
        assert writer is not None
        with anyio.fail_after(60):
            assert await writer.wait_ready()


async def test_a_writer_that_cannot_start_leaves_the_writes_to_the_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # No interpreter to start: no child at all.
    monkeypatch.setattr(sys, "executable", str(tmp_path / "no-python"))
    async with SQLiteStore(tmp_path / "a.sqlite") as store:
        assert not await store.start_writer()
        result = await fan(20).run(store=store)
        assert len(await store.get_tasks(result.run_id)) == 21
    assert "writer process not started" in caplog.text
    monkeypatch.undo()
    # A child that starts but cannot open the file says why, and is retired.
    spawn = WriterProcess.spawn

    def bad_settings(settings: dict[str, object]) -> WriterProcess | None:
        return spawn({**settings, "busy_timeout": -1.0})

    monkeypatch.setattr(WriterProcess, "spawn", staticmethod(bad_settings))
    async with SQLiteStore(tmp_path / "b.sqlite") as store:
        with anyio.fail_after(60):
            assert not await store.start_writer()
        result = await fan(20).run(store=store)
        assert len(await store.get_tasks(result.run_id)) == 21
    assert "busy_timeout must be >= 0" in caplog.text


async def test_a_writer_that_never_gets_ready_is_retired_and_the_thread_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # A child stuck before it opens the file (here: asleep in its first statements).
    monkeypatch.setattr(_sqlite_writer, "_CHILD_CODE", "import time; time.sleep(600)")
    monkeypatch.setattr(_sqlite_writer, "START_TIMEOUT", 0.5)
    async with SQLiteStore(tmp_path / "runs.sqlite") as store:
        with anyio.fail_after(30):
            assert not await store.start_writer()
        writer = store._writer
        assert writer is not None
        assert writer.retired
        with anyio.fail_after(30):
            await anyio.to_thread.run_sync(writer._process.wait)  # killed, not left asleep
        result = await fan(20).run(store=store)
        assert len(await store.get_tasks(result.run_id)) == 21
    assert "not ready within 0.5 s" in caplog.text


async def test_the_writer_starts_from_a_folder_with_files_named_like_modules(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "pickle.py").write_text("raise SystemExit('not the module')\n")
    monkeypatch.chdir(tmp_path)
    async with SQLiteStore(tmp_path / "runs.sqlite") as store:
        with anyio.fail_after(60):
            assert await store.start_writer()


async def test_the_writer_opens_the_stores_own_file_or_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "runs.sqlite"
    spawn = WriterProcess.spawn

    def replaced_then_spawn(settings: dict[str, object]) -> WriterProcess | None:
        path.unlink()
        sqlite3.connect(path).close()  # another (empty) file where the store's was
        return spawn(settings)

    monkeypatch.setattr(WriterProcess, "spawn", staticmethod(replaced_then_spawn))
    async with SQLiteStore(path) as store:
        with anyio.fail_after(60):
            assert not await store.start_writer()
        with pytest.raises(StoreUnavailable, match="deleted or replaced"):
            await store.record([_record("r3", "a", TaskState.SUCCESS, time.time())])
    assert "deleted or replaced before the writer started" in caplog.text
    with sqlite3.connect(path) as other:  # the child made no tables in the other file
        assert other.execute("SELECT name FROM sqlite_master").fetchall() == []


async def test_closing_the_store_ends_its_writer_and_reopening_starts_another(
    tmp_path: Path,
) -> None:
    store = SQLiteStore(tmp_path / "runs.sqlite")
    first = await ready(store)
    await store.aclose()
    assert first._process.poll() is not None
    second = await ready(store)
    assert second.pid != first.pid
    await store.aclose()
    assert second._process.poll() is not None


async def _until_gone(pid: int) -> None:
    with anyio.fail_after(30):
        while not gone(pid):
            await anyio.sleep(0.01)


async def test_a_store_dropped_without_closing_ends_its_writer(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "runs.sqlite")
    pid = (await ready(store)).pid
    del store
    gc.collect()
    await _until_gone(pid)


async def test_a_store_dropped_with_early_batches_owed_has_them_written(tmp_path: Path) -> None:
    path = tmp_path / "runs.sqlite"
    store = SQLiteStore(path, busy_timeout=20.0)
    writer = await ready(store)
    pid = writer.pid
    run_id, now = "e5", time.time()
    await store.record([RunStarted(run_id, "p", now, {}, ("a", "b"))])
    with write_lock(path):
        await store.record([_record(run_id, "a", TaskState.SUCCESS, now)])
        await store.record([_record(run_id, "b", TaskState.SUCCESS, now)])
        # What dropping the store does (a worker thread may hold it a while yet):
        # they were answered as recorded, so the child still writes them.
        writer._finalizer()
    await _until_gone(pid)
    with sqlite3.connect(path) as check:
        rows = check.execute("SELECT key, state FROM tasks ORDER BY rowid").fetchall()
    assert rows == [("a", "SUCCESS"), ("b", "SUCCESS")]


async def test_closing_the_store_opens_no_connection_to_end_its_writer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = SQLiteStore(tmp_path / "runs.sqlite")
    await ready(store)
    await store.record([RunStarted("e6", "p", time.time(), {}, ())])
    opened: list[int] = []
    connect = SQLiteStore._connect

    def counting(self: SQLiteStore) -> sqlite3.Connection:
        opened.append(1)
        return connect(self)

    monkeypatch.setattr(SQLiteStore, "_connect", counting)
    await store.aclose()
    assert opened == []
    assert store._to_reap == []


async def test_thread_writer_and_memory_databases_start_no_process(tmp_path: Path) -> None:
    for store in (SQLiteStore(tmp_path / "t.sqlite", writer="thread"), SQLiteStore(":memory:")):
        async with store:
            result = await fan(20).run(store=store)
            await fan(20).run(store=store)
            assert len(await store.get_tasks(result.run_id)) == 21
            assert store._writer is None
            assert not await store.start_writer()
    with pytest.raises(StoreConfigError, match="writer must be 'process' or 'thread'"):
        SQLiteStore(tmp_path / "x.sqlite", writer="fork")  # type: ignore[arg-type]


def test_store_urls_choose_the_writer(tmp_path: Path) -> None:
    thread = open_store(f"sqlite:///{tmp_path / 'a.sqlite'}?writer=thread")
    process = open_store(f"sqlite:///{tmp_path / 'a.sqlite'}")
    assert isinstance(thread, SQLiteStore)
    assert isinstance(process, SQLiteStore)
    assert not thread._process_writer
    assert process._process_writer
    with pytest.raises(StoreURLError, match="writer must be process or thread"):
        open_store(f"sqlite:///{tmp_path / 'a.sqlite'}?writer=fork")


_OUTLIVED = """
import sys, anyio
sys.path.insert(0, sys.argv[2])
from test_sqlite_writer import ready
from dremioframe_async.store import SQLiteStore

async def main():
    store = SQLiteStore(sys.argv[1])
    writer = await ready(store)
    print(writer.pid, flush=True)
    await anyio.sleep_forever()

anyio.run(main)
"""


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_the_writer_leaves_when_its_store_process_is_killed(tmp_path: Path) -> None:
    here = str(Path(__file__).parent)
    argv = [sys.executable, "-c", _OUTLIVED, str(tmp_path / "runs.sqlite"), here]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, start_new_session=False)
    try:
        assert proc.stdout is not None
        line = await anyio.to_thread.run_sync(proc.stdout.readline)
        pid = int(line)
        assert not gone(pid)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        with anyio.fail_after(30):
            while not gone(pid):
                await anyio.sleep(0.02)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


async def test_closing_the_store_mid_exchange_sends_the_batch_to_the_thread(
    tmp_path: Path,
) -> None:
    path = tmp_path / "runs.sqlite"
    store = SQLiteStore(path, busy_timeout=20.0)
    writer = await ready(store)
    run_id, now = "r4", time.time()
    await store.record([RunStarted(run_id, "p", now, {}, ("a",))])
    with write_lock(path) as blocker:  # the child waits on it with the next batch
        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                tg.start_soon(store.record, [_record(run_id, "a", TaskState.SUCCESS, now)])
                await wait_all_tasks_blocked()
                tg.start_soon(store.aclose)
                await wait_all_tasks_blocked()  # the exchange failed; both wait on threads
                blocker.execute("ROLLBACK")
    assert writer.retired
    assert writer._process.poll() is not None
    async with store:
        (a,) = await store.get_tasks(run_id)
        assert a.state == TaskState.SUCCESS


async def test_concurrent_starts_and_records_share_one_writer(tmp_path: Path) -> None:
    async with SQLiteStore(tmp_path / "runs.sqlite") as store:
        started: list[bool] = []
        results = []

        async def start() -> None:
            started.append(await store.start_writer())

        async def run() -> None:
            results.append(await fan(50).run(store=store))

        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                for _ in range(3):
                    tg.start_soon(start)
                    tg.start_soon(run)
        assert started == [True, True, True]
        assert store._writer is not None
        assert not store._writer.retired
        for result in results:
            assert result.history_error is None
            assert len(await store.get_tasks(result.run_id)) == 51


async def test_a_writer_whose_socket_number_is_past_1023_keeps_writing(tmp_path: Path) -> None:
    held = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]  # numbers past 1023
    try:
        async with SQLiteStore(tmp_path / "runs.sqlite") as store:
            writer = await ready(store)
            now = time.time()
            for batch in range(3):  # past the rows after which it looks for idle time
                run_id = f"r{batch}"
                records: list[Record] = [
                    _record(run_id, f"t{i}", TaskState.SUCCESS, now) for i in range(3000)
                ]
                await store.record([*records, _end(run_id, now)])
            assert not writer.retired
            with sqlite3.connect(tmp_path / "runs.sqlite") as check:
                (rows,) = check.execute("SELECT count(*) FROM tasks").fetchone()
            assert rows == 9000
    finally:
        for fd in held:
            os.close(fd)


async def test_a_failed_first_record_still_starts_the_writer(tmp_path: Path) -> None:
    folder = tmp_path / "later"
    store = SQLiteStore(folder / "runs.sqlite")
    try:
        with pytest.raises(StoreUnavailable, match="no such folder"):
            await store.record([RunStarted("r5", "p", time.time(), {}, ())])
        folder.mkdir()
        with anyio.fail_after(60):
            assert await store.start_writer()
    finally:
        await store.aclose()


async def test_runs_the_child_ended_are_forgotten_here(tmp_path: Path) -> None:
    async with SQLiteStore(tmp_path / "runs.sqlite") as store:
        run_id, now = "r6", time.time()
        # Before the child is ready, this process's thread writes "a" RUNNING, and
        # keeps its key (a later insert of it would fail).
        await store.record(
            [
                RunStarted(run_id, "p", now, {}, ("a",)),
                _record(run_id, "a", TaskState.RUNNING, now),
            ]
        )
        assert store._written.runs() == {run_id: {"a"}}
        with anyio.fail_after(60):
            assert await store.start_writer()
        end = RunFinished(run_id, "p", RunStatus.SUCCESS, now + 1, now)
        await store.record([_record(run_id, "a", TaskState.SUCCESS, now + 1), end])  # the child
        assert store._written.runs() == {}
        assert (await store.get_run(run_id)).status == "SUCCESS"


_FORKED = """
import os, sys, anyio
sys.path.insert(0, sys.argv[2])
from test_sqlite_writer import ready
from dremioframe_async.store import SQLiteStore

async def main():
    store = SQLiteStore(sys.argv[1])
    writer = await ready(store)
    pid = os.fork()
    if pid == 0:  # a copy that outlives the store: it must not hold the writer's socket open
        import time
        time.sleep(30)
        os._exit(0)
    try:
        await store.aclose()
        print(writer._process.returncode, flush=True)  # 0: it left at its socket's end
    finally:
        os.kill(pid, 9)
        os.waitpid(pid, 0)

anyio.run(main)
"""


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_forked_copy_does_not_keep_the_writer_alive(tmp_path: Path) -> None:
    here = str(Path(__file__).parent)
    argv = [sys.executable, "-c", _FORKED, str(tmp_path / "runs.sqlite"), here]
    proc = await anyio.run_process(argv, check=False)
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout.decode().strip() == "0"


# A process that used its store forks; the copy records a run through the store it
# inherited while the parent records one too, through the same store ("shared") or
# through a new one after closing its own ("reopened"). Prints each run's task rows.
_FORK_RUNS = """
import os, sqlite3, sys, traceback
import anyio
from dremioframe_async import Pipeline, task
from dremioframe_async.store import SQLiteStore

path, shape = sys.argv[1], sys.argv[2]

@task(name="leaf")
async def leaf(i: int) -> int:
    await anyio.sleep(i % 7 / 1000)
    return i

def pipeline(name):
    p = Pipeline(name, max_concurrency=1_000)
    for i in range(4_000):
        p.add_task(leaf(i))
    return p

store = SQLiteStore(path)

async def before():
    assert await store.start_writer()
    await store.list_runs()

anyio.run(before)
pid = os.fork()
who = "copy" if pid == 0 else "parent"

async def record():
    global store
    if pid != 0 and shape == "reopened":
        await store.aclose()
        store = SQLiteStore(path)
    result = await pipeline(who).run(store=store)
    await store.aclose()
    assert result.status == "SUCCESS" and result.history_error is None, result

try:
    anyio.run(record)
except BaseException:
    if pid != 0:
        raise
    traceback.print_exc()  # the copy's own failure: its exit code says so
    os._exit(1)
if pid == 0:
    os._exit(0)
_, status = os.waitpid(pid, 0)
assert status == 0, status
with sqlite3.connect(path) as check:
    print(check.execute("PRAGMA integrity_check").fetchone()[0])
    rows = "(SELECT count(*) FROM tasks t WHERE t.run_id = r.run_id)"
    query = f"SELECT pipeline, status, {rows} FROM runs r ORDER BY pipeline"
    print(check.execute(query).fetchall())
"""


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.parametrize("shape", ["reopened", "shared"])
async def test_a_forked_copy_records_through_the_store_it_inherited(
    tmp_path: Path, shape: str
) -> None:
    """Its inherited SQLite connection wrote unlocked into a WAL the parent had removed:
    the file was left malformed ("reopened": every time), or the copy's rows went
    missing while its run() reported nothing ("shared": about 1 run in 8)."""
    for attempt in range(3 if shape == "shared" else 1):
        path = tmp_path / f"runs{attempt}.sqlite"
        argv = [sys.executable, "-c", _FORK_RUNS, str(path), shape]
        with anyio.fail_after(120):
            proc = await anyio.run_process(argv, check=False)
        out = proc.stdout.decode().split("\n")
        assert proc.returncode == 0, proc.stderr.decode()
        assert out[:2] == ["ok", "[('copy', 'SUCCESS', 4000), ('parent', 'SUCCESS', 4000)]"]


_FORK_MEMORY = """
import functools, os
import anyio
from dremioframe_async import Pipeline, task
from dremioframe_async.store import SQLiteStore

@task(name="one")
async def one() -> int:
    return 1

store = SQLiteStore(":memory:")
result = anyio.run(functools.partial(Pipeline("mem").add_task(one()).run, store=store))
pid = os.fork()
if pid == 0:
    status = anyio.run(store.get_run, result.run_id).status.value
    os._exit(0 if status == "SUCCESS" else 1)
_, code = os.waitpid(pid, 0)
assert code == 0, code
print(anyio.run(store.get_run, result.run_id).status.value)
"""


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_forked_copy_of_an_in_memory_store_keeps_its_runs(tmp_path: Path) -> None:
    """An in-memory database is the copy's own copy: nothing to close and reopen (doing
    so gave the copy an empty database)."""
    with anyio.fail_after(60):
        proc = await anyio.run_process([sys.executable, "-c", _FORK_MEMORY], check=False)
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout.decode().strip() == "SUCCESS"


class Weird(str):
    """A str subclass of this test module, which the writer process cannot import."""


async def test_a_batch_the_child_cannot_read_is_written_here(tmp_path: Path) -> None:
    async with SQLiteStore(tmp_path / "runs.sqlite") as store:
        writer = await ready(store)
        now = time.time()
        odd = ("r7", "a", TaskState.SUCCESS, now, 1, None, None, "", (Weird("up"),), None, "p", now)
        await store.record([odd])  # plain to look at; its upstream key does not unpickle there
        await store.record([_record("r7", "b", TaskState.SUCCESS, now)])  # sent after it
        with anyio.fail_after(30):  # it leaves on its own: "b" must not land before "a"
            await anyio.to_thread.run_sync(writer._process.wait)
        await store.list_runs()  # the store's next call reads the child's answer
        assert writer.retired
        with sqlite3.connect(tmp_path / "runs.sqlite") as check:
            rows = check.execute("SELECT key, state, upstream FROM tasks ORDER BY rowid").fetchall()
        assert [(key, state) for key, state, _ in rows] == [("a", "SUCCESS"), ("b", "SUCCESS")]
        assert "up" in rows[0][2]


async def test_closing_the_store_writes_every_early_batch(tmp_path: Path) -> None:
    path = tmp_path / "runs.sqlite"
    store = SQLiteStore(path, busy_timeout=20.0)
    writer = await ready(store)
    run_id, now = "e4", time.time()
    await store.record([RunStarted(run_id, "p", now, {}, ("a", "b"))])
    with write_lock(path) as blocker:
        await store.record([_record(run_id, "a", TaskState.SUCCESS, now)])
        await store.record([_record(run_id, "b", TaskState.SUCCESS, now)])
        assert writer.owed == 2
        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                tg.start_soon(store.aclose)
                await wait_all_tasks_blocked()
                blocker.execute("ROLLBACK")
    assert writer._process.poll() is not None
    async with store:
        states = {t.key: t.state for t in await store.get_tasks(run_id)}
    assert states == {"a": TaskState.SUCCESS, "b": TaskState.SUCCESS}


async def test_rows_the_child_wrote_are_updated_here_without_a_second_write(
    tmp_path: Path,
) -> None:
    async with SQLiteStore(tmp_path / "runs.sqlite") as store:
        await ready(store)
        run_id, now = "r8", time.time()
        await store.record([RunStarted(run_id, "p", now, {}, ("a",))])
        await store.record([_record(run_id, "a", TaskState.RUNNING, now)])  # the child
        statements: list[str] = []
        assert store._conn is not None
        store._conn.set_trace_callback(statements.append)
        failed = (
            run_id,
            "a",
            TaskState.FAILED,
            now + 1,
            1,
            ValueError("x"),
            None,
            "",
            (),
            None,
            "p",
            now,
        )
        await store.record([failed])  # not plain: this process's thread
        store._conn.set_trace_callback(None)
        assert not [sql for sql in statements if sql.startswith("ROLLBACK")]
        (a,) = await store.get_tasks(run_id)
        assert a.state == TaskState.FAILED


async def test_a_writer_of_another_copy_of_the_package_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(_sqlite, "PACKAGE_FILE", str(tmp_path / "elsewhere" / "__init__.py"))
    async with SQLiteStore(tmp_path / "runs.sqlite") as store:
        with anyio.fail_after(60):
            assert not await store.start_writer()
    assert "another copy of dremioframe_async" in caplog.text


async def test_a_wide_fan_ins_batch_is_written_here_after_the_early_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "runs.sqlite"
    async with SQLiteStore(path) as store:
        writer = await ready(store)
        ups = tuple(f"t{i}" for i in range(20_000))
        run_id, now = "r10", time.time()
        await store.record([RunStarted(run_id, "p", now, {}, ("a", "sink"))])
        await store.record([_record(run_id, "a", TaskState.SUCCESS, now)])  # early
        here = Spy(monkeypatch)
        sink = (run_id, "sink", TaskState.SUCCESS, now, 1, None, None, "", ups, None, "p", now)
        await store.record([sink, _end(run_id, now + 1)])
        assert here.sizes == [2]  # the thread wrote it, after the child's answer
        assert not writer.retired
        tasks = {t.key: t for t in await store.get_tasks(run_id)}
        assert {k: t.state for k, t in tasks.items()} == {
            "a": TaskState.SUCCESS,
            "sink": TaskState.SUCCESS,
        }
        assert len(tasks["sink"].upstream) == 20_000
        assert (await store.get_run(run_id)).status == "SUCCESS"


def test_a_wide_fan_ins_record_is_not_plain() -> None:
    now = time.time()
    narrow = tuple(f"t{i}" for i in range(16_384))
    record = ("r9", "sink", TaskState.SUCCESS, now, 1, None, None, "", narrow, None, "p", now)
    assert plain_ends([record]) == []
    wide = (*record[:8], (*narrow, "one more"), *record[9:])
    # Its keys would cost the loop more to pickle than this process's thread takes to
    # write them (a sink after 10^6 tasks: 15 MB).
    assert plain_ends([wide]) is None


# -- a full disk -------------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MB tmpfs: a disk that really fills up (mounting one needs root)."""
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"mounting a 2 MB tmpfs needs root (mount said: {done.stderr.strip()})")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


async def test_a_full_disk_is_reported_as_full_and_the_writer_stays_quiet(
    small_disk: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """SQLite rolls a transaction back itself when the disk is full: the ROLLBACK after
    it failed and hid the cause ("no transaction is active"), and the child's idle
    checkpoint died with a traceback on the application's stderr."""
    store = SQLiteStore(small_disk / "runs.sqlite", busy_timeout=1.0)
    writer = await ready(store)

    @task(name="leaf")
    async def leaf(i: int) -> str:
        await anyio.sleep(i % 10 / 1000)  # batches with pauses: the child checkpoints
        return "x" * 100

    pipeline = Pipeline("full", max_concurrency=2_000)
    for i in range(20_000):
        pipeline.add_task(leaf(i))
    try:
        result = await pipeline.run(store=store)
        assert result.status == "SUCCESS"
        assert isinstance(result.history_error, HistoryIncomplete)
        assert "database or disk is full" in str(result.history_error)
        assert "no transaction is active" not in str(result.history_error)
    finally:
        await store.aclose()
    await _until_gone(writer.pid)
    assert "Traceback" not in capfd.readouterr().err
