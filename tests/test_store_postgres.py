"""PostgreSQL specifics: migrations, concurrent first runs, lost connections, 1,000 runs."""

from __future__ import annotations

import secrets
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import _store_fixtures
import anyio
import anyio.lowlevel
import pytest
import pytest_asyncio
from _threads_taken import default_threads_taken
from test_store import T0, sample_run, state

from dremioframe_async import Pipeline, RunResult, task
from dremioframe_async.orchestration import Event, RunFinished, RunStarted, TaskState, _dispatch
from dremioframe_async.store import PostgresStore, RunStatus, StoreUnavailable, _fold
from dremioframe_async.store._fold import Fold, fold_sliced
from dremioframe_async.store._postgres import SCHEMA_VERSION
from dremioframe_async.store._postgres_batch import COPY_ROWS, JSON_ROWS
from dremioframe_async.store._sql import migration


@pytest_asyncio.fixture
async def schema(pg_url: str) -> AsyncIterator[str]:
    name = f"dfa_test_{secrets.token_hex(6)}"
    try:
        yield name
    finally:
        await _store_fixtures.drop_schema(pg_url, name)


async def _make_version_2(url: str, schema: str) -> None:
    """A schema at version 2, holding a run written the old way (PENDING rows)."""
    import asyncpg

    p = f'"{schema}".'
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(f'CREATE SCHEMA "{schema}"')
        await conn.execute(
            f"CREATE TABLE {p}schema_migrations "
            "(version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
        )
        for statement in (*migration(1, "postgres", p), *migration(2, "postgres", p)):
            await conn.execute(statement)
        await conn.execute(f"INSERT INTO {p}schema_migrations (version) VALUES (1), (2)")
        await conn.execute(
            f"INSERT INTO {p}runs (run_id, pipeline, status, started) "
            "VALUES ('old', 'p', 'FAILED', 1)"
        )
        await conn.execute(
            f"INSERT INTO {p}tasks (run_id, key, state) "
            "VALUES ('old', 'a', 'SUCCESS'), ('old', 'b', 'PENDING')"
        )
    finally:
        await conn.close()


@pytest.mark.asyncio
async def test_a_version_2_schema_with_pending_rows_is_migrated(pg_url: str, schema: str) -> None:
    await _make_version_2(pg_url, schema)
    async with PostgresStore(pg_url, schema=schema, max_size=2) as store:
        assert (await store.get_run("old")).counts == {"SUCCESS": 1, "PENDING": 1}
        tasks = await store.get_tasks("old")
        assert [(t.key, t.state) for t in tasks] == [("a", "SUCCESS"), ("b", "PENDING")]
        await store.record(sample_run("new"))
        assert [t.key for t in await store.get_tasks("new")] == ["a", "b", "c", "d"]
        pool = await store._ensure()
        versions = await pool.fetch(f'SELECT version FROM "{schema}".schema_migrations')
    assert sorted(v for (v,) in versions) == list(range(1, SCHEMA_VERSION + 1))


def _small_pipeline(name: str = "many") -> Pipeline:
    @task(name="first")
    async def first() -> int:
        return 1

    @task(name="second")
    async def second(context: Any) -> int:
        return int(context["first"]) + 1

    return Pipeline(name).add_task(first() >> second())


@pytest.mark.asyncio
async def test_two_first_runs_at_once_on_a_fresh_store(pg_url: str, schema: str) -> None:
    # Both runs' first record() used to open an owner-lock connection each and
    # take the same advisory lock: the second waited for the first forever.
    pipeline = _small_pipeline()
    async with PostgresStore(pg_url, schema=schema, max_size=2) as store:
        results: list[RunResult] = []

        async def one() -> None:
            results.append(await pipeline.run(store=store))

        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:
                tg.start_soon(one)
                tg.start_soon(one)
        assert [r.status for r in results] == ["SUCCESS", "SUCCESS"]
        assert [r.history_error for r in results] == [None, None]


