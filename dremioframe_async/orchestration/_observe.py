"""What watches each task attempt: log capture and tracing, joined for the runner."""

from __future__ import annotations

from contextlib import AbstractContextManager, ExitStack

from ._logs import RunLogs
from ._node import Node
from ._tracing import RunTracing

__all__ = ["Observers", "observers"]


class Observers:
    """The run's attempt observers; calling it gives the scope of one attempt, or None."""

    __slots__ = ("logs", "tracing")

    def __init__(self, logs: RunLogs | None, tracing: RunTracing | None) -> None:
        self.logs = logs
        self.tracing = tracing

    def __call__(self, node: Node) -> AbstractContextManager[object] | None:
        logs = self.logs if node.task.options.capture_logs else None
        tracing = self.tracing
        if tracing is None:
            return logs.attempt(node.key, node.attempts) if logs is not None else None
        if logs is None:
            return tracing.attempt(node)
        stack = ExitStack()
        stack.enter_context(tracing.attempt(node))  # the span first: log lines fall inside it
        stack.enter_context(logs.attempt(node.key, node.attempts))
        return stack


def observers(logs: RunLogs | None, tracing: RunTracing | None) -> Observers | None:
    """The run's observers; None when nothing watches attempts (the runner's fast path)."""
    return None if logs is None and tracing is None else Observers(logs, tracing)
