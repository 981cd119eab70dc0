"""Frozen lifecycle events: the one stream the store, the CLI and user callbacks read.

A run emits, in order: one :class:`RunStarted`; for each task instance any number
of :class:`TaskStateChanged` (``RUNNING`` at the start of every attempt, then one
final state) with a :class:`TaskRetrying` between a failed attempt and the next;
and one :class:`RunFinished`. When the run captures logs, :class:`TaskLogged`
events carry each attempt's log lines, before that attempt's final state.
Events are delivered to listeners in emission order by one dispatcher per run,
off the tasks' own path.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ._states import RunStatus, TaskState

__all__ = [
    "Event",
    "LogLine",
    "RunFinished",
    "RunStarted",
    "TaskLogged",
    "TaskRetrying",
    "TaskStateChanged",
]


@dataclass(frozen=True, slots=True)
class RunStarted:
    """A run began. ``params`` is the context given to ``run(context=...)``.

    ``traceparent`` is the W3C trace context of the run's span when the run is
    traced (extra ``otel``), so that a resumed run's span can link to it.
    """

    run_id: str
    pipeline: str
    time: float
    params: Mapping[str, Any]
    task_keys: tuple[str, ...]
    resumed_from: str | None = None
    traceparent: str | None = None


@dataclass(frozen=True, slots=True)
class TaskStateChanged:
    """A task instance entered ``state``.

    ``attempt`` is 1-based and counts attempts so far (0 for a task that never
    ran). ``error`` is set for FAILED (and for CANCELLED when a timeout or
    cancellation interrupted an attempt); ``result`` for SUCCESS. ``reason``
    says why a task was not run (trigger rule) or came from a resumed run.
    ``upstream`` lists the keys of the task's upstream tasks. ``state_writes``
    (SUCCESS only) holds the pipeline-state writes the store commits with this
    record: key -> JSON text, or None for a deletion.
    """

    run_id: str
    pipeline: str
    key: str
    state: TaskState
    time: float
    attempt: int = 0
    error: BaseException | None = None
    result: Any = None
    reason: str = ""
    upstream: tuple[str, ...] = field(default=())
    state_writes: Mapping[str, str | None] | None = None


@dataclass(frozen=True, slots=True)
class TaskRetrying:
    """Attempt ``attempt`` of ``key`` failed with ``error``; the next starts after ``delay`` s."""

    run_id: str
    pipeline: str
    key: str
    attempt: int
    error: BaseException
    delay: float
    time: float


@dataclass(frozen=True, slots=True)
class RunFinished:
    """A run ended with ``status``: SUCCESS, FAILED or CANCELLED."""

    run_id: str
    pipeline: str
    status: RunStatus
    time: float
    started: float


@dataclass(frozen=True, slots=True)
class LogLine:
    """One captured log line: its number in the attempt (from 1), time, level, logger, text."""

    seq: int
    time: float
    level: str
    logger: str
    message: str


@dataclass(frozen=True, slots=True)
class TaskLogged:
    """New log lines of attempt ``attempt`` of ``key``.

    ``lines`` are the lines not sent before, oldest first. ``first_seq`` is the
    number of the oldest line the attempt still keeps: lines before it were
    dropped to stay within the capture's bounds (a reader shows a marker).
    """

    run_id: str
    pipeline: str
    key: str
    attempt: int
    lines: tuple[LogLine, ...]
    first_seq: int


Event = RunStarted | TaskStateChanged | TaskRetrying | RunFinished | TaskLogged
