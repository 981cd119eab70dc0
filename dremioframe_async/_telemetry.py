"""OpenTelemetry, when installed (extra ``otel``): the one place that imports it.

Both the engine and the Dremio client trace through here, so neither imports
the other. Tracing is off unless a tracer provider is given to the run or one
is configured globally; off, every hook is a ``None`` check. A run puts its
tracer in a context variable, so the Dremio client and ``HttpTask`` used by its
tasks trace with the run's provider and under the task attempt's span without
being told.
"""

from __future__ import annotations

import contextvars
import importlib.metadata
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

otel_context: Any
trace: Any
try:
    from opentelemetry import context as otel_context
    from opentelemetry import trace
except ImportError:  # the extra is not installed: tracing stays off
    trace = None
    otel_context = None

__all__ = [
    "continuing",
    "current_tracer",
    "otel_context",
    "reset_tracer",
    "trace",
    "traceparent",
    "tracer_for",
    "using_tracer",
]

_TRACER: contextvars.ContextVar[Any] = contextvars.ContextVar(
    "dremioframe_async_tracer", default=None
)
_NAME = "dremioframe_async"


def tracer_for(provider: Any = None) -> Any:
    """A tracer from ``provider``, else from the global provider when one is configured.

    None when OpenTelemetry is not installed or nothing is configured: the
    global default is a proxy that would make spans nobody records.
    """
    if trace is None:
        return None
    if provider is None:
        provider = trace.get_tracer_provider()
        if isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider):
            return None
    return provider.get_tracer(_NAME, _version())


def _version() -> str:
    # From the installed metadata: importing the package's front would import everything.
    try:
        return importlib.metadata.version("dremioframe_async")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - a source tree
        return "unknown"


def using_tracer(tracer: Any) -> contextvars.Token[Any]:
    """Make ``tracer`` the current one (for the run's tasks); reset with the token."""
    return _TRACER.set(tracer)


def reset_tracer(token: contextvars.Token[Any]) -> None:
    """Undo :func:`using_tracer`."""
    _TRACER.reset(token)


def current_tracer() -> Any:
    """The run's tracer, else the global one when configured, else None (tracing off)."""
    tracer = _TRACER.get()
    return tracer if tracer is not None else tracer_for(None)


@contextmanager
def continuing(header: str | None) -> Iterator[None]:
    """Make the remote span a W3C ``traceparent`` names current for the block.

    For a caller that hands its trace over (an HTTP header, the ``TRACEPARENT``
    variable): a run queued inside the block carries it. Nothing happens without
    OpenTelemetry, without a header, or for a malformed one.
    """
    if trace is None or not header:
        yield
        return
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    context = TraceContextTextMapPropagator().extract({"traceparent": header})
    if not trace.get_current_span(context).get_span_context().is_valid:
        yield
        return
    token = otel_context.attach(context)
    try:
        yield
    finally:
        otel_context.detach(token)


def traceparent() -> str | None:
    """The W3C ``traceparent`` of the current span, or None without a recording one."""
    if trace is None:
        return None
    span = trace.get_current_span()
    ctx = span.get_span_context()
    if not ctx.is_valid:
        return None
    return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}"
