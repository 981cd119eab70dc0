"""The Dremio work a sweep measures: one query through the client, with its phases."""

from __future__ import annotations

import itertools
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from ..dremio import DremioClient, Job
from ._results import SAMPLE_TABLE, Outcome
from ._sweep import Work

if TYPE_CHECKING:
    from ..testing import FakeDremio

__all__ = ["BEFORE_EXECUTION", "embedded_dremio", "flight_work", "rest_work"]

BEFORE_EXECUTION = frozenset(
    {
        "NOT_SUBMITTED",
        "STARTING",
        "PLANNING",
        "PENDING",
        "METADATA_RETRIEVAL",
        "QUEUED",
        "ENGINE_START",
    }
)
"""Dremio job states before execution: the ``queue`` phase lasts while the client sees these."""


class _FirstRun:
    """Remembers when a status past :data:`BEFORE_EXECUTION` was first seen."""

    __slots__ = ("at",)

    def __init__(self) -> None:
        self.at: float | None = None

    def __call__(self, job: Job) -> None:
        if self.at is None and job.state not in BEFORE_EXECUTION:
            self.at = time.monotonic()


def rest_work(client: DremioClient, statements: Sequence[str]) -> Work:
    """One query over REST per call, the statements taken in turn.

    Phases, as the client sees them (as fine as its status polls): ``submit`` (POST
    /sql), ``queue`` (until the job is seen past planning and queueing), ``execute``
    (until seen COMPLETED) and ``fetch`` (the result pages as Arrow).
    """
    turn = itertools.cycle(_checked(statements))

    async def query() -> Outcome:
        t0 = time.monotonic()
        job_id = await client.submit(next(turn))
        t1 = time.monotonic()
        running = _FirstRun()
        job = await client.wait(job_id, on_status=running)
        t2 = time.monotonic()
        table = await client.fetch_arrow(job)
        t3 = time.monotonic()
        started = t2 if running.at is None else running.at
        phases = {"submit": t1 - t0, "queue": started - t1, "execute": t2 - started}
        return Outcome(table.num_rows, table.nbytes, {**phases, "fetch": t3 - t2})

    return query


def flight_work(client: DremioClient, statements: Sequence[str]) -> Work:
    """One query over Arrow Flight per call, the statements taken in turn.

    Phases: ``execute`` (until the first record batch: planning, queueing and
    running the job) and ``fetch`` (the rest of the stream).
    """
    turn = itertools.cycle(_checked(statements))

    async def query() -> Outcome:
        t0 = time.monotonic()
        rows = nbytes = 0
        first: float | None = None
        async with client.stream(next(turn), via="flight") as batches:
            async for batch in batches:
                first = time.monotonic() if first is None else first
                rows += batch.num_rows
                nbytes += batch.nbytes
        t1 = time.monotonic()
        first = t1 if first is None else first
        return Outcome(rows, nbytes, {"execute": first - t0, "fetch": t1 - first})

    return query


def _checked(statements: Sequence[str]) -> list[str]:
    kept = [s for s in statements if s.strip()]
    if not kept:
        raise ValueError("give at least one SQL statement to benchmark")
    return kept


@asynccontextmanager
async def embedded_dremio(
    *, latency: float = 0.05, max_running_jobs: int | None = None, rows: int = 1_000
) -> AsyncIterator[FakeDremio]:
    """A FakeDremio (REST and Flight) serving ``bench.sample`` with ``rows`` rows.

    Each job runs ``latency`` seconds; at most ``max_running_jobs`` at once.

    :raises ImportError: the ``testing`` extra (DuckDB) is not installed.
    """
    from ..testing import FakeDremio, sample_table  # the testing extra, only when asked for

    async with FakeDremio(latency, max_running_jobs=max_running_jobs, flight=True) as fake:
        fake.add_table(SAMPLE_TABLE, sample_table(rows))
        yield fake
