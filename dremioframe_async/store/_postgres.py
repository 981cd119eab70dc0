"""The shared store: PostgreSQL through an asyncpg connection pool.

Same logical schema as SQLite, inside one PostgreSQL schema (default
``dremioframe_async``), with a ``schema_migrations`` table. Each engine batch
is one transaction of pipelined upserts.

Liveness across hosts: while a store has recorded a run it holds a
session-level advisory lock on a dedicated connection, keyed by a random
``owner_key`` written into each of its runs. The server drops the lock when that
process dies, so any store that finds a RUNNING run whose key it can lock marks
the run ``INTERRUPTED``. (A lost lock connection in a live process makes its
running runs look interrupted; their final status still lands when they end.)
"""

from __future__ import annotations

import json
import re
import secrets
import zlib
from collections.abc import Sequence
from typing import Any

import anyio
import anyio.to_thread

from ..orchestration import Event, PriorRun, RunStarted
from ._codec import DEFAULT_MAX_RESULT_BYTES, decode_json
from ._errors import RunNotFound, StoreSchemaError
from ._fold import AttemptRow, Fold, RunRow, TaskRow, as_tuple
from ._model import RunInfo, TaskInfo
from ._owner import current_owner
from ._paging import PageSQL, RunPage, RunQuery, page_of
from ._sql import MIGRATIONS, migration, select, upsert_json
from ._views import in_plan_order, run_info, task_info

__all__ = ["PostgresStore"]

SCHEMA_VERSION = len(MIGRATIONS)
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")