@pytest.mark.asyncio
@pytest.mark.timeout(180)
async def test_a_thousand_concurrent_runs_on_a_fresh_database_are_all_recorded(
    pg_url: str, schema: str
) -> None:
    pipeline = _small_pipeline()
    async with PostgresStore(pg_url, schema=schema, max_size=4) as store:
        results: list[RunResult] = []

        async def one() -> None:
            results.append(await pipeline.run(store=store))

        with anyio.fail_after(150):
            async with anyio.create_task_group() as tg:
                for _ in range(1000):
                    tg.start_soon(one)
        runs = await store.list_runs(limit=None)
    assert len(results) == 1000
    assert {(r.status, r.history_error) for r in results} == {("SUCCESS", None)}
    assert len(runs) == 1000
    assert {r.run_id for r in runs} == {r.run_id for r in results}
    assert {(r.status, r.counts.get("SUCCESS")) for r in runs} == {(RunStatus.SUCCESS, 2)}


@pytest.mark.asyncio
async def test_a_runs_durable_start_is_one_statement(pg_url: str, schema: str) -> None:
    queries: list[str] = []

    @task(name="look")
    async def look() -> int:
        return len(queries)  # what the store sent before this first task started

    pipeline = Pipeline("one_trip").add_task(look())
    async with PostgresStore(pg_url, schema=schema, min_size=1, max_size=1) as store:
        await pipeline.run(store=store)
        pool = await store._ensure()
        async with pool.acquire() as conn:
            conn.add_query_logger(lambda record: queries.append(record.query))
        queries.clear()
        result = await pipeline.run(store=store)
    assert result["look"] == 1, queries
    assert queries[0].startswith(f'INSERT INTO "{schema}".runs')


@pytest.mark.asyncio
async def test_lost_connections_are_replaced_and_leave_no_run_interrupted(
    pg_url: str, schema: str
) -> None:
    pipeline = _small_pipeline()
    async with PostgresStore(pg_url, schema=schema, max_size=2) as store:
        first = await pipeline.run(store=store)
        pool = await store._ensure()
        for conn in pool._holders:  # the server restarted, say: every session is gone
            if conn._con is not None:
                conn._con.terminate()
        result = await pipeline.run(store=store)
        assert (result.status, result.history_error) == ("SUCCESS", None)
        runs = {r.run_id: r.status for r in await store.list_runs()}
    assert runs == {first.run_id: RunStatus.SUCCESS, result.run_id: RunStatus.SUCCESS}


def _wide_run(n: int) -> tuple[RunStarted, list[Event], RunFinished]:
    keys = tuple(f"t{i}" for i in range(n))
    ends = [
        state("wide", k, TaskState.SUCCESS, 2 + i / n, 1, result={"i": i})
        for i, k in enumerate(keys)
    ]
    return (
        RunStarted("wide", "etl", T0, {}, keys),
        ends,
        RunFinished("wide", "etl", RunStatus.SUCCESS, T0 + 3, T0),
    )


def _check_wide(tasks: dict[str, Any], n: int) -> None:
    assert len(tasks) == n
    for i in range(n):
        task_ = tasks[f"t{i}"]
        assert (task_.state, task_.result, task_.finished) == (
            TaskState.SUCCESS,
            {"i": i},
            T0 + 2 + i / n,
        )


async def _wide_run_logged(pg_url: str, schema: str, n: int) -> tuple[list[str], Any, Any]:
    """Record ``_wide_run(n)``, its start first; return the statements its end sent,
    its task rows by key and its run."""
    started, ends, finished = _wide_run(n)
    queries: list[str] = []
    async with PostgresStore(pg_url, schema=schema, min_size=1, max_size=1) as store:
        await store.record([started])
        pool = await store._ensure()
        async with pool.acquire() as conn:
            conn.add_query_logger(lambda record: queries.append(record.query))
        await store.record([*ends, finished])
        tasks = {t.key: t for t in await store.get_tasks("wide")}
        run = await store.get_run("wide")
    return queries, tasks, run


