"""A run's OpenTelemetry spans: the run, each task attempt, and mapped tasks summed up.

The run is one span named after the pipeline; each task attempt is a child span
(named ``task <name>``) carrying ``dremioframe.*`` attributes and OpenTelemetry's
CI/CD ones (``cicd.pipeline.*``, still in development), with ERROR status and the
exception when it fails. While an attempt runs its span is the current one, so
the Dremio queries and HTTP calls it makes are its children.

Mapped tasks: a fan-out of 100,000 instances must not make 100,000 spans. The
mapped task gets one span (child of the run) from its first instance's start to
its last instance's end; its first :data:`INSTANCE_SPANS` instance attempts get
spans of their own under it; the others only add to its counts
(``dremioframe.instances.*``), and a failed one adds an ``instance failed``
event (an SDK keeps 128 events per span by default).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import anyio

from .._masking import error_text
from .._telemetry import otel_context, reset_tracer, trace, tracer_for, using_tracer
from ._node import Node
from ._states import TaskState

__all__ = ["INSTANCE_SPANS", "RunTracing", "run_tracing"]

INSTANCE_SPANS = 100  # instance attempts of one mapped task that get their own span
_RESULT = {  # cicd.pipeline.task.run.result
    TaskState.SUCCESS: "success",
    TaskState.FAILED: "failure",
    TaskState.CANCELLED: "cancellation",
}


class _Mapped:
    """The span of one mapped task and what its instances add up to."""

    __slots__ = ("counts", "span", "spans")

    def __init__(self, span: Any) -> None:
        self.span = span
        self.spans = 0
        self.counts: dict[str, int] = {}


class RunTracing:
    """The spans of one run; ``attempt()`` wraps each task attempt."""

    def __init__(self, tracer: Any, pipeline: str, run_id: str, run_span: Any) -> None:
        self.tracer = tracer
        self.pipeline = pipeline
        self.run_id = run_id
        self.run_span = run_span
        self._mapped: dict[int, _Mapped] = {}

    def _attributes(self, node: Node) -> dict[str, Any]:
        return {
            "dremioframe.pipeline": self.pipeline,
            "dremioframe.run_id": self.run_id,
            "dremioframe.task": node.key,
            "dremioframe.attempt": node.attempts,
            "cicd.pipeline.name": self.pipeline,
            "cicd.pipeline.run.id": self.run_id,
            "cicd.pipeline.task.name": node.key,
            "cicd.pipeline.task.run.id": f"{self.run_id}/{node.key}/{node.attempts}",
        }

    def _mapped_of(self, parent: Node) -> _Mapped:
        found = self._mapped.get(id(parent))
        if found is None:
            span = self.tracer.start_span(
                f"task {parent.task.name}",
                context=trace.set_span_in_context(self.run_span),
                attributes={
                    "dremioframe.pipeline": self.pipeline,
                    "dremioframe.run_id": self.run_id,
                    "dremioframe.task": parent.key,
                    "dremioframe.instances": parent.width,
                    "cicd.pipeline.name": self.pipeline,
                    "cicd.pipeline.run.id": self.run_id,
                    "cicd.pipeline.task.name": parent.key,
                },
            )
            found = self._mapped[id(parent)] = _Mapped(span)
        return found

    @contextmanager
    def attempt(self, node: Node) -> Iterator[None]:
        """A span for the attempt of ``node`` now starting (or counts on its mapped task's)."""
        parent_span = self.run_span
        attributes = self._attributes(node)
        mapped = None
        if node.parent is not None:
            mapped = self._mapped_of(node.parent)
            parent_span = mapped.span
            attributes["dremioframe.map_index"] = int(node.key[len(node.parent.key) + 1 : -1])
            if mapped.spans >= INSTANCE_SPANS:
                with _current(mapped.span):
                    yield from _counted(mapped, node)
                return
            mapped.spans += 1
        span = self.tracer.start_span(
            f"task {node.task.name}",
            context=trace.set_span_in_context(parent_span),
            attributes=attributes,
        )
        state = TaskState.FAILED
        try:
            with _current(span):
                yield
            state = TaskState.SUCCESS
        except anyio.get_cancelled_exc_class():
            state = TaskState.CANCELLED
            raise
        except BaseException as exc:
            with contextlib.suppress(Exception):  # it prints the exception, which may raise
                span.record_exception(exc)
            message = f"{type(exc).__name__}: {error_text(exc)}"
            span.set_status(trace.Status(trace.StatusCode.ERROR, message))
            raise
        finally:
            _end(span, state, mapped)

    def traceparent(self) -> str:
        """The run span's W3C ``traceparent``."""
        ctx = self.run_span.get_span_context()
        return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}"

    def mapped_done(self, parent: Node, state: TaskState) -> None:
        """The mapped task ``parent`` settled: end its span with its instances' counts."""
        mapped = self._mapped.pop(id(parent), None)
        if mapped is None:
            return
        for name, count in mapped.counts.items():
            mapped.span.set_attribute(f"dremioframe.instances.{name}", count)
        if state is TaskState.FAILED:
            mapped.span.set_status(trace.Status(trace.StatusCode.ERROR, parent.reason))
        mapped.span.set_attribute("dremioframe.state", state.value)
        mapped.span.end()

    def finish(self, status: str) -> None:
        """End the run's span with the run's status."""
        self.run_span.set_attribute("dremioframe.status", status)
        if status != "SUCCESS":
            self.run_span.set_status(trace.Status(trace.StatusCode.ERROR, f"run {status}"))
        for mapped in self._mapped.values():  # a cancelled run leaves some unsettled
            mapped.span.end()
        self._mapped.clear()
        self.run_span.end()


