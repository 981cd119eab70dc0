"""SQL shared by the SQLite and PostgreSQL stores: one logical schema, generated upserts.

``{p}`` in a statement is the table prefix (``""`` for SQLite, ``"schema".``
for PostgreSQL); ``{real}``, ``{bool}`` and ``{int}`` are the column types.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import fields
from typing import Literal

from ._fold import AttemptRow, RunRow, TaskRow
from ._model import INTERRUPTED_REASON

__all__ = [
    "MIGRATIONS",
    "Dialect",
    "columns",
    "interrupt_statements",
    "mapped_parents",
    "upsert",
    "upsert_json",
]

Dialect = Literal["sqlite", "postgres"]

_TYPES = {
    "sqlite": {
        "real": "REAL",
        "bool": "INTEGER",
        "int": "INTEGER",
        # AUTOINCREMENT: an id is never reused, so a reader following new lines misses none.
        "serial": "INTEGER PRIMARY KEY AUTOINCREMENT",
    },
    "postgres": {
        "real": "DOUBLE PRECISION",
        "bool": "BOOLEAN",
        "int": "BIGINT",
        "serial": "BIGSERIAL PRIMARY KEY",
    },
}


class SQLiteOnly(str):
    """A migration statement for SQLite only (PostgreSQL's version passes it by)."""

    __slots__ = ()


# Version N is reached by running MIGRATIONS[N - 1]; never edit a released entry, append one.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE {p}runs (
            run_id TEXT PRIMARY KEY, pipeline TEXT, status TEXT, started {real},
            finished {real}, params TEXT, resumed_from TEXT, owner TEXT, owner_key {int})""",
        """CREATE TABLE {p}tasks (
            {seq}run_id TEXT NOT NULL, key TEXT NOT NULL, state TEXT,
            attempts {int}, started {real}, finished {real}, reason TEXT, upstream TEXT,
            result TEXT, result_stored {bool}, result_type TEXT, result_note TEXT,
            PRIMARY KEY (run_id, key))""",
        """CREATE TABLE {p}attempts (
            run_id TEXT NOT NULL, key TEXT NOT NULL, number {int} NOT NULL, state TEXT,
            started {real}, finished {real}, error_type TEXT, error_message TEXT,
            error_traceback TEXT, retry_delay {real}, PRIMARY KEY (run_id, key, number))""",
    ),
    (
        "CREATE INDEX {ip}runs_by_pipeline ON {p}runs (pipeline, started)",
        "CREATE INDEX {ip}runs_by_status ON {p}runs (status)",
    ),
    # A run's task keys (JSON list) replace the PENDING rows written at its start;
    # runs recorded before keep those rows and have no task_keys.
    ("ALTER TABLE {p}runs ADD COLUMN task_keys TEXT",),
    # Keyset pages of runs, newest first, filtered or not (see _paging).
    (
        "CREATE INDEX {ip}runs_by_started ON {p}runs (started, run_id)",
        "CREATE INDEX {ip}runs_by_pipeline_started ON {p}runs (pipeline, started, run_id)",
        "CREATE INDEX {ip}runs_by_status_started ON {p}runs (status, started, run_id)",
    ),
    # Many processes on one store (see _coordination): fire claims, the run queue,
    # heartbeats, cancel requests and the one accepted resume of a run.
    (
        "ALTER TABLE {p}runs ADD COLUMN scheduled_for {real}",
        "ALTER TABLE {p}runs ADD COLUMN heartbeat {real}",
        "ALTER TABLE {p}runs ADD COLUMN cancel_requests {int}",
        "ALTER TABLE {p}runs ADD COLUMN queued_at {real}",
        "ALTER TABLE {p}runs ADD COLUMN resumed_by TEXT",
        """CREATE TABLE {p}fires (
            pipeline TEXT NOT NULL, scheduled_for {real} NOT NULL, run_id TEXT NOT NULL,
            PRIMARY KEY (pipeline, scheduled_for))""",
        "CREATE INDEX {ip}runs_queued ON {p}runs (status, queued_at)",
    ),
    # Pipeline state (see store/_state.py), and the data interval and backfill of a run
    # (from its params interval_start, interval_end and backfill_id).
    (
        """CREATE TABLE {p}pipeline_state (
            pipeline TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL, updated {real},
            run_id TEXT, task TEXT, PRIMARY KEY (pipeline, key))""",
        "ALTER TABLE {p}runs ADD COLUMN interval_start TEXT",
        "ALTER TABLE {p}runs ADD COLUMN interval_end TEXT",
        "ALTER TABLE {p}runs ADD COLUMN backfill TEXT",
        "CREATE INDEX {ip}runs_by_interval ON {p}runs (pipeline, interval_start)",
        "CREATE INDEX {ip}runs_by_backfill ON {p}runs (backfill)",
    ),
    # Captured task log lines, per attempt, in insertion order, and the trace
    # context of traced runs (see _logs).
    (
        """CREATE TABLE {p}task_logs (
            id {serial}, run_id TEXT NOT NULL, key TEXT NOT NULL, attempt {int} NOT NULL,
            seq {int} NOT NULL, time {real}, level TEXT, logger TEXT, message TEXT,
            UNIQUE (run_id, key, attempt, seq))""",
        "CREATE INDEX {ip}task_logs_by_run ON {p}task_logs (run_id, id)",
        # A traced run's span (W3C traceparent), for the span of a resume to link to.
        "CREATE TABLE {p}run_traces (run_id TEXT PRIMARY KEY, traceparent TEXT NOT NULL)",
    ),
    # Paused schedules, for every scheduler on the store (see _pauses).
    (
        """CREATE TABLE {p}schedule_pauses (
            pipeline TEXT PRIMARY KEY, paused_at {real} NOT NULL)""",
    ),
    # SQLite keeps a run's task keys (JSON) in a row of their own: it rewrites a whole
    # row on every UPDATE, and a heartbeat or the end of a run of 10^6 tasks rewrote
    # 15 MB of keys each time. PostgreSQL stores large values apart from the row and
    # reuses them when other columns change: its runs keep theirs.
    (SQLiteOnly("CREATE TABLE {p}run_keys (run_id TEXT PRIMARY KEY, task_keys TEXT NOT NULL)"),),
)


def migration(version: int, dialect: Dialect, prefix: str) -> tuple[str, ...]:
    """The statements that bring a database from ``version - 1`` to ``version``."""
    # Task order is insertion order: SQLite has rowid for it, PostgreSQL gets a serial column.
    seq = "" if dialect == "sqlite" else "seq BIGSERIAL, "
    # PostgreSQL puts an index in its table's schema by itself; the name takes no prefix.
    index_prefix = prefix if dialect == "sqlite" else ""
    return tuple(
        sql.format(p=prefix, ip=index_prefix, seq=seq, **_TYPES[dialect])
        for sql in MIGRATIONS[version - 1]
        if dialect == "sqlite" or not isinstance(sql, SQLiteOnly)
    )


def columns(cls: type[RunRow | TaskRow | AttemptRow]) -> list[str]:
    """Column names of a row type, in field order."""
    return [f.name for f in fields(cls)]


# Statuses a run never leaves once recorded. INTERRUPTED is one: a run judged dead (its
# heartbeat stale past dead_after) may be resumed elsewhere, so an owner that was only
# frozen or cut off must not turn it back; its attendance cancels it (see _coordination).
FINAL_STATUSES = ("SUCCESS", "FAILED", "CANCELLED", "INTERRUPTED")
FINAL_SQL = "(" + ", ".join(f"'{s}'" for s in FINAL_STATUSES) + ")"

_KEYS = {RunRow: ("run_id",), TaskRow: ("run_id", "key"), AttemptRow: ("run_id", "key", "number")}
_TABLES = {RunRow: "runs", TaskRow: "tasks", AttemptRow: "attempts"}


def _merge_expr(column: str, dialect: Dialect) -> str:
    # Mirrors _fold.merge: None keeps the stored value, started keeps the first, attempts the max,
    # and a run that ended SUCCESS, FAILED or CANCELLED keeps that status.
    if column == "status":
        return (
            f"CASE WHEN t.status IN {FINAL_SQL} THEN t.status "
            "ELSE COALESCE(excluded.status, t.status) END"
        )
    if column == "started":
        return "COALESCE(t.started, excluded.started)"
    if column == "attempts":
        greatest = "max" if dialect == "sqlite" else "GREATEST"
        return f"COALESCE({greatest}(t.attempts, excluded.attempts), excluded.attempts, t.attempts)"
    return f"COALESCE(excluded.{column}, t.{column})"


def upsert(
    cls: type[RunRow | TaskRow | AttemptRow],
    dialect: Dialect,
    prefix: str,
    rows: int = 1,
    *,
    fresh: bool = False,
) -> str:
    """An ``INSERT ... ON CONFLICT DO UPDATE`` applying ``rows`` patch rows of ``cls``.

    The rows must have distinct keys (the fold merges a batch's patches per row).
    ``fresh``: a plain ``INSERT``, for rows known not to exist yet (it fails if one does).
    """
    cols = columns(cls)
    if dialect == "sqlite":
        marks = ", ".join("?" for _ in cols)
    else:
        marks = ", ".join(f"${i}" for i in range(1, len(cols) + 1))
    values = ", ".join(f"({marks})" for _ in range(rows))
    return _insert(cls, prefix, cols, values, dialect, fresh)


def upsert_shared(
    cls: type[RunRow | TaskRow | AttemptRow],
    prefix: str,
    shared: Sequence[int],
    rows: int,
    *,
    fresh: bool = False,
) -> str:
    """SQLite: ``upsert`` of ``rows`` rows that hold the same values in the columns at
    positions ``shared``, bound once (parameters 1 to ``len(shared)``) before each
    row's other columns.

    SQLite's driver binds each parameter under the GIL, about a quarter of a
    microsecond each: most task rows of a wide run differ only in their key and
    times, so binding three values a row instead of twelve makes the write a
    third as costly.
    """
    every = columns(cls)
    own = [i for i in range(len(every)) if i not in shared]
    cols = [every[i] for i in (*shared, *own)]
    common = ", ".join(f"?{n}" for n in range(1, len(shared) + 1))
    values = ", ".join(
        f"({common}, "
        + ", ".join(f"?{len(shared) + r * len(own) + j}" for j in range(1, len(own) + 1))
        + ")"
        for r in range(rows)
    )
    return _insert(cls, prefix, cols, values, "sqlite", fresh)


def _insert(
    cls: type[RunRow | TaskRow | AttemptRow],
    prefix: str,
    cols: Sequence[str],
    values: str,
    dialect: Dialect,
    fresh: bool,
) -> str:
    if fresh:
        return f"INSERT INTO {prefix}{_TABLES[cls]} ({', '.join(cols)}) VALUES {values}"
    keys = _KEYS[cls]
    updates = ", ".join(f"{c} = {_merge_expr(c, dialect)}" for c in cols if c not in keys)
    return (
        f"INSERT INTO {prefix}{_TABLES[cls]} AS t ({', '.join(cols)}) VALUES {values} "
        f"ON CONFLICT ({', '.join(keys)}) DO UPDATE SET {updates}"
    )


_PG_TYPES = {"str": "text", "float": "float8", "int": "int8", "bool": "bool"}


def upsert_json(
    cls: type[RunRow | TaskRow | AttemptRow], prefix: str, *, fresh: bool = False
) -> str:
    """PostgreSQL: upsert many rows of ``cls`` given as one JSON array of row arrays.

    One statement and one round trip per table and batch, where ``executemany``
    runs the upsert once per row. JSON rather than one array per column: asyncpg
    checks every element of an array parameter against ``collections.abc``
    (about 5 µs per 12-column row on the event loop), while one JSON text is
    encoded by ``json.dumps`` in C. Floats survive: Python writes the shortest
    repr and PostgreSQL reads it back exactly. A batch never holds two patches
    of one row (the fold merges them), which ``ON CONFLICT DO UPDATE`` requires.
    ``fresh``: a plain ``INSERT``, for rows known not to exist yet.
    """
    cols = columns(cls)
    keys = _KEYS[cls]
    types = [_PG_TYPES[str(f.type).split(" ")[0]] for f in fields(cls)]
    values = ", ".join(f"(e->>{i})::{t}" for i, t in enumerate(types))
    if fresh:
        return (
            f"INSERT INTO {prefix}{_TABLES[cls]} ({', '.join(cols)}) "
            f"SELECT {values} FROM jsonb_array_elements($1::jsonb) AS e"
        )
    updates = ", ".join(f"{c} = {_merge_expr(c, 'postgres')}" for c in cols if c not in keys)
    return (
        f"INSERT INTO {prefix}{_TABLES[cls]} AS t ({', '.join(cols)}) "
        f"SELECT {values} FROM jsonb_array_elements($1::jsonb) AS e "
        f"ON CONFLICT ({', '.join(keys)}) DO UPDATE SET {updates}"
    )


def select(cls: type[RunRow | TaskRow | AttemptRow], prefix: str) -> str:
    """``SELECT <columns> FROM <table>`` for a row type (append the WHERE clause)."""
    return f"SELECT {', '.join(columns(cls))} FROM {prefix}{_TABLES[cls]}"


def mapped_parents(prefix: str, runs: str) -> str:
    """``SELECT run_id, state, -count(*)`` of the mapped tasks of the runs ``runs``
    selects (a condition on ``c.run_id``), to add to a run's task counts.

    A run's task counts count the instances of a mapped task (``key[0]``,
    ``key[1]``...) in its place, as the UI groups them, so 6 failed instances read
    "6 failed", not 7. A mapped task is found from its instance ``key[0]``: that is
    a few rows per run to join, where testing every row for instances costs a
    lookup each (2.7 times the count of a 10,000-task run in SQLite).
    """
    return (
        f"SELECT c.run_id, p.state, -count(*) FROM {prefix}tasks AS c "
        f"JOIN {prefix}tasks AS p ON p.run_id = c.run_id "
        "AND p.key = substr(c.key, 1, length(c.key) - 3) "
        f"WHERE {runs} AND substr(c.key, length(c.key) - 2) = '[0]' GROUP BY c.run_id, p.state"
    )


def _greatest(dialect: Dialect, a: str, b: str) -> str:
    """The larger of two nullable values, NULL only when both are (PostgreSQL's GREATEST)."""
    if dialect == "postgres":
        return f"GREATEST({a}, {b})"
    # SQLite's two-argument max() is NULL when either argument is.
    return f"NULLIF(max(COALESCE({a}, 0), COALESCE({b}, 0)), 0)"


def interrupt_statements(dialect: Dialect, prefix: str) -> tuple[str, ...]:
    """Statements (one parameter: the run id) that mark a RUNNING run INTERRUPTED.

    The run ends at its last sign of life: the later of what it last recorded and
    its last heartbeat (a task that ran for minutes records nothing meanwhile, but
    its process renews the heartbeat). Its RUNNING tasks and attempts end
    CANCELLED then, with :data:`INTERRUPTED_REASON`, so nothing of an interrupted
    run still shows RUNNING.
    """
    p, arg = prefix, "$1" if dialect == "postgres" else "?1"
    recorded = _greatest(
        dialect,
        f"(SELECT max({_greatest(dialect, 't.finished', 't.started')}) FROM {p}tasks AS t "
        "WHERE t.run_id = r.run_id)",
        f"(SELECT max({_greatest(dialect, 'a.finished', 'a.started')}) FROM {p}attempts AS a "
        "WHERE a.run_id = r.run_id)",
    )
    last = _greatest(dialect, recorded, "r.heartbeat")
    end = f"COALESCE(finished, (SELECT finished FROM {p}runs WHERE run_id = {arg}))"
    reason = INTERRUPTED_REASON.replace("'", "''")
    return (
        f"UPDATE {p}runs AS r SET status = 'INTERRUPTED', finished = COALESCE({last}, r.started) "
        f"WHERE r.run_id = {arg} AND r.status = 'RUNNING'",
        f"UPDATE {p}tasks SET state = 'CANCELLED', reason = '{reason}', finished = {end} "
        f"WHERE run_id = {arg} AND state = 'RUNNING'",
        f"UPDATE {p}attempts SET state = 'CANCELLED', finished = {end} "
        f"WHERE run_id = {arg} AND state = 'RUNNING'",
    )
