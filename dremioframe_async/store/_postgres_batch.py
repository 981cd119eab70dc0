"""Engine events as PostgreSQL statements: one batch, one transaction.

Except where fewer round trips keep the same promise: a batch of one statement (a
``COPY`` included) needs no transaction, and a batch of run rows and new task rows
(a run's last batch, say) writes the task rows first (a ``COPY`` or one ``INSERT``),
then the run rows, each a statement of its own: a crash between them leaves the run
RUNNING with its tasks recorded, never ended with tasks missing.

A batch is folded into rows (``_fold``) and each table's rows travel as one JSON
parameter of one statement (``upsert_json``), so a batch costs a few round trips
whatever its size. Task rows this store has not written yet are inserted rather
than upserted (``WrittenTasks``); many of them at once go by ``COPY`` (binary),
which costs the client a quarter of the CPU of encoding them as JSON and the
server a third of the time. When a row taken for new exists after all (written
through another handle), the batch is written again with upserts only.

Folding and encoding run on the event loop, a slice at a time, yielding at least
every millisecond (``_fold.fold_sliced``), and rows are encoded ``JSON_ROWS`` at a time as they are
sent, so the server writes one part while the next is encoded. A worker thread
would not help: it needs the GIL for the same work, and while the loop is busy
(a wide no-op fan-out, say) it waits for the GIL until the loop goes idle, so a
run's rows reached the server only after its last task.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any

from ..orchestration import Record
from ._fold import (
    AttemptRow,
    Fold,
    RunRow,
    TaskRow,
    TaskValues,
    WrittenTasks,
    as_tuple,
    fold_sliced,
)
from ._logs import LogSQL
from ._sql import columns, upsert, upsert_json
from ._state import StateSQL

__all__ = ["BatchWriter", "Statements", "write_all"]

Statements = list[tuple[str, tuple[Any, ...]]]
"""SQL statements with their arguments, written in order in one transaction."""

Step = tuple[str, tuple[Any, ...] | list[Any]]
"""A statement with its arguments, or with rows to send as one JSON argument (a list)."""

_ROWS = (RunRow, TaskRow, AttemptRow)
_UNIQUE_VIOLATION = "23505"
# New task rows from this many on are copied (COPY asks the server for the table's
# column types first: one more round trip, which pays for itself from here on).
COPY_ROWS = 256
_COPY = "COPY tasks"  # the step that copies a batch's new task rows
_TASK_COLUMNS = tuple(columns(TaskRow))
JSON_ROWS = 1024  # rows per JSON argument: about 2 ms of encoding
_dumps = json.JSONEncoder(separators=(",", ":")).encode


@dataclass(frozen=True, slots=True)
class _Batch:
    """One batch's steps, and what ``fallback`` upserts if a new row exists after all."""

    steps: list[Step]
    fallback: list[Step]
    new: list[TaskValues]
    copied: list[TaskValues]
    starts_run: bool  # a run's first row is among them: one transaction, run first