def _counted(mapped: _Mapped, node: Node) -> Iterator[None]:
    """An instance attempt past the span budget: counted on its mapped task's span."""
    outcome = "failed"
    try:
        yield
        outcome = "succeeded"
    except anyio.get_cancelled_exc_class():
        outcome = "cancelled"
        raise
    except BaseException as exc:
        mapped.span.add_event(
            "instance failed",
            {
                "dremioframe.task": node.key,
                "dremioframe.attempt": node.attempts,
                "exception.type": type(exc).__name__,
                "exception.message": error_text(exc),
            },
        )
        raise
    finally:
        mapped.counts[outcome] = mapped.counts.get(outcome, 0) + 1


def _end(span: Any, state: TaskState, mapped: _Mapped | None) -> None:
    span.set_attribute("dremioframe.state", state.value)
    span.set_attribute("cicd.pipeline.task.run.result", _RESULT[state])
    if mapped is not None:
        name = {"SUCCESS": "succeeded", "FAILED": "failed"}.get(state.value, "cancelled")
        mapped.counts[name] = mapped.counts.get(name, 0) + 1
    span.end()


@contextmanager
def _current(span: Any) -> Iterator[None]:
    token = otel_context.attach(trace.set_span_in_context(span))
    try:
        yield
    finally:
        otel_context.detach(token)


@asynccontextmanager
async def run_tracing(
    provider: Any,
    pipeline: str,
    run_id: str,
    resumed_from: str | None,
    original: Callable[[str], Awaitable[str | None]] | None = None,
) -> AsyncIterator[RunTracing | None]:
    """The run's span, current for the block; None when tracing is off.

    ``original(run_id)`` (the store's ``get_traceparent``) gives the traceparent
    recorded for a run: for this run when it was queued, the caller's (the span
    becomes its child); for the run it resumes, that run's span (linked to).
    """
    tracer = tracer_for(provider)
    if tracer is None:
        yield None
        return
    links, parent = [], None
    if original is not None:
        # A queued run carries its caller's trace (recorded with it by ``enqueue``).
        queued = await original(run_id)
        if queued is not None and (caller := _span_context(queued)) is not None:
            parent = trace.set_span_in_context(trace.NonRecordingSpan(caller))
        found = await original(resumed_from) if resumed_from is not None else None
        if found is not None and (context := _span_context(found)) is not None:
            links.append(trace.Link(context, {"dremioframe.link": "resumed from"}))
    attributes = {
        "dremioframe.pipeline": pipeline,
        "dremioframe.run_id": run_id,
        "cicd.pipeline.name": pipeline,
        "cicd.pipeline.run.id": run_id,
    }
    if resumed_from is not None:
        attributes["dremioframe.resumed_from"] = resumed_from
    span = tracer.start_span(pipeline, context=parent, attributes=attributes, links=links)
    tracing = RunTracing(tracer, pipeline, run_id, span)
    token = using_tracer(tracer)
    try:
        with _current(span):
            yield tracing
    except BaseException:
        if span.is_recording():
            tracing.finish("CANCELLED")
        raise
    finally:
        reset_tracer(token)
        if span.is_recording():
            tracing.finish("SUCCESS")  # pragma: no cover - the run finishes it first


def _span_context(traceparent: str) -> Any:
    """The remote span a W3C ``traceparent`` names; None when it is malformed."""
    parts = traceparent.split("-")
    try:
        trace_id, span_id, flags = int(parts[1], 16), int(parts[2], 16), int(parts[3], 16)
    except (IndexError, ValueError):
        return None
    context = trace.SpanContext(
        trace_id, span_id, is_remote=True, trace_flags=trace.TraceFlags(flags)
    )
    return context if context.is_valid else None
