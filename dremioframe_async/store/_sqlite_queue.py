"""SQLite's side of many processes on one store (the rules are in ``_coordination``).

Each function runs in the store's worker thread with its connection. Claims
and cancel requests run inside ``BEGIN IMMEDIATE``: SQLite's write lock makes
every read-then-write below atomic across the processes that share the file.
"""

from __future__ import annotations

import sqlite3
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager

from ..orchestration import RunStatus
from ._codec import decode_json
from ._coordination import (
    ACTIVE_RESUMER,
    CancelOutcome,
    QueuedRun,
    below_limit,
    dead_runs,
    resume_refused,
)
from ._errors import RunNotFound
from ._logs import log_sql
from ._owner import current_owner
from ._sql import interrupt_statements

__all__ = [
    "beat",
    "claim_fire",
    "claim_next",
    "claim_resume",
    "enqueue",
    "poll_cancels",
    "request_cancel",
    "sweep",
]


@contextmanager
def _immediate(conn: sqlite3.Connection) -> Iterator[None]:
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


_TRACES = log_sql("sqlite", "")


def _insert_queued(
    conn: sqlite3.Connection,
    run_id: str,
    pipeline: str,
    params: str,
    scheduled_for: float | None,
    now: float,
) -> None:
    conn.execute(
        "INSERT INTO runs (run_id, pipeline, status, started, params, queued_at, scheduled_for) "
        "VALUES (?, ?, 'QUEUED', ?, ?, ?, ?)",
        (run_id, pipeline, now, params, now, scheduled_for),
    )


def enqueue(
    conn: sqlite3.Connection,
    pipeline: str,
    params: str,
    scheduled_for: float | None,
    traceparent: str | None = None,
) -> str:
    run_id = uuid.uuid4().hex
    with _immediate(conn):
        _insert_queued(conn, run_id, pipeline, params, scheduled_for, time.time())
        if traceparent is not None:  # the caller's trace, for the run to continue
            conn.execute(_TRACES.trace, (run_id, traceparent))
    return run_id


def claim_fire(
    conn: sqlite3.Connection, pipeline: str, scheduled_for: float, params: str
) -> str | None:
    run_id = uuid.uuid4().hex
    with _immediate(conn):
        taken = conn.execute(
            "INSERT INTO fires (pipeline, scheduled_for, run_id) VALUES (?, ?, ?) "
            "ON CONFLICT DO NOTHING",
            (pipeline, scheduled_for, run_id),
        ).rowcount
        if not taken:
            return None
        _insert_queued(conn, run_id, pipeline, params, scheduled_for, time.time())
    return run_id


def claim_next(
    conn: sqlite3.Connection, limits: Mapping[str, int | None], run_id: str | None
) -> QueuedRun | None:
    if not limits:
        return None
    names = list(limits)
    marks = ", ".join("?" for _ in names)
    with _immediate(conn):
        active = dict(
            conn.execute(
                f"SELECT pipeline, count(*) FROM runs WHERE status = 'RUNNING' "
                f"AND pipeline IN ({marks}) GROUP BY pipeline",
                names,
            ).fetchall()
        )
        # Only pipelines below their limit are looked at, so a long queue of a
        # pipeline at its limit never hides the runs of the others behind it.
        names = [n for n in names if below_limit(limits[n], active.get(n, 0))]
        if not names:
            return None
        marks = ", ".join("?" for _ in names)
        only = " AND run_id = ?" if run_id is not None else ""
        row = conn.execute(
            "SELECT run_id, pipeline, params, scheduled_for, queued_at, resumed_from FROM runs "
            f"WHERE status = 'QUEUED' AND pipeline IN ({marks}){only} "
            "ORDER BY queued_at, run_id LIMIT 1",
            (*names, *(() if run_id is None else (run_id,))),
        ).fetchone()
        if row is None:
            return None
        rid, pipeline, params, scheduled_for, queued_at, resumed_from = row
        now = time.time()
        conn.execute(
            "UPDATE runs SET status = 'RUNNING', owner = ?, started = ?, heartbeat = ? "
            "WHERE run_id = ? AND status = 'QUEUED'",
            (current_owner(), now, now, rid),
        )
        params = decode_json(params, {})
        return QueuedRun(rid, pipeline, params, scheduled_for, queued_at, resumed_from)