@pytest.mark.asyncio
async def test_a_batch_of_many_new_task_rows_is_copied(pg_url: str, schema: str) -> None:
    n = COPY_ROWS + 44
    queries, tasks, run = await _wide_run_logged(pg_url, schema, n)
    # asyncpg logs no COPY: the rows arrived, and no statement inserted them.
    assert not [q for q in queries if q.startswith(f'INSERT INTO "{schema}".tasks')]
    assert any(q.startswith(f'INSERT INTO "{schema}".runs') for q in queries)
    assert run.counts == {"SUCCESS": n}
    _check_wide(tasks, n)


@pytest.mark.asyncio
async def test_a_runs_last_batch_of_few_new_task_rows_is_two_statements(
    pg_url: str, schema: str
) -> None:
    queries, tasks, run = await _wide_run_logged(pg_url, schema, 3)
    # No transaction: the task rows, then the run's end.
    heads = [f'INSERT INTO "{schema}".tasks', f'INSERT INTO "{schema}".runs']
    assert [q[: len(head)] for q, head in zip(queries, heads, strict=False)] == heads
    assert "BEGIN;" not in queries
    assert (run.status, run.counts) == (RunStatus.SUCCESS, {"SUCCESS": 3})
    _check_wide(tasks, 3)


@pytest.mark.asyncio
async def test_a_copied_batch_with_a_row_written_elsewhere_is_upserted(
    pg_url: str, schema: str
) -> None:
    # The first handle takes every row of the batch for new and copies them; one
    # exists (another handle wrote it), so the whole batch falls back to upserts.
    n = COPY_ROWS + 44
    started, ends, finished = _wide_run(n)
    async with (
        PostgresStore(pg_url, schema=schema) as first,
        PostgresStore(pg_url, schema=schema) as second,
    ):
        await first.record([started])
        await second.record([state("wide", "t7", TaskState.RUNNING, 1, 1)])
        await first.record([*ends, finished])
        tasks = {t.key: t for t in await second.get_tasks("wide")}
    _check_wide(tasks, n)
    assert tasks["t7"].started == T0 + 1  # kept from the other handle's row


async def _refuse_inserts(conn: Any, schema: str, table: str, message: str) -> None:
    """A trigger that makes every insert into ``table`` fail with ``message``."""
    await conn.execute(
        f"""CREATE FUNCTION "{schema}".refuse() RETURNS trigger LANGUAGE plpgsql AS
        $$ BEGIN RAISE EXCEPTION '{message}'; END $$"""
    )
    await conn.execute(
        f'CREATE TRIGGER refuse BEFORE INSERT ON "{schema}".{table} '
        f'FOR EACH ROW EXECUTE FUNCTION "{schema}".refuse()'
    )


@pytest.mark.asyncio
@pytest.mark.parametrize("n", [COPY_ROWS + 44, 3], ids=["copied", "inserted"])
async def test_a_run_whose_new_task_rows_fail_is_not_recorded_ended(
    pg_url: str, schema: str, n: int
) -> None:
    # A run's end and its new task rows go as two statements, the task rows first (a
    # copy, or one insert): when they fail, the run's row still says RUNNING.
    import asyncpg

    started, ends, finished = _wide_run(n)
    async with PostgresStore(pg_url, schema=schema) as store:
        await store.record([started])
        conn = await asyncpg.connect(pg_url)
        try:
            await _refuse_inserts(conn, schema, "tasks", "no task rows today")
        finally:
            await conn.close()
        with pytest.raises(StoreUnavailable, match="no task rows today"):
            await store.record([*ends, finished])
        run = await store.get_run("wide")
    assert run.status == RunStatus.RUNNING
    assert run.counts == {"PENDING": n}  # no task row landed