class BatchWriter:
    """Writes batches of events into the tables under ``prefix``, as one store's writer."""

    def __init__(self, prefix: str, logs: LogSQL, state: StateSQL, schema: str) -> None:
        self._schema = schema
        self._upserts = {cls: upsert_json(cls, prefix) for cls in _ROWS}
        self._upsert_run = upsert(RunRow, "postgres", prefix)
        self._insert_tasks = upsert_json(TaskRow, prefix, fresh=True)
        self._logs = logs
        self._state = state
        self._written = WrittenTasks()

    async def record(
        self,
        fold: Fold,
        events: Sequence[Record],
        connection: Callable[[bool], AbstractAsyncContextManager[Any]],
    ) -> None:
        """Fold ``events`` into ``fold`` and write them on one of ``connection(more)``'s,
        where ``more`` says whether more batches of the same runs are likely to follow
        (none ends a run)."""
        batch = self._steps(await fold_sliced(fold, events))
        more = all(run.finished is None for run in fold.runs.values())
        async with connection(more) as conn:
            try:
                await self._send(conn, batch.steps, batch.copied, batch.starts_run)
            except Exception as exc:
                if getattr(exc, "sqlstate", None) != _UNIQUE_VIOLATION or not batch.new:
                    raise
                # A row taken for new exists (written through another handle): upsert all.
                await self._send(conn, batch.fallback, [], batch.starts_run)
        self._written.remember(fold.runs.values(), batch.new)

    def _steps(self, fold: Fold) -> _Batch:
        """The batch's writes in order: runs, tasks, attempts, state, logs."""
        runs = [as_tuple(r) for r in fold.runs.values()]
        attempts = [as_tuple(r) for r in fold.attempts.values()]
        tasks = list(fold.tasks.values())
        new, written = self._written.split(tasks)
        copied = new if len(new) >= COPY_ROWS else []
        logs = fold.logs
        tail: list[Step] = [
            *self._state.writes(list(fold.states.values())),
            (self._logs.insert, logs.rows),
            (self._logs.trim, logs.trim_rows()),
            (self._logs.trace, [list(t) for t in logs.traces.items()]),
        ]
        # A run row goes as its own parameters: as JSON, its task keys (JSON text of
        # every key) would be escaped a second time and parsed twice by the server.
        run_steps: list[Step] = [(self._upsert_run, run) for run in runs]
        steps: list[Step] = [
            *run_steps,
            (_COPY, ()) if copied else (self._insert_tasks, new),
            (self._upserts[TaskRow], written),
            (self._upserts[AttemptRow], attempts),
            *tail,
        ]
        fallback: list[Step] = [
            *run_steps,
            (self._upserts[TaskRow], tasks if new else []),
            (self._upserts[AttemptRow], attempts),
            *tail,
        ]
        # A run's start (its pipeline) in the batch: a start whose write failed, carried
        # into this one. Its task rows must not land before it.
        starts = any(run.pipeline is not None for run in fold.runs.values())
        return _Batch(_present(steps), _present(fallback), new, copied, starts)

    async def _send(
        self, conn: Any, steps: list[Step], copied: list[TaskValues], starts_run: bool
    ) -> None:
        """Execute ``steps`` in one transaction (one statement needs none)."""
        if len(steps) == 1 and (steps[0][0] is _COPY or len(steps[0][1]) <= JSON_ROWS):
            await self._step(conn, *steps[0], copied)
            return
        tasks = [step for step in steps if step[0] is _COPY or step[0] is self._insert_tasks]
        if (
            tasks
            and not starts_run
            and len(tasks) + sum(sql is self._upsert_run for sql, _ in steps) == len(steps)
            and (tasks[0][0] is _COPY or len(tasks[0][1]) <= JSON_ROWS)
        ):
            # A run's rows and its new task rows only (a run's last batch, say): the
            # tasks first, in one statement, then the run, each a statement of its own
            # (two round trips fewer than a transaction). A crash between them leaves
            # the run RUNNING with its tasks recorded, never ended with tasks missing.
            await self._step(conn, *tasks[0], copied)
            for sql, args in steps:
                if sql is self._upsert_run:
                    await conn.execute(sql, *args)
            return
        async with conn.transaction():
            for sql, args in steps:
                await self._step(conn, sql, args, copied)

    async def _step(
        self, conn: Any, sql: str, args: tuple[Any, ...] | list[Any], copied: list[TaskValues]
    ) -> None:
        if sql is _COPY:
            await conn.copy_records_to_table(
                "tasks", records=copied, columns=_TASK_COLUMNS, schema_name=self._schema
            )
        elif isinstance(args, list):
            for i in range(0, len(args), JSON_ROWS):
                await _execute(conn, sql, args[i : i + JSON_ROWS])
        else:
            await conn.execute(sql, *args)


def _present(steps: list[Step]) -> list[Step]:
    """The steps that write something: statements, the copy, and rows that are there."""
    return [(sql, args) for sql, args in steps if not isinstance(args, list) or args]


async def _execute(conn: Any, sql: str, args: tuple[Any, ...] | list[Any]) -> None:
    if isinstance(args, list):
        await conn.execute(sql, _dumps(args))
    else:
        await conn.execute(sql, *args)


async def write_all(conn: Any, writes: Statements) -> None:
    """Execute ``writes`` on ``conn`` in one transaction."""
    if len(writes) == 1:  # one statement is atomic by itself: save BEGIN and COMMIT
        sql, args = writes[0]
        await conn.execute(sql, *args)
        return
    async with conn.transaction():
        for sql, args in writes:
            await conn.execute(sql, *args)
