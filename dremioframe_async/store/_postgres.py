"""The shared store: PostgreSQL through an asyncpg connection pool.

Same logical schema as SQLite, inside one PostgreSQL schema (default
``dremioframe_async``), with a ``schema_migrations`` table. Each engine batch
is one transaction of pipelined upserts.

Liveness across hosts: while a store has recorded a run it holds a
session-level advisory lock on a dedicated connection, keyed by a random
``owner_key`` written into each of its runs. The server drops the lock when that
process dies, so any store that finds a RUNNING run whose key it can lock marks
the run ``INTERRUPTED``, with its RUNNING tasks and attempts. (A lost lock
connection in a live process makes its running runs look interrupted; their
final status still lands when they end.) The lock connection is opened once per
store, under a lock: two runs starting at once must not each take the owner
lock on their own connection, as the second would wait for the first forever.
"""

from __future__ import annotations

import json
import re
import secrets
import zlib
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.to_thread

from ..errors import DremioFrameError
from ..orchestration import Event, PriorRun, RunStarted
from ._codec import DEFAULT_MAX_RESULT_BYTES, decode_json
from ._errors import (
    RunNotFound,
    StoreConfigError,
    StoreSchemaError,
    StoreUnavailable,
    redact,
)
from ._fold import AttemptRow, Fold, RunRow, TaskRow, TaskValues, WrittenTasks, as_tuple
from ._logs import LogPage, LogQuery, log_page_of, log_sql
from ._model import RunInfo, TaskInfo
from ._owner import current_owner
from ._paging import PageSQL, RunPage, RunQuery, page_of
from ._sql import MIGRATIONS, interrupt_statements, migration, select, upsert_json
from ._views import in_plan_order, run_info, task_info

__all__ = ["PostgresStore"]