def request_cancel(conn: sqlite3.Connection, run_id: str) -> CancelOutcome:
    with _immediate(conn):
        row = conn.execute(
            "SELECT status, cancel_requests FROM runs WHERE run_id = ?", (run_id,)
        ).fetchone()
        if row is None:
            raise RunNotFound(run_id)
        status, requests = RunStatus(row[0] or "RUNNING"), row[1] or 0
        if status is RunStatus.QUEUED:
            conn.execute(
                "UPDATE runs SET status = 'CANCELLED', finished = ? WHERE run_id = ?",
                (time.time(), run_id),
            )
            return CancelOutcome(run_id, RunStatus.CANCELLED, 0)
        if status is not RunStatus.RUNNING:
            return CancelOutcome(run_id, status, requests)
        conn.execute("UPDATE runs SET cancel_requests = ? WHERE run_id = ?", (requests + 1, run_id))
        return CancelOutcome(run_id, status, requests + 1)


def beat(conn: sqlite3.Connection, run_ids: Sequence[str]) -> None:
    marks = ", ".join("?" for _ in run_ids)
    with _immediate(conn):
        conn.execute(
            f"UPDATE runs SET heartbeat = ? WHERE status = 'RUNNING' AND run_id IN ({marks})",
            (time.time(), *run_ids),
        )


def poll_cancels(conn: sqlite3.Connection, run_ids: Sequence[str]) -> dict[str, int]:
    marks = ", ".join("?" for _ in run_ids)
    rows = conn.execute(
        # A run found INTERRUPTED (its owner was judged dead: frozen or cut off past
        # dead_after) counts as asked to cancel: its owner is fenced off.
        "SELECT run_id, CASE WHEN status = 'INTERRUPTED' THEN max(COALESCE(cancel_requests, 0), 1) "
        f"ELSE cancel_requests END FROM runs WHERE run_id IN ({marks}) "
        "AND (cancel_requests > 0 OR status = 'INTERRUPTED')",
        list(run_ids),
    ).fetchall()
    return dict(rows)


def claim_resume(conn: sqlite3.Connection, run_id: str, by: str, queued: bool) -> None:
    with _immediate(conn):
        row = conn.execute(
            "SELECT r.resumed_by, w.status FROM runs AS r "
            "LEFT JOIN runs AS w ON w.run_id = r.resumed_by WHERE r.run_id = ?",
            (run_id,),
        ).fetchone()
        if row is None:
            raise RunNotFound(run_id)
        winner, winner_status = row
        if winner is not None and winner != by and winner_status in ACTIVE_RESUMER:
            raise resume_refused(run_id, winner)
        now = time.time()
        conn.execute("UPDATE runs SET resumed_by = ? WHERE run_id = ?", (by, run_id))
        # The resuming run exists from now on, so a second claim sees it.
        status, owner, heartbeat = (
            ("QUEUED", None, None) if queued else ("RUNNING", current_owner(), now)
        )
        conn.execute(
            "INSERT INTO runs (run_id, pipeline, status, started, heartbeat, owner, "
            "resumed_from, scheduled_for, params, queued_at) "
            "SELECT ?, pipeline, ?, ?, ?, ?, run_id, scheduled_for, params, ? FROM runs "
            "WHERE run_id = ? ON CONFLICT (run_id) DO NOTHING",
            (by, status, now, heartbeat, owner, now if queued else None, run_id),
        )


def sweep(conn: sqlite3.Connection, dead_after: float) -> None:
    """Mark RUNNING runs INTERRUPTED whose heartbeat is stale or whose process is gone."""
    rows = conn.execute(
        "SELECT run_id, owner, COALESCE(heartbeat, started) FROM runs WHERE status = 'RUNNING'"
    ).fetchall()
    dead = dead_runs(rows, dead_after)
    if not dead:
        return
    first, *rest = interrupt_statements("sqlite", "")
    with _immediate(conn):
        for run_id, stale_before in dead:
            # The heartbeat may have been renewed since it was read: check again.
            changed = conn.execute(
                first + " AND (?2 IS NULL OR COALESCE(r.heartbeat, r.started) < ?2)",
                (run_id, stale_before),
            ).rowcount
            if changed:
                for sql in rest:
                    conn.execute(sql, (run_id,))
