"""A span per Dremio query when the caller traces, and query metrics when they are on.

See ``dremioframe_async._telemetry`` and ``dremioframe_async._metrics``.

The span (``dremio query``, kind CLIENT) is a child of the current span: a task
attempt's, when a traced run makes the query. It carries OpenTelemetry's
database attributes (``db.system.name="dremio"``, ``db.query.text``), the job id,
``dremio.via`` (flight or rest), the rows and bytes delivered, and events as the
query goes: ``submit`` (the job exists), ``running`` (first seen running),
``completed`` (REST: the job ended, fetching starts) and ``done`` (every row
arrived). A failure sets ERROR status, ``error.type`` and the exception.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from .._metrics import REGISTRY
from .._telemetry import otel_context, trace

__all__ = ["QuerySpan", "measured_query", "query_span", "untraced"]


class QuerySpan:
    """What the client tells the span of one query as it goes."""

    __slots__ = ("_running", "span")

    def __init__(self, span: Any) -> None:
        self.span = span
        self._running = False

    def submitted(self, job_id: str | None) -> None:
        if job_id is not None:
            self.span.set_attribute("dremio.job_id", job_id)
        self.span.add_event("submit")

    def status(self, job: Any) -> None:
        """``wait(on_status=...)``: mark the first RUNNING status read."""
        if job.state == "RUNNING" and not self._running:
            self._running = True
            self.span.add_event("running")
        elif job.state == "COMPLETED":
            self.span.add_event("completed", {"dremio.rows": job.row_count})

    def done(self, rows: int, nbytes: int) -> None:
        self.span.set_attribute("db.response.returned_rows", rows)
        self.span.set_attribute("dremio.rows", rows)
        self.span.set_attribute("dremio.bytes", nbytes)
        self.span.add_event("done")


@contextmanager
def query_span(tracer: Any, sql: str, via: str) -> Iterator[QuerySpan]:
    """The span of one query, current while the block runs."""
    span = tracer.start_span(
        "dremio query",
        kind=trace.SpanKind.CLIENT,
        attributes={"db.system.name": "dremio", "db.query.text": sql, "dremio.via": via},
    )
    token = otel_context.attach(trace.set_span_in_context(span))
    try:
        yield QuerySpan(span)
    except BaseException as exc:
        span.set_attribute("error.type", type(exc).__qualname__)
        span.record_exception(exc)
        span.set_status(trace.Status(trace.StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
        raise
    finally:
        otel_context.detach(token)
        span.end()


class _NoSpan(QuerySpan):
    """The span calls of an untraced query, doing nothing (metrics only)."""

    def __init__(self) -> None:
        super().__init__(None)

    def submitted(self, job_id: str | None) -> None:
        return None

    def status(self, job: Any) -> None:
        return None

    def done(self, rows: int, nbytes: int) -> None:
        return None


@contextmanager
def untraced() -> Iterator[QuerySpan]:
    """No span: the query is measured but not traced."""
    yield _NoSpan()


@contextmanager
def measured_query(via: str) -> Iterator[Callable[[int, int], None]]:
    """Count and time one query into the process metrics (when they are on)."""
    if not REGISTRY.enabled:
        yield lambda rows, nbytes: None
        return
    started, outcome = time.perf_counter(), "error"

    def done(rows: int, nbytes: int) -> None:
        nonlocal outcome
        outcome = "ok"
        REGISTRY.rows.inc((via,), rows)
        REGISTRY.bytes.inc((via,), nbytes)

    try:
        yield done
    finally:
        REGISTRY.queries.inc((via, outcome))
        REGISTRY.query_seconds.observe((via, outcome), time.perf_counter() - started)
