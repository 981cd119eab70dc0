"""PostgreSQL's side of many processes on one store (the rules are in ``_coordination``).

Claims run in one transaction each: ``FOR UPDATE SKIP LOCKED`` lets claimers
pass each other's rows, and a transaction-scoped advisory lock per limited
pipeline serialises the count of its RUNNING runs with the claim, so
``max_active_runs`` holds across processes and hosts. Queueing a run and asking
for a cancel send a ``NOTIFY`` (see ``PostgresStore``), so listeners act at once;
polling remains the fallback when the listening connection is lost.
"""

from __future__ import annotations

import time
import uuid
import zlib
from collections.abc import Mapping, Sequence
from typing import Any

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


def _pipeline_lock(prefix: str, pipeline: str) -> int:
    """A stable transaction-lock key for counting ``pipeline``'s active runs."""
    return 0x0DF1_0000_0000 + zlib.crc32(f"{prefix}{pipeline}".encode())


async def _insert_queued(
    conn: Any, p: str, run_id: str, pipeline: str, params: str, scheduled_for: float | None
) -> None:
    now = time.time()
    await conn.execute(
        f"INSERT INTO {p}runs (run_id, pipeline, status, started, params, queued_at, "
        "scheduled_for) VALUES ($1, $2, 'QUEUED', $3, $4, $3, $5)",
        run_id,
        pipeline,
        now,
        params,
        scheduled_for,
    )


async def enqueue(
    conn: Any,
    p: str,
    channel: str,
    pipeline: str,
    params: str,
    scheduled_for: float | None,
    traceparent: str | None = None,
) -> str:
    run_id = uuid.uuid4().hex
    async with conn.transaction():
        await _insert_queued(conn, p, run_id, pipeline, params, scheduled_for)
        if traceparent is not None:  # the caller's trace, for the run to continue
            await conn.execute(
                f"INSERT INTO {p}run_traces (run_id, traceparent) VALUES ($1, $2)",
                run_id,
                traceparent,
            )
        await conn.execute("SELECT pg_notify($1, $2)", channel, pipeline)
    return run_id


async def claim_fire(
    conn: Any, p: str, channel: str, pipeline: str, scheduled_for: float, params: str
) -> str | None:
    run_id = uuid.uuid4().hex
    async with conn.transaction():
        taken = await conn.fetchval(
            f"INSERT INTO {p}fires (pipeline, scheduled_for, run_id) VALUES ($1, $2, $3) "
            "ON CONFLICT DO NOTHING RETURNING run_id",
            pipeline,
            scheduled_for,
            run_id,
        )
        if taken is None:
            return None
        await _insert_queued(conn, p, run_id, pipeline, params, scheduled_for)
        await conn.execute("SELECT pg_notify($1, $2)", channel, pipeline)
    return run_id


async def claim_next(
    conn: Any, p: str, limits: Mapping[str, int | None], run_id: str | None
) -> QueuedRun | None:
    if not limits:
        return None
    names = sorted(limits)
    limited = [n for n in names if limits[n] is not None]
    if not limited:  # one statement, one round trip: the common case
        return await _claim_oldest(conn, p, names, run_id)
    async with conn.transaction():
        for name in limited:  # sorted: two claimers never wait for each other in a cycle
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _pipeline_lock(p, name))
        counted = await conn.fetch(
            f"SELECT pipeline, count(*) FROM {p}runs WHERE status = 'RUNNING' "
            "AND pipeline = ANY($1::text[]) GROUP BY pipeline",
            limited,
        )
        active = {name: count for name, count in counted}  # noqa: C416 (Records)
        # Only pipelines below their limit are looked at, so a long queue of a
        # pipeline at its limit never hides the runs of the others behind it.
        open_names = [n for n in names if below_limit(limits[n], active.get(n, 0))]
        return await _claim_oldest(conn, p, open_names, run_id) if open_names else None


async def _claim_oldest(
    conn: Any, p: str, names: Sequence[str], run_id: str | None
) -> QueuedRun | None:
    """Take the oldest QUEUED run of ``names`` (``FOR UPDATE SKIP LOCKED``: claimers pass)."""
    row = await conn.fetchrow(
        f"UPDATE {p}runs SET status = 'RUNNING', owner = $1, started = $2, heartbeat = $2 "
        f"WHERE run_id = (SELECT run_id FROM {p}runs WHERE status = 'QUEUED' "
        "AND pipeline = ANY($3::text[]) AND ($4::text IS NULL OR run_id = $4) "
        "ORDER BY queued_at, run_id LIMIT 1 FOR UPDATE SKIP LOCKED) "
        "RETURNING run_id, pipeline, params, scheduled_for, queued_at, resumed_from",
        current_owner(),
        time.time(),
        list(names),
        run_id,
    )
    if row is None:
        return None
    rid, pipeline, params, scheduled_for, queued_at, resumed_from = row
    params = decode_json(params, {})
    return QueuedRun(rid, pipeline, params, scheduled_for, queued_at, resumed_from)