@pytest.mark.asyncio
async def test_a_carried_run_start_lands_with_its_task_rows_or_neither_does(
    pg_url: str, schema: str
) -> None:
    # A run's start whose write failed is carried into the next batch, with its many
    # new task rows: one transaction, so no task row lands without its run.
    import asyncpg

    n = COPY_ROWS + 44
    started, ends, finished = _wide_run(n)
    async with PostgresStore(pg_url, schema=schema) as store:
        await store.list_runs(limit=1)  # the schema exists
        conn = await asyncpg.connect(pg_url)
        try:
            await _refuse_inserts(conn, schema, "runs", "no runs today")
            with pytest.raises(StoreUnavailable, match="no runs today"):
                await store.record([started, *ends, finished])
            count = await conn.fetchval(f'SELECT count(*) FROM "{schema}".tasks')
        finally:
            await conn.close()
    assert count == 0


@pytest.mark.asyncio
async def test_updates_of_more_rows_than_one_json_argument_holds_all_land(
    pg_url: str, schema: str
) -> None:
    n = JSON_ROWS + 76
    started, ends, finished = _wide_run(n)
    running = [state("wide", f"t{i}", TaskState.RUNNING, 1 + i / n, 1) for i in range(n)]
    async with PostgresStore(pg_url, schema=schema) as store:
        await store.record([started, *running])  # new rows: copied
        await store.record([*ends, finished])  # written rows: upserted, in two statements
        tasks = {t.key: t for t in await store.get_tasks("wide")}
    _check_wide(tasks, n)
    assert [tasks[f"t{i}"].started for i in (0, n - 1)] == [T0 + 1, T0 + 1 + (n - 1) / n]


@pytest.mark.asyncio
async def test_a_big_batch_is_folded_a_slice_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    # Folding runs on the loop: other tasks must get their turn meanwhile.
    monkeypatch.setattr(_fold, "HOLD", 0.0)
    _, ends, _ = _wide_run(1000)
    turns = 0
    folded = anyio.Event()

    async def other() -> None:
        nonlocal turns
        while not folded.is_set():
            turns += 1
            await anyio.lowlevel.checkpoint()

    async with anyio.create_task_group() as tg:
        tg.start_soon(other)
        await anyio.lowlevel.checkpoint()  # let it start
        before = turns
        fold = await fold_sliced(Fold("me", None), ends)
        folded.set()
    assert len(fold.tasks) == 1000
    assert turns - before >= 1000 // 64 - 1  # a turn between every two slices


@pytest.mark.asyncio
async def test_a_batch_that_cannot_be_sliced_is_folded_whole() -> None:
    _, ends, _ = _wide_run(200)
    fold = await fold_sliced(Fold("me", None), deque(ends))
    assert len(fold.tasks) == 200


# A process opens its store in one event loop and leaves it open; then it forks, and
# both the copy and the parent record a run through that store in a new event loop.
# The parent reads the store again after the copy has ended.
_FORKED_POSTGRES = """
import os, sys, traceback
import anyio
from dremioframe_async import Pipeline, task
from dremioframe_async.store import PostgresStore

url, schema = sys.argv[1], sys.argv[2]

@task(name="leaf")
async def leaf(i: int) -> int:
    await anyio.sleep(i % 7 / 1000)
    return i

def pipeline(name):
    p = Pipeline(name, max_concurrency=500)
    for i in range(1_000):
        p.add_task(leaf(i))
    return p

store = PostgresStore(url, schema=schema)
anyio.run(store.list_runs)  # its pool belongs to this loop, which ends here
pid = os.fork()
who = "copy" if pid == 0 else "parent"

async def record():
    result = await pipeline(who).run(store=store)
    assert result.status == "SUCCESS" and result.history_error is None, result
    if pid != 0:
        _, status = await anyio.to_thread.run_sync(os.waitpid, pid, 0)
        assert status == 0, status  # the copy ended (and dropped its store) first
        runs = await store.list_runs()
        print(sorted((r.pipeline, r.status.value, sum(r.counts.values())) for r in runs))
    await store.aclose()

try:
    anyio.run(record)
except BaseException:
    if pid != 0:
        raise
    traceback.print_exc()
    os._exit(1)
if pid == 0:
    os._exit(0)
"""


