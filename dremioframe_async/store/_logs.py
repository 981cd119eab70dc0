"""Captured task log lines in a store: folding them, their SQL, and reading them in pages.

The engine sends each attempt's lines as :class:`~dremioframe_async.orchestration.TaskLogged`
events, every event naming the oldest line the attempt still keeps. A store
inserts the new lines (a batch sent twice inserts nothing twice) and deletes the
attempt's lines older than that, so what is stored is what the capture's bounds
keep. Lines are read in insertion order (``id``), which lets a reader follow a
running task by asking for the lines after the last one it has; the first line
kept of an attempt whose older lines were dropped carries ``dropped_before``,
where a reader shows :func:`drop_marker`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

from .._masking import mask_text
from ..orchestration import RunStarted, TaskLogged
from ._errors import StoreConfigError

__all__ = [
    "LogEntry",
    "LogFold",
    "LogPage",
    "LogQuery",
    "LogReader",
    "MemoryLogs",
    "drop_marker",
    "log_sql",
]

MAX_PAGE = 10_000


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One stored log line of attempt ``attempt`` of task instance ``key``.

    ``id`` orders every line of a store (pass the last one seen as
    ``LogQuery.after`` to read on). ``seq`` numbers the attempt's lines from 1;
    ``dropped_before`` is how many lines of the attempt were dropped just before
    this one (non-zero on the first line kept, when the capture's bounds were hit).
    """

    id: int
    key: str
    attempt: int
    seq: int
    time: float
    level: str
    logger: str
    message: str
    dropped_before: int = 0

    def json_fields(self) -> dict[str, Any]:
        """The line as JSON, as ``logs --format json`` prints it and the UI's API serves it."""
        return {
            "task": self.key,
            "attempt": self.attempt,
            "seq": self.seq,
            "time": self.time,
            "level": self.level,
            "logger": self.logger,
            "message": self.message,
            "dropped_before": self.dropped_before,
        }


@dataclass(frozen=True, slots=True)
class LogQuery:
    """Which lines of run ``run_id`` to read: one task, one attempt, after line ``after``.

    :raises StoreConfigError: (a ``ValueError``) for a limit outside 1..10000 or a
        negative ``after`` or ``attempt``.
    """

    run_id: str
    key: str | None = None
    attempt: int | None = None
    after: int = 0
    limit: int = 500

    def __post_init__(self) -> None:
        if not 1 <= self.limit <= MAX_PAGE:
            raise StoreConfigError(f"limit must be within 1..{MAX_PAGE}, got {self.limit!r}")
        if self.after < 0 or (self.attempt is not None and self.attempt < 1):
            raise StoreConfigError(
                f"after must be >= 0 and attempt >= 1, got after={self.after!r}, "
                f"attempt={self.attempt!r}"
            )


@dataclass(frozen=True, slots=True)
class LogPage:
    """Up to ``limit`` lines in store order; ``next_after`` continues after them.

    ``more`` is true when the page is full (more lines may be waiting now).
    """

    lines: tuple[LogEntry, ...]
    next_after: int
    more: bool


@runtime_checkable
class LogReader(Protocol):
    """A store whose captured task logs can be read."""

    async def get_logs(self, query: LogQuery) -> LogPage:
        """Return one page of the lines ``query`` selects."""
        ...


def drop_marker(dropped: int) -> str:
    """The line a reader shows where ``dropped`` lines of an attempt were dropped."""
    s = "" if dropped == 1 else "s"
    return f"[... {dropped} earlier line{s} dropped: the capture keeps the newest ...]"


# (run_id, key, attempt, seq, time, level, logger, message), in column order.
LogRow = tuple[str, str, int, int, float, str, str, str]
_COLUMNS = "run_id, key, attempt, seq, time, level, logger, message"


class LogFold:
    """The log rows and trims of one batch of events, and the traced runs' traceparents."""

    def __init__(self, text: Callable[[str], str]) -> None:
        self._text = text
        self.rows: list[LogRow] = []
        self.trims: dict[tuple[str, str, int], int] = {}
        self.traces: dict[str, str] = {}

    def trace(self, event: RunStarted) -> None:
        if event.traceparent is not None:
            self.traces[self._text(event.run_id)] = event.traceparent

    def add(self, event: TaskLogged) -> None:
        text = self._text
        run_id, key = text(event.run_id), text(event.key)
        for line in event.lines:
            self.rows.append(
                (
                    run_id,
                    key,
                    event.attempt,
                    line.seq,
                    line.time,
                    line.level,
                    text(line.logger),
                    # Captured output is masked before it is stored (dremioframe_async._masking).
                    text(mask_text(line.message)),
                )
            )
        where = (run_id, key, event.attempt)
        if event.first_seq > 1:
            self.trims[where] = max(self.trims.get(where, 0), event.first_seq)

    def trim_rows(self) -> list[tuple[str, str, int, int]]:
        return [(*where, first) for where, first in self.trims.items()]


@dataclass(frozen=True, slots=True)
class LogSQL:
    """The statements of one dialect and table prefix."""

    insert: str
    trim: str
    page: Callable[[LogQuery], tuple[str, list[Any]]]
    trace: str  # record a run's traceparent (PostgreSQL: a JSON array of [run_id, traceparent])
    traceparent: str  # read one (one parameter: the run id)


