"""What watches each task attempt: log capture, tracing and metrics, joined for the runner."""

from __future__ import annotations

from contextlib import AbstractContextManager, ExitStack

from ._logs import RunLogs, Uncaptured
from ._metering import RunMetrics
from ._node import Node
from ._tracing import RunTracing

__all__ = ["Observers", "observers"]


class Observers:
    """The run's attempt observers; calling it gives the scope of one attempt, or None."""

    __slots__ = ("capture", "logs", "metrics", "tracing")

    def __init__(
        self, logs: RunLogs | None, tracing: RunTracing | None, metrics: RunMetrics | None
    ) -> None:
        self.logs = logs
        self.tracing = tracing
        self.metrics = metrics
        # The common case, which the runner opens inline: log capture and nothing else.
        self.capture = logs if tracing is None and metrics is None else None

    def traceparent(self) -> str | None:
        """The run span's W3C trace context, when the run is traced."""
        return self.tracing.traceparent() if self.tracing is not None else None

    def __call__(self, node: Node) -> AbstractContextManager[object] | None:
        logs = self.logs if node.task.options.capture_logs else None
        # A task that opts out is captured nowhere (not by a task this run is nested in).
        opted_out = logs is None and self.logs is not None
        if self.tracing is None and self.metrics is None:  # the common case: capture only
            if logs is not None:
                return logs.attempt(node.key, node.attempts)
            return Uncaptured() if opted_out else None
        scopes: list[AbstractContextManager[object]] = []
        # Outermost first: the span holds the attempt's time and log lines fall inside it.
        if self.tracing is not None:
            scopes.append(self.tracing.attempt(node))
        if self.metrics is not None:
            scopes.append(self.metrics.attempt(node))
        if logs is not None:
            scopes.append(logs.attempt(node.key, node.attempts))
        elif opted_out:
            scopes.append(Uncaptured())
        if len(scopes) == 1:
            return scopes[0]
        stack = ExitStack()
        for scope in scopes:
            stack.enter_context(scope)
        return stack


def observers(
    logs: RunLogs | None, tracing: RunTracing | None, metrics: RunMetrics | None
) -> Observers | None:
    """The run's observers; None when nothing watches attempts (the runner's fast path)."""
    if logs is None and tracing is None and metrics is None:
        return None
    return Observers(logs, tracing, metrics)