@pytest.mark.asyncio
async def test_a_store_left_open_is_used_by_a_forked_copy_and_a_new_event_loop(
    pg_url: str,
) -> None:
    """Its pool belonged to a finished event loop ("Event loop is closed" in both
    processes), and a forked copy would share the parent's sockets."""
    import sys

    schema = f"dfa_test_{secrets.token_hex(6)}"
    try:
        argv = [sys.executable, "-c", _FORKED_POSTGRES, pg_url, schema]
        with anyio.fail_after(120):
            proc = await anyio.run_process(argv, check=False)
        assert proc.returncode == 0, proc.stderr.decode()
        assert proc.stdout.decode().strip() == (
            "[('copy', 'SUCCESS', 1000), ('parent', 'SUCCESS', 1000)]"
        )
    finally:
        await _store_fixtures.drop_schema(pg_url, schema)


async def _on_record(store: PostgresStore, key: str) -> str:
    """Wait until ``key``'s end is on record in ``store`` (through the store's other
    connections); return its run id."""
    with anyio.fail_after(30):
        while True:
            for run in await store.list_runs(limit=1):
                tasks = {t.key: t.state for t in await store.get_tasks(run.run_id)}
                if tasks.get(key) == TaskState.SUCCESS:
                    return run.run_id
            await anyio.sleep(0.01)


def _two_step_pipeline(store: PostgresStore, then: Any = None) -> Pipeline:
    """``first >> second``, where ``second`` starts once ``first``'s end is written,
    and then awaits ``then(store)``."""

    @task(name="first")
    async def first() -> int:
        return 1

    @task(name="second")
    async def second() -> str:
        await _on_record(store, "first")
        if then is not None:
            await then(store)
        return "done"

    return Pipeline("writer").add_task(first() >> second())


@pytest.mark.asyncio
@pytest.mark.parametrize("max_size", [1, 2])
async def test_a_run_keeps_its_writer_without_starving_the_pool(
    pg_url: str, schema: str, max_size: int
) -> None:
    """Between a run's batches the store keeps the connection that writes them, but
    never the pool's only one: a task that reads the store mid-run is not blocked,
    and the run's end gives the writer back."""
    held: list[bool] = []

    async def look(store: PostgresStore) -> None:
        held.append(store._writer is not None)

    async with PostgresStore(pg_url, schema=schema, min_size=1, max_size=max_size) as store:
        with anyio.fail_after(60):
            result = await _two_step_pipeline(store, look).run(store=store)
        assert (result.status, result.history_error) == ("SUCCESS", None)
        pool = await store._ensure()
        assert store._writer is None
        assert pool.get_idle_size() == pool.get_size()
    assert held == [max_size > 1]
    assert {t.key: t.state for t in await _tasks_of(pg_url, schema, result.run_id)} == {
        "first": TaskState.SUCCESS,
        "second": TaskState.SUCCESS,
    }


async def _tasks_of(pg_url: str, schema: str, run_id: str) -> Any:
    async with PostgresStore(pg_url, schema=schema) as store:
        return await store.get_tasks(run_id)


@pytest.mark.asyncio
async def test_a_writer_whose_session_dies_mid_run_is_replaced(pg_url: str, schema: str) -> None:
    """The server ends the writer's session between two batches (a restart, a
    terminated backend): the next batch goes on another connection, and nothing of
    the run is lost."""
    import asyncpg

    ended: list[bool] = []

    async def kill_writer(store: PostgresStore) -> None:
        pid = store._writer.get_server_pid()
        admin = await asyncpg.connect(pg_url)
        try:
            ended.append(await admin.fetchval("SELECT pg_terminate_backend($1)", pid))
        finally:
            await admin.close()

    async with PostgresStore(pg_url, schema=schema, max_size=3) as store:
        result = await _two_step_pipeline(store, kill_writer).run(store=store)
        assert (result.status, result.history_error) == ("SUCCESS", None)
        run = await store.get_run(result.run_id)
        tasks = {t.key: t.state for t in await store.get_tasks(result.run_id)}
    assert ended == [True]
    assert run.status == RunStatus.SUCCESS
    assert tasks == {"first": TaskState.SUCCESS, "second": TaskState.SUCCESS}