def log_sql(dialect: Literal["sqlite", "postgres"], prefix: str) -> LogSQL:
    """Statements for ``dialect``: PostgreSQL's take one JSON array of rows each."""
    table = f"{prefix}task_logs"
    if dialect == "sqlite":
        marks = ", ".join("?" * 8)
        insert = f"INSERT INTO {table} ({_COLUMNS}) VALUES ({marks}) ON CONFLICT DO NOTHING"
        trim = f"DELETE FROM {table} WHERE run_id = ? AND key = ? AND attempt = ? AND seq < ?"
    else:
        types = ("text", "text", "int8", "int8", "float8", "text", "text", "text")
        values = ", ".join(f"(e->>{i})::{t}" for i, t in enumerate(types))
        insert = (
            f"INSERT INTO {table} ({_COLUMNS}) SELECT {values} "
            "FROM jsonb_array_elements($1::jsonb) AS e ON CONFLICT DO NOTHING"
        )
        trim = (
            f"DELETE FROM {table} AS l USING jsonb_array_elements($1::jsonb) AS e "
            "WHERE l.run_id = e->>0 AND l.key = e->>1 AND l.attempt = (e->>2)::int8 "
            "AND l.seq < (e->>3)::int8"
        )
    traces = f"{prefix}run_traces"
    if dialect == "sqlite":
        trace = f"INSERT OR REPLACE INTO {traces} (run_id, traceparent) VALUES (?, ?)"
        read = f"SELECT traceparent FROM {traces} WHERE run_id = ?"
    else:
        trace = (
            f"INSERT INTO {traces} (run_id, traceparent) SELECT e->>0, e->>1 "
            "FROM jsonb_array_elements($1::jsonb) AS e "
            "ON CONFLICT (run_id) DO UPDATE SET traceparent = excluded.traceparent"
        )
        read = f"SELECT traceparent FROM {traces} WHERE run_id = $1"
    return LogSQL(insert, trim, lambda query: _page_sql(table, dialect, query), trace, read)


def _page_sql(table: str, dialect: str, query: LogQuery) -> tuple[str, list[Any]]:
    args: list[Any] = [query.run_id, query.after]
    where = "l.run_id = {} AND l.id > {}"
    if query.key is not None:
        args.append(query.key)
        where += " AND l.key = {}"
    if query.attempt is not None:
        args.append(query.attempt)
        where += " AND l.attempt = {}"
    marks = [f"${i}" if dialect == "postgres" else "?" for i in range(1, len(args) + 2)]
    args.append(query.limit)
    # The first line kept of an attempt tells how many were dropped before it.
    dropped = (
        f"CASE WHEN l.seq > 1 AND l.seq = (SELECT min(m.seq) FROM {table} AS m WHERE "
        "m.run_id = l.run_id AND m.key = l.key AND m.attempt = l.attempt) "
        "THEN l.seq - 1 ELSE 0 END"
    )
    sql = (
        f"SELECT l.id, l.key, l.attempt, l.seq, l.time, l.level, l.logger, l.message, {dropped} "
        f"FROM {table} AS l WHERE {where.format(*marks[:-1])} ORDER BY l.id LIMIT {marks[-1]}"
    )
    return sql, args


def log_page_of(query: LogQuery, rows: Iterable[Sequence[Any]]) -> LogPage:
    """A :class:`LogPage` from the rows of a page query."""
    lines = tuple(LogEntry(*row) for row in rows)
    after = lines[-1].id if lines else query.after
    return LogPage(lines, after, len(lines) == query.limit)


class MemoryLogs:
    """The memory store's lines: per run, in insertion order, keyed by attempt and seq."""

    def __init__(self) -> None:
        self._next = 0
        self._runs: dict[str, dict[tuple[str, int, int], LogEntry]] = {}
        self.traces: dict[str, str] = {}

    def apply(self, fold: LogFold) -> None:
        self.traces.update(fold.traces)
        for run_id, key, attempt, seq, time, level, logger, message in fold.rows:
            lines = self._runs.setdefault(run_id, {})
            if (key, attempt, seq) not in lines:
                self._next += 1
                entry = LogEntry(self._next, key, attempt, seq, time, level, logger, message)
                lines[key, attempt, seq] = entry
        for (run_id, key, attempt), first in fold.trims.items():
            lines = self._runs.get(run_id, {})
            for where in [w for w in lines if w[0] == key and w[1] == attempt and w[2] < first]:
                del lines[where]

    def page(self, query: LogQuery) -> LogPage:
        lines = self._runs.get(query.run_id, {})
        chosen = [
            e
            for e in lines.values()
            if e.id > query.after
            and (query.key is None or e.key == query.key)
            and (query.attempt is None or e.attempt == query.attempt)
        ][: query.limit]
        firsts: dict[tuple[str, int], int] = {}
        for e in lines.values():
            where = (e.key, e.attempt)
            firsts[where] = min(firsts.get(where, e.seq), e.seq)
        rows = [
            (*_fields(e), e.seq - 1 if e.seq == firsts[e.key, e.attempt] else 0) for e in chosen
        ]
        return log_page_of(query, rows)


def _fields(e: LogEntry) -> tuple[Any, ...]:
    return (e.id, e.key, e.attempt, e.seq, e.time, e.level, e.logger, e.message)