class PostgresStore:
    """A :class:`RunStore` in PostgreSQL, shareable by many processes and hosts.

    The pool opens on first use (or ``async with``); opening migrates the schema
    and marks runs whose owner died as ``INTERRUPTED``. Needs the ``postgres``
    extra (asyncpg).

    :raises ValueError: when ``schema`` is not a plain SQL identifier.
    """

    def __init__(
        self,
        dsn: str,
        *,
        schema: str = "dremioframe_async",
        min_size: int = 1,
        max_size: int = 10,
        max_result_bytes: int = DEFAULT_MAX_RESULT_BYTES,
    ) -> None:
        if not _IDENTIFIER.fullmatch(schema):
            raise ValueError(f"schema must be a plain SQL identifier, got {schema!r}")
        self.dsn, self.schema = dsn, schema
        self._prefix = f'"{schema}".'
        self._pool_args = {"min_size": min_size, "max_size": max_size}
        self._max_result_bytes = max_result_bytes
        self._owner_key = secrets.randbits(63)
        self._upserts = {cls: upsert_json(cls, self._prefix) for cls in _ROWS}
        self._pool: Any = None
        self._lock_conn: Any = None
        self._open_lock: anyio.Lock | None = None

    def __repr__(self) -> str:
        return f"PostgresStore(schema={self.schema!r})"  # the DSN may hold a password

    async def _ensure(self) -> Any:
        if self._pool is not None:
            return self._pool
        if self._open_lock is None:
            self._open_lock = anyio.Lock()
        async with self._open_lock:
            if self._pool is None:
                self._pool = await self._open()
        return self._pool

    async def _open(self) -> Any:
        import asyncpg  # type: ignore[import-untyped]  # optional dependency

        pool = await asyncpg.create_pool(self.dsn, **self._pool_args)
        try:
            async with pool.acquire() as conn:
                await self._migrate(conn)
                await self._sweep(conn)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await pool.close()
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
        """Mark RUNNING runs whose owner's advisory lock is free as INTERRUPTED."""
        keys = await conn.fetch(
            f"SELECT DISTINCT owner_key FROM {self._prefix}runs WHERE status = 'RUNNING' "
            "AND owner_key IS NOT NULL AND owner_key <> $1",
            self._owner_key,
        )
        for (key,) in keys:
            if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", key):
                continue  # the owner is alive and holds it
            try:
                await conn.execute(
                    f"""UPDATE {self._prefix}runs AS r SET status = 'INTERRUPTED',
                        finished = COALESCE((SELECT max(GREATEST(t.finished, t.started))
                            FROM {self._prefix}tasks t WHERE t.run_id = r.run_id), r.started)
                        WHERE owner_key = $1 AND status = 'RUNNING'""",
                    key,
                )
            finally:
                await conn.execute("SELECT pg_advisory_unlock($1)", key)

    async def _hold_owner_lock(self) -> None:
        import asyncpg

        if self._lock_conn is None:
            conn = await asyncpg.connect(self.dsn)
            await conn.execute("SELECT pg_advisory_lock($1)", self._owner_key)
            self._lock_conn = conn

    async def record(self, events: Sequence[Event]) -> None:
        """Write one batch of events in one transaction."""
        pool = await self._ensure()
        if any(isinstance(e, RunStarted) for e in events):
            await self._hold_owner_lock()
        fold = Fold(current_owner(), self._owner_key, self._max_result_bytes)
        # Folding and encoding (results, tracebacks, the JSON rows) is CPU work: off the loop.
        writes = await anyio.to_thread.run_sync(self._encode, fold, list(events))
        async with pool.acquire() as conn:
            if len(writes) == 1:  # one statement is atomic by itself: save BEGIN and COMMIT
                await conn.execute(*writes[0])
                return
            async with conn.transaction():
                for sql, rows in writes:
                    await conn.execute(sql, rows)

    def _encode(self, fold: Fold, events: list[Event]) -> list[tuple[str, str]]:
        """Fold ``events``; return each upsert with its rows as JSON (see ``upsert_json``)."""
        fold.add_all(events)
        tables = (
            (RunRow, [as_tuple(r) for r in fold.runs.values()]),
            (TaskRow, list(fold.tasks.values())),
            (AttemptRow, [as_tuple(r) for r in fold.attempts.values()]),
        )
        return [(self._upserts[cls], _dumps(rows)) for cls, rows in tables if rows]

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
        """Return ``run_id``'s stored successful results for resuming.

        :raises RunNotFound: (a ``LookupError``) when ``run_id`` is unknown.
        """
        async with (await self._ensure()).acquire() as conn:
            run = await self._run_row(conn, run_id)
            rows = await conn.fetch(
                f"SELECT key, result FROM {self._prefix}tasks "
                "WHERE run_id = $1 AND state = 'SUCCESS' AND result_stored",
                run_id,
            )
        results = {key: decode_json(text) for key, text in rows}
        return PriorRun(run_id, run.pipeline or "", decode_json(run.params, {}), results)

    async def list_runs(
        self, *, pipeline: str | None = None, limit: int | None = 20
    ) -> Sequence[RunInfo]:
        """Return recorded runs, newest first, optionally of one pipeline only."""
        async with (await self._ensure()).acquire() as conn:
            await self._sweep(conn)
            sql = select(RunRow, self._prefix)
            sql += " WHERE ($1::text IS NULL OR pipeline = $1) ORDER BY started DESC LIMIT $2"
            runs = [RunRow(*r) for r in await conn.fetch(sql, pipeline, limit)]
            counts = await self._counts(conn, [r.run_id for r in runs])
        return [run_info(r, counts[r.run_id]) for r in runs]

    async def query_runs(self, query: RunQuery) -> RunPage:
        """Return one page of runs matching ``query``, newest first, with the total."""
        sql = PageSQL(query, f"{self._prefix}runs", lambda n: f"${n}")
        async with (await self._ensure()).acquire() as conn:
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
        async with (await self._ensure()).acquire() as conn:
            await self._sweep(conn)
            run = await self._run_row(conn, run_id)
            counts = await self._counts(conn, [run_id])
        return run_info(run, counts[run_id])

    async def get_tasks(self, run_id: str) -> Sequence[TaskInfo]:
        """Return a run's task instances with their attempts, in first-seen order.

        :raises RunNotFound: (a ``LookupError``) when ``run_id`` is unknown.
        """
        async with (await self._ensure()).acquire() as conn:
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


def _first(runs: list[RunRow]) -> tuple[float, str] | None:
    return (runs[0].started or 0.0, runs[0].run_id) if runs else None


def _last(runs: list[RunRow]) -> tuple[float, str] | None:
    return (runs[-1].started or 0.0, runs[-1].run_id) if runs else None


_dumps = json.JSONEncoder(separators=(",", ":")).encode


def _lock_id(schema: str) -> int:
    """A stable advisory-lock key for migrating ``schema``."""
    return 0x0DF0_0000_0000 + zlib.crc32(schema.encode())
