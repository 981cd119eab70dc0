"""FakeDremio's value objects and mutable job/fault records."""

from __future__ import annotations

import datetime as dt
import heapq
import re
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import anyio
import pyarrow as pa

__all__ = ["CannedResponse", "FakeJob", "Fault", "Hold", "JobSlots", "RecordedRequest"]


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """One request FakeDremio received. ``body`` is the parsed JSON; passwords read ``***``.

    Headers are not recorded, so no token can leak through a recording.
    """

    method: str
    path: str
    query: Mapping[str, str]
    body: Any
    status: int = 0


@dataclass(frozen=True, slots=True)
class CannedResponse:
    """What a matching SQL statement returns: a table, or a FAILED job with ``error``."""

    sql: str
    match: Literal["exact", "substring"] = "exact"
    table: pa.Table | None = None
    error: str | None = None
    latency: float | None = None

    def matches(self, sql: str) -> bool:
        """Exact match ignores surrounding whitespace; substring match ignores case."""
        if self.match == "exact":
            return sql.strip() == self.sql.strip()
        return self.sql.lower() in sql.lower()


@dataclass(slots=True)
class Fault:
    """Answer the next ``remaining`` matching requests with ``status`` (or drop the connection).

    A request matches when its method is ``method`` (if given), its path contains
    ``path`` (if given) and matches ``pattern`` (if given). ``lose_reply``
    faults let the request be handled, then drop the connection before the
    answer; ``short_by`` faults cut that many rows off a results page.
    """

    remaining: int
    status: int
    path: str | None = None
    method: str | None = None
    retry_after: float | None = None
    disconnect: bool = False
    message: str = "injected fault"
    pattern: re.Pattern[str] | None = None
    lose_reply: bool = False
    short_by: int | None = None
    after: int = 0

    def take(self, method: str, path: str) -> bool:
        """Whether this fault applies to the request; counts it down if so.

        The first ``after`` matching requests pass untouched.
        """
        if self.remaining <= 0 or (self.method and self.method != method):
            return False
        if self.path and self.path not in path:
            return False
        if self.pattern is not None and not self.pattern.search(path):
            return False
        if self.after > 0:
            self.after -= 1
            return False
        self.remaining -= 1
        return True


@dataclass(eq=False, slots=True)
class Hold:
    """Requests that wait, unanswered, until :meth:`release` (or the server stops).

    ``arrived`` is set when the first held request has arrived; ``waiting`` counts
    the requests held right now. ``remaining`` is how many more requests to hold
    (None: every matching request until released), after letting ``after`` pass.
    """

    path: str | None = None
    method: str | None = None
    remaining: int | None = None
    after: int = 0
    arrived: anyio.Event = field(default_factory=anyio.Event)
    released: anyio.Event = field(default_factory=anyio.Event)
    waiting: int = 0

    def take(self, method: str, path: str) -> bool:
        """Whether to hold this request; counts it down if so."""
        if self.released.is_set() or self.remaining == 0:
            return False
        if (self.method and self.method != method) or (self.path and self.path not in path):
            return False
        if self.after > 0:
            self.after -= 1
            return False
        if self.remaining is not None:
            self.remaining -= 1
        return True

    async def wait(self) -> None:
        """Hold one request until released."""
        self.waiting += 1
        self.arrived.set()
        try:
            await self.released.wait()
        finally:
            self.waiting -= 1

    def release(self) -> None:
        """Let the held requests (and later matching ones) through."""
        self.released.set()


def _iso(epoch: float) -> str:
    stamp = dt.datetime.fromtimestamp(epoch, dt.UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z"


class JobSlots:
    """A server's execution slots: each job holds one for its latency, first come first served.

    With ``limit`` slots busy, a new job waits for the earliest to free. The wait is
    fixed when the job is submitted (a job cancelled while queued keeps its turn), so
    the model needs no background task. ``None`` means no limit. Thread-safe: REST
    jobs are scheduled on the event loop, Flight queries on gRPC threads.
    """

    def __init__(self, limit: int | None) -> None:
        if limit is not None and limit < 1:
            raise ValueError(f"max_running_jobs must be at least 1, not {limit}")
        self.limit = limit
        self._ends: list[float] = []  # when each busy slot frees (a min-heap)
        self._lock = threading.Lock()

    def queue_delay(self, latency: float, now: float) -> float:
        """Take a slot for a job submitted at ``now``; return how long it waits for it."""
        if self.limit is None:
            return 0.0
        with self._lock:
            start = now
            if len(self._ends) >= self.limit:
                start = max(now, heapq.heappop(self._ends))
            heapq.heappush(self._ends, start + latency)
            return start - now


@dataclass(slots=True)
class FakeJob:
    """A submitted job. ``state`` advances with time: QUEUED for ``queued`` seconds (waiting
    for a slot), then STARTING and RUNNING; the SQL runs once ``latency`` more has passed."""

    id: str
    sql: str
    context: tuple[str, ...]
    latency: float
    submitted: float = field(default_factory=time.monotonic)
    queued: float = 0.0
    started_at: float = field(default_factory=time.time)
    state: str = "NOT_SUBMITTED"
    error: str = ""
    cancellation_reason: str = ""
    ended_at: float | None = None
    result: pa.Table | None = None
    ready: pa.Table | None = None
    schema: list[dict[str, Any]] = field(default_factory=list)
    nested: bool = False
    extra_rows: int = 0

    @property
    def due(self) -> bool:
        """Whether the job's queueing and latency have passed, so it may run."""
        return time.monotonic() - self.submitted >= self.queued + self.latency

    def progress(self) -> None:
        """Advance QUEUED -> STARTING -> RUNNING as time passes (not past RUNNING)."""
        if self.state in ("COMPLETED", "FAILED", "CANCELED"):
            return
        elapsed = time.monotonic() - self.submitted
        if elapsed < self.queued:
            self.state = "QUEUED"
        else:
            self.state = "STARTING" if elapsed - self.queued < self.latency / 3 else "RUNNING"

    @property
    def reported_rows(self) -> int:
        """The row count this job reports (its result's, plus any injected ``extra_rows``)."""
        return (self.ready.num_rows if self.ready is not None else 0) + self.extra_rows

    def finish(self, state: str, *, error: str = "", reason: str = "") -> None:
        """Enter a final state."""
        self.state, self.error, self.cancellation_reason = state, error, reason
        self.ended_at = time.time()

    def status_json(self) -> dict[str, Any]:
        """The body of ``GET /job/{id}``."""
        rows = self.reported_rows if self.state == "COMPLETED" else 0
        body: dict[str, Any] = {
            "jobState": self.state,
            "rowCount": rows,
            "errorMessage": self.error,
            "startedAt": _iso(self.started_at),
            "queryType": "REST",
            "queueName": "SMALL",
            "cancellationReason": self.cancellation_reason,
        }
        if self.ended_at is not None:
            body["endedAt"] = _iso(self.ended_at)
        return body
