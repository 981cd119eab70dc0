"""Per-run state of one task instance, kept apart from the declarations it runs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import anyio

from ._pstate import PipelineState
from ._result import TaskRun
from ._rules import UpstreamCounts
from ._states import TaskState
from ._task import Task

__all__ = ["Node", "Settlement", "elapsed", "task_run", "time_limit"]

_S = TaskState


class Node:
    """Per-run state of one task instance (a plan task or one element of a fan-out)."""

    __slots__ = (
        "attempts",
        "began",
        "children",
        "error",
        "finished",
        "i",
        "key",
        "left",
        "limiters",
        "n_failed",
        "n_skipped",
        "n_success",
        "n_upfailed",
        "opening",
        "parent",
        "pstate",
        "queued",
        "reason",
        "result",
        "started",
        "state",
        "task",
        "upstream",
        "value",
    )

    def __init__(self, i: int, key: str, task: Task, upstream: tuple[int, ...]) -> None:
        self.i = i
        self.key = key
        self.task = task
        self.upstream = upstream
        self.state = _S.PENDING
        self.queued = False
        self.result: Any = None
        self.error: BaseException | None = None
        self.reason = ""
        self.attempts = 0
        self.began: float | None = None  # anyio clock: when its resources or first attempt began
        self.opening = 0.0  # seconds its resources took to open, counted in its first attempt
        self.started: float | None = None
        self.finished: float | None = None
        self.n_success = self.n_failed = self.n_upfailed = self.n_skipped = 0
        self.parent: Node | None = None
        self.children: Sequence[Node] = ()  # a fan-out's instances, once expanded
        self.left = 0
        self.value: Any = None
        self.limiters: tuple[anyio.CapacityLimiter, ...] = ()
        self.pstate: PipelineState | None = None  # its context.state, if it takes context

    def counts(self) -> UpstreamCounts:
        return UpstreamCounts(
            len(self.upstream), self.n_success, self.n_failed, self.n_upfailed, self.n_skipped
        )

    def count(self, state: TaskState) -> None:
        if state is _S.SUCCESS:
            self.n_success += 1
        elif state is _S.SKIPPED:
            self.n_skipped += 1
        elif state is _S.UPSTREAM_FAILED:
            self.n_upfailed += 1
        else:
            self.n_failed += 1


class Settlement(NamedTuple):
    """A final state for one node, on the runner's work list until it is applied."""

    node: Node
    state: TaskState
    result: Any = None
    error: BaseException | None = None
    reason: str = ""


def task_run(n: Node) -> TaskRun:
    return TaskRun(
        n.key, n.task.name, n.state, n.attempts, n.started, n.finished, n.error, n.reason
    )


def elapsed(node: Node) -> float:
    """Seconds since the task began: its resources' opening, else its first attempt."""
    return 0.0 if node.began is None else anyio.current_time() - node.began


class AttemptLimit(NamedTuple):
    """An attempt's time limit in seconds, and the setting it comes from (for its error)."""

    seconds: float
    setting: str


def attempt_limit(node: Node, *, first: bool) -> AttemptLimit | None:
    """The time limit of the task's next attempt (or of opening its resources).

    ``timeout`` per attempt, less the resources' opening for the first one, and
    never past the task's ``deadline``.
    """
    options = node.task.options
    limit = options.timeout
    if limit is not None and first:
        limit = max(0.0, limit - node.opening)
    if options.deadline is not None:
        left = max(0.0, options.deadline - elapsed(node))
        if limit is None or left < limit:
            return AttemptLimit(left, f"the task's deadline={float(options.deadline)} s")
    if limit is None:
        return None
    return AttemptLimit(limit, f"timeout={float(options.timeout or 0.0)} s")


def time_limit(node: Node, *, first: bool) -> float | None:
    """:func:`attempt_limit`'s seconds."""
    limit = attempt_limit(node, first=first)
    return None if limit is None else limit.seconds