async def request_cancel(conn: Any, p: str, channel: str, run_id: str) -> CancelOutcome:
    async with conn.transaction():
        row = await conn.fetchrow(
            f"SELECT status, cancel_requests FROM {p}runs WHERE run_id = $1 FOR UPDATE", run_id
        )
        if row is None:
            raise RunNotFound(run_id)
        status, requests = RunStatus(row[0] or "RUNNING"), row[1] or 0
        if status is RunStatus.QUEUED:
            await conn.execute(
                f"UPDATE {p}runs SET status = 'CANCELLED', finished = $1 WHERE run_id = $2",
                time.time(),
                run_id,
            )
            return CancelOutcome(run_id, RunStatus.CANCELLED, 0)
        if status is not RunStatus.RUNNING:
            return CancelOutcome(run_id, status, requests)
        await conn.execute(
            f"UPDATE {p}runs SET cancel_requests = $1 WHERE run_id = $2", requests + 1, run_id
        )
        await conn.execute("SELECT pg_notify($1, $2)", channel, run_id)
        return CancelOutcome(run_id, status, requests + 1)


async def beat(conn: Any, p: str, run_ids: Sequence[str]) -> None:
    await conn.execute(
        f"UPDATE {p}runs SET heartbeat = $1 WHERE status = 'RUNNING' AND run_id = ANY($2::text[])",
        time.time(),
        list(run_ids),
    )


async def poll_cancels(conn: Any, p: str, run_ids: Sequence[str]) -> dict[str, int]:
    # A run found INTERRUPTED (its owner was judged dead: frozen or cut off past
    # dead_after) counts as asked to cancel: its owner is fenced off.
    rows = await conn.fetch(
        "SELECT run_id, CASE WHEN status = 'INTERRUPTED' "
        "THEN GREATEST(COALESCE(cancel_requests, 0), 1) ELSE cancel_requests END "
        f"FROM {p}runs WHERE run_id = ANY($1::text[]) "
        "AND (cancel_requests > 0 OR status = 'INTERRUPTED')",
        list(run_ids),
    )
    return {run_id: count for run_id, count in rows}  # noqa: C416 (Records)


async def claim_resume(conn: Any, p: str, channel: str, run_id: str, by: str, queued: bool) -> None:
    async with conn.transaction():
        winner = await conn.fetchrow(
            f"SELECT resumed_by FROM {p}runs WHERE run_id = $1 FOR UPDATE", run_id
        )
        if winner is None:
            raise RunNotFound(run_id)
        (winner,) = winner
        if winner is not None and winner != by:
            status = await conn.fetchval(f"SELECT status FROM {p}runs WHERE run_id = $1", winner)
            if status in ACTIVE_RESUMER:
                raise resume_refused(run_id, winner)
        now = time.time()
        await conn.execute(f"UPDATE {p}runs SET resumed_by = $1 WHERE run_id = $2", by, run_id)
        # The resuming run exists from now on, so a second claim sees it.
        await conn.execute(
            f"INSERT INTO {p}runs (run_id, pipeline, status, started, heartbeat, owner, "
            "resumed_from, scheduled_for, params, queued_at) "
            "SELECT $1, pipeline, $2, $3, $4, $5, run_id, scheduled_for, params, $6 "
            f"FROM {p}runs WHERE run_id = $7 ON CONFLICT (run_id) DO NOTHING",
            by,
            "QUEUED" if queued else "RUNNING",
            now,
            None if queued else now,
            None if queued else current_owner(),
            now if queued else None,
            run_id,
        )
        if queued:
            await conn.execute("SELECT pg_notify($1, $2)", channel, "queued")


async def sweep(conn: Any, p: str, dead_after: float) -> None:
    """Mark RUNNING runs INTERRUPTED whose heartbeat is stale or whose process is gone."""
    rows = await conn.fetch(
        f"SELECT run_id, owner, COALESCE(heartbeat, started) FROM {p}runs WHERE status = 'RUNNING'"
    )
    dead = dead_runs(rows, dead_after)
    if not dead:
        return
    first, *rest = interrupt_statements("postgres", p)
    for run_id, stale_before in dead:
        async with conn.transaction():
            # The heartbeat may have been renewed since it was read: check again.
            changed = await conn.fetchval(
                first + " AND ($2::float8 IS NULL OR COALESCE(r.heartbeat, r.started) < $2) "
                "RETURNING r.run_id",
                run_id,
                stale_before,
            )
            if changed is not None:
                for sql in rest:
                    await conn.execute(sql, run_id)
