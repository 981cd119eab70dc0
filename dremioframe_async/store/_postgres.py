"""The shared store: PostgreSQL through an asyncpg connection pool.

Same logical schema as SQLite, inside one PostgreSQL schema (default
``dremioframe_async``), with a ``schema_migrations`` table. Each engine batch
is one transaction of pipelined upserts (``_postgres_batch``).

Liveness across hosts is the heartbeat (see ``_attendance``): a RUNNING run
whose heartbeat is older than ``dead_after`` is marked ``INTERRUPTED``, with its
RUNNING tasks and attempts, by any store that looks; on the owner's own host a
process that is gone is seen at once. No connection stands for a run's life,
so a server restart, a failover or a terminated backend never makes a live run
look dead: its store reconnects and renews.

Many processes coordinate through the same tables (``_postgres_queue``). One
dedicated connection per store ``LISTEN``s for queued runs and cancel requests,
so they are acted on at once; when it is lost, polling carries on and it is
opened again.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import secrets
import time
import uuid
import zlib
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, Literal

import anyio
import anyio.to_thread

from .._own_threads import OwnThreads
from .._telemetry import traceparent
from ..errors import DremioFrameError
from ..orchestration import PriorRun, Record
from . import _postgres_queue as queue
from ._attendance import (
    DEFAULT_CANCEL_POLL,
    DEFAULT_DEAD_AFTER,
    DEFAULT_HEARTBEAT,
    Attendance,
    check_liveness,
)
from ._codec import DEFAULT_MAX_RESULT_BYTES
from ._coordination import CancelOutcome, QueuedRun, encode_params
from ._errors import (
    RunNotFound,
    StoreConfigError,
    StoreSchemaError,
    StoreUnavailable,
    redact,
)
from ._fold import AttemptRow, Fold, RunRow, StateRow, TaskRow
from ._logs import LogPage, LogQuery, log_page_of, log_sql
from ._model import RunInfo, StateEntry, TaskInfo
from ._owner import current_owner
from ._paging import PageSQL, RunPage, RunQuery, page_of
from ._pauses import PauseSQL
from ._postgres_batch import BatchWriter, write_all
from ._sql import MIGRATIONS, mapped_parents, migration, select
from ._state import StateSQL, encode_state_value, entry
from ._views import prior_run, run_info, task_infos

__all__ = ["PostgresStore"]

log = logging.getLogger("dremioframe_async.store")
# Pools and connections of another process or of a finished event loop, never used
# again and never closed (``PostgresStore._leave_behind``).
_LEFT_BEHIND: list[tuple[Any, Any]] = []

SCHEMA_VERSION = len(MIGRATIONS)
VIEWS_IN_THREAD = 1_000  # a run's task rows from which its views are built off the loop
# Its own two threads per event loop: a read of a large run neither waits behind a run's
# plain-function tasks (anyio's default threads) nor takes one of theirs.
_VIEW_THREADS = OwnThreads("dremioframe_async.store.postgres.views", 2)
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")


class PostgresStore:
    """A :class:`RunStore` in PostgreSQL, shareable by many processes and hosts.

    The pool opens on first use (or ``async with``); opening migrates the schema
    and marks runs whose owner died as ``INTERRUPTED``. Needs the ``postgres``
    extra (asyncpg).

    Every failure to reach or use the database raises :class:`StoreUnavailable`
    naming the store (password redacted); a missing asyncpg says how to install it.

    :raises StoreConfigError: (a ``ValueError``) when ``schema`` is not a plain SQL
        identifier or the pool sizes are not whole numbers with ``1 <= min <= max``.
    """

    # Its record() folds the runner's task records as it folds events (DirectRecorder).
    takes_task_records: Literal[True] = True

    def __init__(
        self,
        dsn: str,
        *,
        schema: str = "dremioframe_async",
        min_size: int = 1,
        max_size: int = 10,
        max_result_bytes: int = DEFAULT_MAX_RESULT_BYTES,
        connect_timeout: float = 10.0,
        heartbeat: float = DEFAULT_HEARTBEAT,
        dead_after: float = DEFAULT_DEAD_AFTER,
        cancel_poll: float = DEFAULT_CANCEL_POLL,
    ) -> None:
        check_liveness(heartbeat, dead_after)
        if not _IDENTIFIER.fullmatch(schema):
            raise StoreConfigError(f"schema must be a plain SQL identifier, got {schema!r}")
        if not 1 <= min_size <= max_size:
            raise StoreConfigError(f"need 1 <= min_size <= max_size, got {min_size}, {max_size}")
        self.dsn, self.schema = dsn, schema
        self.name = f"{redact(dsn)} (schema {schema})"
        self._prefix = f'"{schema}".'
        self._pool_args: dict[str, Any] = {
            "min_size": min_size,
            "max_size": max_size,
            "timeout": connect_timeout,
            # The default reset sends a query on every release: one more round trip
            # per use. Nothing here leaves session state behind (the sweep's locks
            # are transaction-scoped), so asyncpg's local cleanup is enough.
            "reset": _no_reset,
        }
        self._max_result_bytes = max_result_bytes
        self._owner_key = secrets.randbits(63)
        self._logs = log_sql("postgres", self._prefix)
        self._state = StateSQL("postgres", self._prefix)
        self._batches = BatchWriter(self._prefix, self._logs, self._state, schema)
        self._pauses = PauseSQL("postgres", self._prefix)
        self._pool: Any = None
        # The connection that writes runs' batches, kept between them (``_writing``).
        self._writer: Any = None
        self._writer_busy = False
        self._opened_in: tuple[int, asyncio.AbstractEventLoop] | None = None  # pid, loop
        self._open_lock: anyio.Lock | None = None
        self.dead_after = dead_after
        self._attendance = Attendance(self._beat, self._poll, heartbeat, cancel_poll)
        self._channel = f"{schema}_events"
        self._listener: Any = None
        self._generation = 0  # counts aclose() calls: a LISTEN opened across one is closed
        self._listen_lock: anyio.Lock | None = None
        self._queued: anyio.Event | None = None

    def __repr__(self) -> str:
        return f"PostgresStore({self.name})"

    async def _ensure(self) -> Any:
        here = (os.getpid(), asyncio.get_running_loop())
        if self._pool is not None:
            if self._opened_in == here:
                return self._pool
            self._leave_behind()
        if self._open_lock is None:
            self._open_lock = anyio.Lock()
        async with self._open_lock:
            if self._pool is None:
                self._pool = await self._open()
                self._opened_in = here
        return self._pool

    def _leave_behind(self) -> None:
        """Drop the pool and the LISTEN connection of another process (a forked copy
        shares the parent's sockets: using or closing them would break its sessions) or
        of an event loop that is gone (a store used again in a new ``anyio.run``
        without ``aclose()``): they are kept unused, and a new pool opens."""
        _LEFT_BEHIND.append((self._pool, self._listener))
        self._pool = self._listener = self._opened_in = self._writer = None
        self._writer_busy = False
        self._open_lock = self._listen_lock = None
        self._queued = None
        self._attendance = self._attendance.fresh()
        self._generation += 1

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[Any]:
        """A pooled connection; any failure but our own errors becomes StoreUnavailable."""
        try:
            async with (await self._ensure()).acquire() as conn:
                yield conn
        except DremioFrameError:
            raise
        except Exception as exc:
            raise self._unavailable(exc) from exc

    @asynccontextmanager
    async def _writing(self, keep: bool = True) -> AsyncIterator[Any]:
        """The connection for one batch of run events: the store's writer, kept out of
        the pool between a run's batches (``keep``: none of its runs ended), or a
        pooled one while another batch has the writer or the pool holds one connection.

        A batch in a busy loop gets the loop back once per loop iteration, and a pooled
        connection costs it two or three more per batch (asyncpg releases through
        ``asyncio.shield``): in a 1,000-task fan-out, tens of milliseconds of waiting for
        a batch of one row, with every task end piling up behind it. A batch that ends
        a run, fails or is cancelled gives the writer back to the pool (which drops a
        broken one); the next batch takes one again. asyncpg applies its recycling
        (``max_queries``, ``expire_connections``) as a connection is given back, so
        to the writer at its run's end.
        """
        if self._writer_busy or self._pool_args["max_size"] < 2:
            async with self._connection() as conn:
                yield conn
            return
        self._writer_busy = True
        try:
            pool = await self._ensure()
            conn, self._writer = self._writer, None
            if conn is not None and conn.is_closed():
                await _release(pool, conn)
                conn = None
            if conn is None:
                conn = await pool.acquire()
            try:
                yield conn
            except BaseException:
                await _release(pool, conn)
                raise
            if keep and self._pool is pool:
                self._writer = conn
            else:  # a run ended, or the store was closed meanwhile (its pool waits for it)
                await _release(pool, conn)
        except DremioFrameError:
            raise
        except Exception as exc:
            raise self._unavailable(exc) from exc
        finally:
            self._writer_busy = False

    def _unavailable(self, exc: Exception, doing: str = "") -> StoreUnavailable:
        return StoreUnavailable(self.name, f"{doing}{type(exc).__name__}: {exc}")

    async def _open(self) -> Any:
        try:
            import asyncpg  # type: ignore[import-untyped]  # optional dependency
        except ImportError as exc:
            raise StoreUnavailable(
                self.name,
                f"cannot open it: {exc}",
                "the PostgreSQL store needs asyncpg: pip install 'dremioframe_async[postgres]'",
            ) from exc
        try:
            pool = await asyncpg.create_pool(self.dsn, **self._pool_args)
        except DremioFrameError:
            raise
        except Exception as exc:
            raise self._unavailable(exc, "cannot open it: ") from exc
        try:
            async with pool.acquire() as conn:
                await self._migrate(conn)
                await self._sweep(conn)
        except BaseException as exc:
            with anyio.CancelScope(shield=True):
                await pool.close()
            if isinstance(exc, Exception) and not isinstance(exc, DremioFrameError):
                raise self._unavailable(exc, "cannot open it: ") from exc
            raise
        return pool

    async def _migrate(self, conn: Any) -> None:
        async with conn.transaction():
            # Serialise concurrent migrators of this schema for the transaction's duration.
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _lock_id(self.schema))
            await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
            await conn.execute(
                f"CREATE TABLE IF NOT EXISTS {self._prefix}schema_migrations "
                "(version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
            )
            sql = f"SELECT COALESCE(max(version), 0) FROM {self._prefix}schema_migrations"
            version: int = await conn.fetchval(sql)
            if version > SCHEMA_VERSION:
                raise StoreSchemaError(version, SCHEMA_VERSION)
            for step in range(version + 1, SCHEMA_VERSION + 1):
                for statement in migration(step, "postgres", self._prefix):
                    await conn.execute(statement)
                sql = f"INSERT INTO {self._prefix}schema_migrations (version) VALUES ($1)"
                await conn.execute(sql, step)

    async def _sweep(self, conn: Any) -> None:
        """Mark RUNNING runs INTERRUPTED whose heartbeat is stale or whose process is gone."""
        await queue.sweep(conn, self._prefix, self.dead_after)

    async def record(self, events: Sequence[Record]) -> None:
        """Write one batch of events in one transaction.

        Text PostgreSQL cannot hold (NUL, unpaired surrogates) is stored escaped
        (see ``_codec``) rather than failing the batch.

        :raises StoreUnavailable: when the database cannot be reached or refuses the write.
        """
        await self._ensure()
        fold = Fold(current_owner(), self._owner_key, self._max_result_bytes)
        await self._batches.record(fold, events, self._writing)

    # -- pipeline state -----------------------------------------------------------

    async def state_entries(self, pipeline: str) -> list[StateEntry]:
        """Every key of ``pipeline``'s state, sorted, with who last wrote it."""
        async with self._connection() as conn:
            rows = await conn.fetch(self._state.select_all, pipeline)
        return [entry(tuple(row)) for row in rows]

    async def list_state(self, pipeline: str) -> dict[str, Any]:
        """``pipeline``'s state as a dict of JSON values."""
        return {e.key: e.value for e in await self.state_entries(pipeline)}

    async def get_state(self, pipeline: str, key: str, default: Any = None) -> Any:
        """The value of one key of ``pipeline``'s state, or ``default``."""
        async with self._connection() as conn:
            row = await conn.fetchrow(self._state.select_one, pipeline, key)
        return default if row is None else entry(tuple(row)).value

    async def set_state(self, pipeline: str, key: str, value: Any) -> None:
        """Set one key of ``pipeline``'s state outside any run.

        :raises StateValueError: the key is not a non-empty string or the value is not JSON.
        """
        row = StateRow(pipeline, key, encode_state_value(key, value), time.time(), None, None)
        async with self._connection() as conn:
            await write_all(conn, self._state.writes([row]))

    async def delete_state(self, pipeline: str, key: str) -> bool:
        """Remove one key of ``pipeline``'s state; whether it was there."""
        async with self._connection() as conn:
            status: str = await conn.execute(self._state.delete, pipeline, key)
        return status != "DELETE 0"

    async def _run_row(self, conn: Any, run_id: str) -> RunRow:
        row = await conn.fetchrow(select(RunRow, self._prefix) + " WHERE run_id = $1", run_id)
        if row is None:
            raise RunNotFound(run_id)
        return RunRow(*row)

    async def _counts(self, conn: Any, run_ids: list[str]) -> dict[str, dict[str, int]]:
        p = self._prefix
        # Planned tasks without a row yet are PENDING (see _views.in_plan_order).
        rows = await conn.fetch(
            f"""SELECT run_id, state, count(*) FROM {p}tasks
                WHERE run_id = ANY($1::text[]) GROUP BY run_id, state
            UNION ALL
            {mapped_parents(p, "c.run_id = ANY($1::text[])")}
            UNION ALL
            SELECT r.run_id, 'PENDING', count(*) FROM {p}runs AS r
                CROSS JOIN LATERAL jsonb_array_elements_text(r.task_keys::jsonb) AS j(key)
                WHERE r.run_id = ANY($1::text[]) AND NOT EXISTS (
                    SELECT 1 FROM {p}tasks AS t WHERE t.run_id = r.run_id AND t.key = j.key)
                GROUP BY r.run_id""",
            run_ids,
        )
        counts: dict[str, dict[str, int]] = {run_id: {} for run_id in run_ids}
        for run_id, state, count in rows:
            counts[run_id][state] = counts[run_id].get(state, 0) + count
        return {run_id: {s: n for s, n in c.items() if n} for run_id, c in counts.items()}

    async def load_prior_run(self, run_id: str) -> PriorRun:
        """Return ``run_id``'s stored successful results and status for resuming.

        :raises RunNotFound: (a ``LookupError``) when ``run_id`` is unknown.
        """
        async with self._connection() as conn:
            await self._sweep(conn)
            run = await self._run_row(conn, run_id)
            rows = await conn.fetch(
                f"SELECT key, result FROM {self._prefix}tasks "
                "WHERE run_id = $1 AND state = 'SUCCESS' AND result_stored",
                run_id,
            )
        return prior_run(run, rows)

    async def list_runs(
        self, *, pipeline: str | None = None, limit: int | None = 20
    ) -> Sequence[RunInfo]:
        """Return recorded runs, newest first, optionally of one pipeline only."""
        async with self._connection() as conn:
            await self._sweep(conn)
            sql = select(RunRow, self._prefix)
            sql += " WHERE ($1::text IS NULL OR pipeline = $1) ORDER BY started DESC LIMIT $2"
            runs = [RunRow(*r) for r in await conn.fetch(sql, pipeline, limit)]
            counts = await self._counts(conn, [r.run_id for r in runs])
        return [run_info(r, counts[r.run_id]) for r in runs]

    async def query_runs(self, query: RunQuery) -> RunPage:
        """Return one page of runs matching ``query``, newest first, with the total."""
        sql = PageSQL(query, f"{self._prefix}runs", lambda n: f"${n}")
        async with self._connection() as conn:
            await self._sweep(conn)
            text, params = sql.rows(query)
            rows = await conn.fetch(text, *params)
            runs = [RunRow(*r) for r in (rows if query.after is None else reversed(rows))]
            text, params = sql.count()
            total = await conn.fetchval(text, *params)
            counts = await self._counts(conn, [r.run_id for r in runs])
            beyond = {}
            for keyset, older in ((_first(runs), False), (_last(runs), True)):
                if keyset is not None:
                    text, params = sql.beyond(keyset, older)
                    beyond[keyset, older] = await conn.fetchval(text, *params)
        infos = [run_info(r, counts[r.run_id]) for r in runs]
        return page_of(query, infos, total, lambda k, older: bool(beyond.get((k, older))))

    async def get_run(self, run_id: str) -> RunInfo:
        """Return one run.

        :raises RunNotFound: (a ``LookupError``) when ``run_id`` is unknown.
        """
        async with self._connection() as conn:
            await self._sweep(conn)
            run = await self._run_row(conn, run_id)
            counts = await self._counts(conn, [run_id])
        return run_info(run, counts[run_id])

    async def get_tasks(self, run_id: str) -> Sequence[TaskInfo]:
        """Return a run's task instances with their attempts, in first-seen order.

        :raises RunNotFound: (a ``LookupError``) when ``run_id`` is unknown.
        """
        async with self._connection() as conn:
            run = await self._run_row(conn, run_id)
            where = " WHERE run_id = $1"
            attempt_rows = await conn.fetch(select(AttemptRow, self._prefix) + where, run_id)
            sql = select(TaskRow, self._prefix) + where + " ORDER BY seq"
            task_rows = await conn.fetch(sql, run_id)

        def views() -> list[TaskInfo]:
            tasks = (TaskRow(*row) for row in task_rows)
            return task_infos(run, tasks, (AttemptRow(*row) for row in attempt_rows))

        if len(task_rows) < VIEWS_IN_THREAD:
            return views()
        # A 100,000-task run's views take about 1.5 s to build: in a worker thread, the
        # loop gets the GIL back every few milliseconds meanwhile (SQLite's are built in
        # its thread too).
        return await anyio.to_thread.run_sync(views, limiter=_VIEW_THREADS.limiter())

    async def pause_schedule(self, pipeline: str, paused: bool = True) -> bool:
        """Pause (or resume) ``pipeline``'s schedule for every process; whether it changed.

        :raises StoreUnavailable: when the database cannot be reached.
        """
        sql, args = (
            (self._pauses.pause, (pipeline, time.time()))
            if paused
            else (
                self._pauses.resume,
                (pipeline,),
            )
        )
        async with self._connection() as conn:
            status: str = await conn.execute(sql, *args)
        return not status.endswith(" 0")

    async def paused_schedules(self) -> dict[str, float]:
        """The paused pipelines, each with when it was paused.

        :raises StoreUnavailable: when the database cannot be reached.
        """
        async with self._connection() as conn:
            return {row[0]: row[1] for row in await conn.fetch(self._pauses.select)}

    async def run_counts(self) -> dict[tuple[str, str], int]:
        """The number of runs by (pipeline, status).

        :raises StoreUnavailable: when the database cannot be reached.
        """
        sql = f"SELECT pipeline, status, count(*) FROM {self._prefix}runs GROUP BY pipeline, status"
        async with self._connection() as conn:
            await self._sweep(conn)
            rows = await conn.fetch(sql)
        return {(p or "", s or ""): n for p, s, n in rows}

    async def get_traceparent(self, run_id: str) -> str | None:
        """The W3C trace context of a traced run's span, or None.

        :raises StoreUnavailable: when the database cannot be reached.
        """
        async with self._connection() as conn:
            found = await conn.fetchval(self._logs.traceparent, run_id)
        return None if found is None else str(found)

    async def get_logs(self, query: LogQuery) -> LogPage:
        """Return one page of a run's captured log lines, in the order they were stored.

        :raises StoreUnavailable: when the database cannot be reached.
        """
        sql, args = self._logs.page(query)
        async with self._connection() as conn:
            rows = await conn.fetch(sql, *args)
        return log_page_of(query, rows)

    # -- many processes, one store (see _coordination) --------------------------------

    async def enqueue(
        self,
        pipeline: str,
        params: Mapping[str, Any] | None = None,
        *,
        scheduled_for: float | None = None,
    ) -> str:
        """Queue a run of ``pipeline``; a process serving it claims and runs it. Returns its id."""
        encoded = encode_params(params)
        async with self._connection() as conn:
            # The caller's trace context, if any, goes with the run to the process running it.
            return await queue.enqueue(
                conn, self._prefix, self._channel, pipeline, encoded, scheduled_for, traceparent()
            )

    async def claim_fire(
        self, pipeline: str, scheduled_for: float, params: Mapping[str, Any] | None = None
    ) -> str | None:
        """Claim a schedule's fire and queue its run; ``None`` when another process has it."""
        encoded = encode_params(params)
        async with self._connection() as conn:
            return await queue.claim_fire(
                conn, self._prefix, self._channel, pipeline, scheduled_for, encoded
            )

    async def claim_next(
        self, limits: Mapping[str, int | None], *, run_id: str | None = None
    ) -> QueuedRun | None:
        """Claim the oldest QUEUED run of these pipelines (name: max active runs, or None)."""
        async with self._connection() as conn:
            return await queue.claim_next(conn, self._prefix, limits, run_id)

    async def wait_queued(self, seconds: float) -> None:
        """Return when a run may have been queued (a NOTIFY), or after ``seconds``."""
        try:
            await self._listen()
        except StoreUnavailable as exc:  # polling goes on without it
            log.warning("%s", exc)
            await anyio.sleep(min(seconds, 1.0))
            return
        if self._queued is None:
            self._queued = anyio.Event()
        with anyio.move_on_after(seconds):
            await self._queued.wait()
        self._queued = anyio.Event()

    async def request_cancel(self, run_id: str) -> CancelOutcome:
        """Ask the process that runs ``run_id`` to cancel it (a queued run ends at once).

        :raises RunNotFound: (a ``LookupError``) when ``run_id`` is unknown.
        """
        async with self._connection() as conn:
            return await queue.request_cancel(conn, self._prefix, self._channel, run_id)

    async def claim_resume(self, run_id: str, by: str) -> None:
        """Record ``by`` as the one run that resumes ``run_id``.

        :raises ResumeRefused: when another resume of it is queued, running or succeeded.
        :raises RunNotFound: (a ``LookupError``) when ``run_id`` is unknown.
        """
        async with self._connection() as conn:
            await queue.claim_resume(conn, self._prefix, self._channel, run_id, by, False)

    async def enqueue_resume(self, run_id: str) -> str:
        """Queue a run that resumes ``run_id``, claimed as its one resume; return its id.

        It waits in the queue, within its pipeline's ``max_active_runs``, like any run.

        :raises ResumeRefused: when another resume of it is queued, running or succeeded.
        :raises RunNotFound: (a ``LookupError``) when ``run_id`` is unknown.
        """
        by = uuid.uuid4().hex
        async with self._connection() as conn:
            await queue.claim_resume(conn, self._prefix, self._channel, run_id, by, True)
        return by

    def attend(
        self, run_id: str, on_cancel: Callable[[int], None]
    ) -> AbstractAsyncContextManager[None]:
        """Renew ``run_id``'s heartbeat and deliver its cancel requests while it runs."""
        return self._attendance.attend(run_id, on_cancel)

    async def _beat(self, run_ids: Sequence[str]) -> None:
        async with self._connection() as conn:
            await queue.beat(conn, self._prefix, run_ids)

    async def _poll(self, run_ids: Sequence[str]) -> dict[str, int]:
        try:
            await self._listen()
        except Exception as exc:  # polling goes on without it; the next tick tries again
            log.warning("cannot listen for cancel requests on %s: %s", self.name, exc)
        async with self._connection() as conn:
            return await queue.poll_cancels(conn, self._prefix, run_ids)

    async def _listen(self) -> None:
        """Open the LISTEN connection, again if it was lost."""
        await self._ensure()  # first: another process's or loop's listener is left behind
        if self._listener is not None and not self._listener.is_closed():
            return
        if self._listen_lock is None:
            self._listen_lock = anyio.Lock()
        async with self._listen_lock:
            if self._listener is not None and not self._listener.is_closed():
                return
            import asyncpg

            await self._ensure()
            generation = self._generation
            try:
                conn = await asyncpg.connect(self.dsn, timeout=self._pool_args["timeout"])
            except Exception as exc:
                raise self._unavailable(exc, "cannot listen: ") from exc
            try:
                await conn.add_listener(self._channel, self._notified)
            except BaseException as exc:  # cancelled, say: never leave it open behind us
                await _close_quietly(conn)
                if isinstance(exc, Exception):
                    raise self._unavailable(exc, "cannot listen: ") from exc
                raise
            if generation != self._generation:  # the store was closed meanwhile
                await _close_quietly(conn)
                return
            self._listener = conn

    def _notified(self, conn: Any, pid: int, channel: str, payload: str) -> None:
        # A cancel request names its run; a queued run, its pipeline. Only a request for
        # a run attended here is worth a cancel poll: waking the attendance on every
        # trigger cost each serve process one query per trigger.
        if self._attendance.attends(payload):
            self._attendance.wake()
        elif self._queued is not None:
            self._queued.set()

    async def aclose(self) -> None:
        """Close the pool and the listening connection; using the store again reopens them."""
        if self._pool is not None and self._opened_in != (os.getpid(), asyncio.get_running_loop()):
            self._leave_behind()  # not this process's or this loop's to close
        pool, self._pool = self._pool, None
        listener, self._listener = self._listener, None
        writer, self._writer = self._writer, None
        self._generation += 1
        with anyio.CancelScope(shield=True), anyio.move_on_after(10):
            if writer is not None:  # a batch in flight has it out, and gives it back
                await pool.release(writer)
            if listener is not None and not listener.is_closed():
                await listener.close()
            if pool is not None:
                await pool.close()

    async def __aenter__(self) -> PostgresStore:
        await self._ensure()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


async def _close_quietly(conn: Any) -> None:
    with anyio.CancelScope(shield=True), anyio.move_on_after(10):
        await conn.close()


async def _release(pool: Any, conn: Any) -> None:
    """Give ``conn`` back to ``pool``, which drops it if broken.

    asyncpg releases in a task of its own (``asyncio.shield``), which goes on when
    this wait is cancelled: it is not shielded here. A release after a cancelled
    query waits for the server to confirm the cancel, and a server that stopped
    answering would hold a cancelled run's end for as long as it is silent.
    """
    await pool.release(conn)


async def _no_reset(conn: Any) -> None:
    """Pool release hook: nothing to reset (see ``PostgresStore.__init__``)."""


def _first(runs: list[RunRow]) -> tuple[float, str] | None:
    return (runs[0].started or 0.0, runs[0].run_id) if runs else None


def _last(runs: list[RunRow]) -> tuple[float, str] | None:
    return (runs[-1].started or 0.0, runs[-1].run_id) if runs else None


def _lock_id(schema: str) -> int:
    """A stable advisory-lock key for migrating ``schema``."""
    return 0x0DF0_0000_0000 + zlib.crc32(schema.encode())