SCHEMA_VERSION = len(MIGRATIONS)
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

    def __init__(
        self,
        dsn: str,
        *,
        schema: str = "dremioframe_async",
        min_size: int = 1,
        max_size: int = 10,
        max_result_bytes: int = DEFAULT_MAX_RESULT_BYTES,
        connect_timeout: float = 10.0,
    ) -> None:
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
        self._upserts = {cls: upsert_json(cls, self._prefix) for cls in _ROWS}
        self._insert_tasks = upsert_json(TaskRow, self._prefix, fresh=True)
        self._logs = log_sql("postgres", self._prefix)
        self._written = WrittenTasks()
        self._pool: Any = None
        self._lock_conn: Any = None
        self._open_lock: anyio.Lock | None = None
        self._owner_lock: anyio.Lock | None = None

    def __repr__(self) -> str:
        return f"PostgresStore({self.name})"

    async def _ensure(self) -> Any:
        if self._pool is not None:
            return self._pool
        if self._open_lock is None:
            self._open_lock = anyio.Lock()
        async with self._open_lock:
            if self._pool is None:
                self._pool = await self._open()
        return self._pool

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
        """Mark RUNNING runs whose owner's advisory lock is free as INTERRUPTED.

        Their RUNNING tasks and attempts are marked CANCELLED in the same
        transaction. The probe lock is transaction-scoped, so it is released at
        commit whatever happens, and a pooled connection never keeps one.
        """
        keys = await conn.fetch(
            f"SELECT DISTINCT owner_key FROM {self._prefix}runs WHERE status = 'RUNNING' "
            "AND owner_key IS NOT NULL AND owner_key <> $1",
            self._owner_key,
        )
        for (key,) in keys:
            async with conn.transaction():
                if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", key):
                    continue  # the owner is alive and holds it
                run_ids = await conn.fetch(
                    f"SELECT run_id FROM {self._prefix}runs "
                    "WHERE owner_key = $1 AND status = 'RUNNING'",
                    key,
                )
                for (run_id,) in run_ids:
                    for sql in interrupt_statements("postgres", self._prefix):
                        await conn.execute(sql, run_id)

    def _holds_owner_lock(self) -> bool:
        return self._lock_conn is not None and not self._lock_conn.is_closed()

    async def _hold_owner_lock(self) -> None:
        """Hold the owner lock on its own connection, opened once (again if it was lost)."""
        if self._holds_owner_lock():
            return
        if self._owner_lock is None:
            self._owner_lock = anyio.Lock()
        async with self._owner_lock:
            if not self._holds_owner_lock():
                self._lock_conn = await self._lock_owner_key()

    async def _lock_owner_key(self) -> Any:
        import asyncpg

        try:
            conn = await asyncpg.connect(self.dsn, timeout=self._pool_args["timeout"])
        except Exception as exc:
            raise self._unavailable(exc) from exc
        try:
            await conn.execute("SELECT pg_advisory_lock($1)", self._owner_key)
        except BaseException as exc:
            with anyio.CancelScope(shield=True):
                await conn.close()
            if isinstance(exc, Exception):
                raise self._unavailable(exc) from exc
            raise
        return conn

    async def record(self, events: Sequence[Event]) -> None:
        """Write one batch of events in one transaction.

        Text PostgreSQL cannot hold (NUL, unpaired surrogates) is stored escaped
        (see ``_codec``) rather than failing the batch.

        :raises StoreUnavailable: when the database cannot be reached or refuses the write.
        """
        await self._ensure()
        if any(isinstance(e, RunStarted) for e in events):
            await self._hold_owner_lock()
        fold = Fold(current_owner(), self._owner_key, self._max_result_bytes)
        if len(events) > _INLINE_EVENTS:
            # Folding and encoding (results, tracebacks, JSON) is CPU work: off the loop.
            batch = await anyio.to_thread.run_sync(self._encode, fold, list(events))
        else:  # a run's start, say: a thread hop would cost more than the work
            batch = self._encode(fold, events)
        async with self._connection() as conn:
            try:
                await _write(conn, batch.writes)
            except Exception as exc:
                if getattr(exc, "sqlstate", None) != _UNIQUE_VIOLATION or not batch.new:
                    raise
                # A row taken for new exists (written through another handle): upsert all.
                await _write(conn, batch.fallback)
        self._written.remember(fold.runs.values(), batch.new)

    def _encode(self, fold: Fold, events: Sequence[Event]) -> _Batch:
        """Fold ``events``; each write with its rows as JSON (see ``upsert_json``)."""
        fold.add_all(events)
        runs = [as_tuple(r) for r in fold.runs.values()]
        attempts = [as_tuple(r) for r in fold.attempts.values()]
        tasks = list(fold.tasks.values())
        new, written = self._written.split(tasks)
        writes = [
            (self._upserts[RunRow], runs),
            (self._insert_tasks, new),
            (self._upserts[TaskRow], written),
            (self._upserts[AttemptRow], attempts),
        ]
        fallback = [(self._upserts[TaskRow], tasks)] if new else []
        logs: list[tuple[str, list[Any]]] = [
            (self._logs.insert, fold.logs.rows),
            (self._logs.trim, fold.logs.trim_rows()),
        ]
        return _Batch(
            [(sql, _dumps(rows)) for sql, rows in (*writes, *logs) if rows],
            [(sql, _dumps(rows)) for sql, rows in (writes[0], *fallback, writes[3], *logs) if rows],
            new,
        )

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
        return counts

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
        results = {key: decode_json(text) for key, text in rows}
        params = decode_json(run.params, {})
        return PriorRun(
            run_id, run.pipeline or "", params, results, run.status or "", run.owner or ""
        )

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
        attempts: dict[str, list[AttemptRow]] = {}
        for row in attempt_rows:
            attempt = AttemptRow(*row)
            attempts.setdefault(attempt.key, []).append(attempt)
        tasks = in_plan_order(run, (TaskRow(*row) for row in task_rows))
        return [task_info(task, attempts.get(task.key, ())) for task in tasks]

    async def run_counts(self) -> dict[tuple[str, str], int]:
        """The number of runs by (pipeline, status).

        :raises StoreUnavailable: when the database cannot be reached.
        """
        sql = f"SELECT pipeline, status, count(*) FROM {self._prefix}runs GROUP BY pipeline, status"
        async with self._connection() as conn:
            await self._sweep(conn)
            rows = await conn.fetch(sql)
        return {(p or "", s or ""): n for p, s, n in rows}

    async def get_logs(self, query: LogQuery) -> LogPage:
        """Return one page of a run's captured log lines, in the order they were stored.

        :raises StoreUnavailable: when the database cannot be reached.
        """
        sql, args = self._logs.page(query)
        async with self._connection() as conn:
            rows = await conn.fetch(sql, *args)
        return log_page_of(query, rows)

    async def aclose(self) -> None:
        """Close the pool and release the owner lock; using the store again reopens it."""
        pool, self._pool = self._pool, None
        lock_conn, self._lock_conn = self._lock_conn, None
        with anyio.CancelScope(shield=True), anyio.move_on_after(10):
            if lock_conn is not None:
                await lock_conn.close()
            if pool is not None:
                await pool.close()

    async def __aenter__(self) -> PostgresStore:
        await self._ensure()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


_ROWS = (RunRow, TaskRow, AttemptRow)
_UNIQUE_VIOLATION = "23505"


@dataclass(frozen=True, slots=True)
class _Batch:
    """One batch's statements; ``fallback`` upserts every row (if a new one exists)."""

    writes: list[tuple[str, str]]
    fallback: list[tuple[str, str]]
    new: list[TaskValues]


async def _write(conn: Any, writes: list[tuple[str, str]]) -> None:
    if len(writes) == 1:  # one statement is atomic by itself: save BEGIN and COMMIT
        await conn.execute(*writes[0])
        return
    async with conn.transaction():
        for sql, rows in writes:
            await conn.execute(sql, rows)


# Batches up to this many events are folded on the loop (a thread hop costs ~50 µs).
_INLINE_EVENTS = 16


async def _no_reset(conn: Any) -> None:
    """Pool release hook: nothing to reset (see ``PostgresStore.__init__``)."""


def _first(runs: list[RunRow]) -> tuple[float, str] | None:
    return (runs[0].started or 0.0, runs[0].run_id) if runs else None


def _last(runs: list[RunRow]) -> tuple[float, str] | None:
    return (runs[-1].started or 0.0, runs[-1].run_id) if runs else None


_dumps = json.JSONEncoder(separators=(",", ":")).encode


def _lock_id(schema: str) -> int:
    """A stable advisory-lock key for migrating ``schema``."""
    return 0x0DF0_0000_0000 + zlib.crc32(schema.encode())
