"""Engine events as PostgreSQL statements: one batch, one transaction.

A batch is folded into rows (``_fold``) and each table's rows travel as one JSON
parameter of one statement (``upsert_json``), so a batch costs a few round trips
whatever its size. Task rows this store has not written yet are inserted rather
than upserted (``WrittenTasks``); many of them at once go by ``COPY`` (binary),
which costs the client a quarter of the CPU of encoding them as JSON and the
server a third of the time. When a row taken for new exists after all (written
through another handle), the batch is written again with upserts only.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.to_thread

from ..orchestration import Record
from ._fold import AttemptRow, Fold, RunRow, TaskRow, TaskValues, WrittenTasks, as_tuple
from ._logs import LogSQL
from ._sql import columns, upsert_json
from ._state import StateSQL

__all__ = ["BatchWriter", "Statements", "write_all"]

Statements = list[tuple[str, tuple[Any, ...]]]
"""SQL statements with their arguments, written in order in one transaction."""

_ROWS = (RunRow, TaskRow, AttemptRow)
_UNIQUE_VIOLATION = "23505"
# Batches up to this many events are folded on the loop (a thread hop costs ~50 µs).
_INLINE_EVENTS = 16
# New task rows from this many on are copied (COPY asks the server for the table's
# column types first: one more round trip, which pays for itself from here on).
COPY_ROWS = 256
_TASK_COLUMNS = tuple(columns(TaskRow))
_dumps = json.JSONEncoder(separators=(",", ":")).encode


@dataclass(frozen=True, slots=True)
class _Batch:
    """One batch's statements, and what ``fallback()`` upserts if a new row exists.

    ``copied`` are new task rows to ``COPY`` after the first ``leading`` of
    ``writes`` (the run rows, when the batch has any), in place of an insert.
    """

    writes: Statements
    retry: list[tuple[str, list[Any]]]  # every row upserted, encoded only when needed
    tail: Statements  # the state and log writes, the same either way
    new: list[TaskValues]
    copied: list[TaskValues]
    leading: int

    def fallback(self) -> Statements:
        return [*((sql, (_dumps(rows),)) for sql, rows in self.retry if rows), *self.tail]


class BatchWriter:
    """Writes batches of events into the tables under ``prefix``, as one store's writer."""

    def __init__(self, prefix: str, logs: LogSQL, state: StateSQL, schema: str) -> None:
        self._schema = schema
        self._upserts = {cls: upsert_json(cls, prefix) for cls in _ROWS}
        self._insert_tasks = upsert_json(TaskRow, prefix, fresh=True)
        self._logs = logs
        self._state = state
        self._written = WrittenTasks()

    async def record(
        self,
        fold: Fold,
        events: Sequence[Record],
        connection: Callable[[], AbstractAsyncContextManager[Any]],
    ) -> None:
        """Fold ``events`` into ``fold`` and write them on one of ``connection()``'s."""
        if len(events) > _INLINE_EVENTS:
            # Folding and encoding (results, tracebacks, JSON) is CPU work: off the loop.
            batch = await anyio.to_thread.run_sync(self._encode, fold, list(events))
        else:  # a run's start, say: a thread hop would cost more than the work
            batch = self._encode(fold, events)
        async with connection() as conn:
            try:
                if batch.copied:
                    await self._write_copying(conn, batch)
                else:
                    await write_all(conn, batch.writes)
            except Exception as exc:
                if getattr(exc, "sqlstate", None) != _UNIQUE_VIOLATION or not batch.new:
                    raise
                # A row taken for new exists (written through another handle): upsert all.
                await write_all(conn, batch.fallback())
        self._written.remember(fold.runs.values(), batch.new)

    async def _write_copying(self, conn: Any, batch: _Batch) -> None:
        """``batch.writes`` in one transaction, its new task rows copied after the runs'."""
        runs, rest = batch.writes[: batch.leading], batch.writes[batch.leading :]
        async with conn.transaction():
            for sql, args in runs:
                await conn.execute(sql, *args)
            await conn.copy_records_to_table(
                "tasks", records=batch.copied, columns=_TASK_COLUMNS, schema_name=self._schema
            )
            for sql, args in rest:
                await conn.execute(sql, *args)

    def _encode(self, fold: Fold, events: Sequence[Record]) -> _Batch:
        """Fold ``events``; each write with its rows as JSON (see ``upsert_json``)."""
        fold.add_all(events)
        runs = [as_tuple(r) for r in fold.runs.values()]
        attempts = [as_tuple(r) for r in fold.attempts.values()]
        tasks = list(fold.tasks.values())
        new, written = self._written.split(tasks)
        copied = new if len(new) >= COPY_ROWS else []
        writes: list[tuple[str, list[Any]]] = [
            (self._upserts[RunRow], runs),
            (self._insert_tasks, [] if copied else new),
            (self._upserts[TaskRow], written),
            (self._upserts[AttemptRow], attempts),
        ]
        fallback: list[tuple[str, list[Any]]] = [(self._upserts[TaskRow], tasks)] if new else []
        states = self._state.writes(list(fold.states.values()))
        retry = [writes[0], *fallback, writes[3]]
        logs: list[tuple[str, list[Any]]] = [
            (self._logs.insert, fold.logs.rows),
            (self._logs.trim, fold.logs.trim_rows()),
            (self._logs.trace, [list(t) for t in fold.logs.traces.items()]),
        ]
        tail = [*states, *((sql, (_dumps(rows),)) for sql, rows in logs if rows)]
        return _Batch(
            [*((sql, (_dumps(rows),)) for sql, rows in writes if rows), *tail],
            retry,
            tail,
            new,
            copied,
            1 if runs else 0,
        )


async def write_all(conn: Any, writes: Statements) -> None:
    """Execute ``writes`` on ``conn`` in one transaction."""
    if len(writes) == 1:  # one statement is atomic by itself: save BEGIN and COMMIT
        sql, args = writes[0]
        await conn.execute(sql, *args)
        return
    async with conn.transaction():
        for sql, args in writes:
            await conn.execute(sql, *args)