@asynccontextmanager
async def _relay(pg_url: str) -> AsyncIterator[tuple[str, anyio.Event]]:
    """A TCP relay to the test server: ``(its URL, silence)``. Once ``silence`` is
    set it passes no more bytes either way (a server that stopped answering)."""
    import anyio.abc

    target = urlsplit(pg_url)
    silence = anyio.Event()

    async def pipe(source: anyio.abc.SocketStream, sink: anyio.abc.SocketStream) -> None:
        try:
            async for chunk in source:
                if silence.is_set():
                    await anyio.sleep_forever()
                await sink.send(chunk)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            pass

    async def serve(client: anyio.abc.SocketStream) -> None:
        async with client:
            if silence.is_set():
                await anyio.sleep_forever()
            server = await anyio.connect_tcp(target.hostname or "127.0.0.1", target.port or 5432)
            async with server, anyio.create_task_group() as tg:
                tg.start_soon(pipe, client, server)
                tg.start_soon(pipe, server, client)

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    user = f"{target.username}@" if target.username else ""
    url = urlunsplit(target._replace(netloc=f"{user}127.0.0.1:{port}"))
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, serve)
        yield url, silence
        tg.cancel_scope.cancel()  # closes every relayed connection


@pytest.mark.asyncio
@pytest.mark.timeout(30)
async def test_a_run_cancelled_while_its_writer_waits_on_a_silent_server_ends(
    pg_url: str, schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server stops answering while the run's writer is out of the pool; the
    caller cancels the run. Its last batch waits on the silent server for the
    pump's bound, and giving the writer back (asyncpg waits for the server to
    confirm the cancelled query) must not hold the run's end any longer."""
    monkeypatch.setattr(_dispatch, "DRAIN_BOUND_ON_CANCEL", 0.5)
    async with _relay(pg_url) as (url, silence):
        store = PostgresStore(url, schema=schema, max_size=3, heartbeat=60, dead_after=180)
        await store.list_runs(limit=1)

        held: list[bool] = []

        async def go_silent(store: PostgresStore) -> None:
            held.append(store._writer is not None)
            silence.set()
            await anyio.sleep_forever()

        pipeline = _two_step_pipeline(store, go_silent)
        began = anyio.current_time()
        with anyio.move_on_after(1):
            await pipeline.run(store=store)
        took = anyio.current_time() - began
    with anyio.move_on_after(5):
        await store.aclose()
    assert held == [True]
    assert took < 5, took  # 1 s, then the pump's bound of 0.5 s


@pytest.mark.asyncio
async def test_a_large_runs_task_views_are_built_off_the_event_loop(
    pg_url: str, schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Building 100,000 tasks' views took 1.5 s of the loop (every UI route reads them):
    a run of ``VIEWS_IN_THREAD`` tasks or more has them built in a worker thread, the
    store's own (with every default one taken, as blocked plain-function tasks take them,
    it can still be read)."""
    import threading

    from dremioframe_async.store import _postgres

    @task(name="leaf")
    async def leaf() -> int:
        return 1

    pipeline = Pipeline("wide")
    for _ in range(_postgres.VIEWS_IN_THREAD):
        pipeline.add_task(leaf())
    built_in: list[int] = []
    views = _postgres.task_infos

    def watched(*args: Any) -> Any:
        built_in.append(threading.get_ident())
        return views(*args)

    monkeypatch.setattr(_postgres, "task_infos", watched)
    store = PostgresStore(pg_url, schema=schema, max_size=2)
    try:
        result = await pipeline.run(store=store)
        result.raise_for_status()
        with default_threads_taken(), anyio.fail_after(10):
            tasks = await store.get_tasks(result.run_id)
    finally:
        await store.aclose()
    assert len(tasks) == _postgres.VIEWS_IN_THREAD
    assert {t.state for t in tasks} == {"SUCCESS"}
    assert built_in
    assert threading.get_ident() not in built_in
