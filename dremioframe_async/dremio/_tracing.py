"""A span per Dremio query, when the caller traces (see ``dremioframe_async._telemetry``).

The span (``dremio query``, kind CLIENT) is a child of the current span: a task
attempt's, when a traced run makes the query. It carries OpenTelemetry's
database attributes (``db.system.name="dremio"``, ``db.query.text``), the job id,
``dremio.via`` (flight or rest), the rows and bytes delivered, and events as the
query goes: ``submit`` (the job exists), ``running`` (first seen running),
``completed`` (REST: the job ended, fetching starts) and ``done`` (every row
arrived). A failure sets ERROR status, ``error.type`` and the exception.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from .._telemetry import otel_context, trace

__all__ = ["QuerySpan", "query_span"]


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
