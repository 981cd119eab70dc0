"""Per-run state of one task instance, kept apart from the declarations it runs."""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, NamedTuple

import anyio

from ._pstate import PipelineState
from ._result import TaskRun
from ._rules import UpstreamCounts
from ._states import TaskState
from ._task import Task

__all__ = ["ChildNode", "Node", "NodesByKey", "Settlement", "elapsed", "task_run", "time_limit"]

_S = TaskState


class Node:
    """Per-run state of one task instance (a plan task or one element of a fan-out).

    A large fan-out holds one per instance, so only what every task uses is a
    slot. What few tasks use (resources, deadlines, context, fan-outs, pools,
    failed upstream tasks) is a class-level default, overridden in the
    instance's ``__dict__`` by the tasks that need it (made on first write).
    """

    __slots__ = (
        "__dict__",
        "attempts",
        "finished",
        "i",
        "key",
        "n_success",
        "queued",
        "reason",
        "result",
        "started",
        "state",
        "task",
        "upstream",
    )

    error: BaseException | None = None  # why it failed (a failure's exception outweighs a dict)
    began: float | None = None  # anyio clock: when its resources or first attempt began
    opening: float = 0.0  # seconds its resources took to open, counted in its first attempt
    n_failed: int = 0
    n_skipped: int = 0
    n_upfailed: int = 0
    parent: Node | None = None
    children: Sequence[Node] = ()  # a fan-out's instances, once expanded
    left: int = 0
    width: int = 0  # a fan-out's instances, all of them (made a slice at a time)
    children_bad: int = 0  # a fan-out's instances that ended otherwise than SUCCESS
    children_cancelled: int = 0  # ... of them CANCELLED
    value: Any = None
    limiters: tuple[anyio.CapacityLimiter, ...] = ()
    pstate: PipelineState | None = None  # its context.state, if it takes context

    def __init__(self, i: int, key: str, task: Task, upstream: tuple[int, ...]) -> None:
        self.i = i
        self.key = key
        self.task = task
        self.upstream = upstream
        self.state = _S.PENDING
        self.queued = False
        self.result: Any = None
        self.reason = ""
        self.attempts = 0
        self.started: float | None = None
        self.finished: float | None = None
        self.n_success = 0

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


class ChildNode(Node):
    """One instance of a fan-out: its parent and its mapped arguments are slots too."""

    __slots__ = ("parent", "value")

    def __init__(self, parent: Node, j: int, value: Any) -> None:
        super().__init__(parent.i, f"{parent.key}[{j}]", parent.task, ())
        self.parent = parent
        self.value = value
        if parent.limiters:
            self.limiters = parent.limiters


_PLAN_POSITION = operator.attrgetter("i")  # an instance's is its fan-out's


class NodesByKey(Mapping[str, Node]):
    """A run's nodes by key, looked up through the plan's key index.

    A run of a million tasks returns without building a million-entry dict
    (which would also hold the loop for as long); the plan's index is built on
    the first lookup and shared by every run of the plan. Fan-out instances,
    appended after the plan's nodes, are indexed on first use, and win over a
    plan task of the same key.
    """

    __slots__ = ("_extra", "_index", "_nodes", "_planned")

    def __init__(
        self, nodes: list[Node], planned: int, index: Callable[[], Mapping[str, int]]
    ) -> None:
        self._nodes = nodes
        self._planned = planned
        self._index = index  # called on lookup: the index is made on first use
        self._extra: dict[str, Node] | None = None

    def _instances(self) -> dict[str, Node]:
        if self._extra is None:
            # Fan-outs make their instances a slice at a time, so two at once interleave
            # in the run's list: each fan-out's are put together, in their order.
            extra = sorted(self._nodes[self._planned :], key=_PLAN_POSITION)
            self._extra = {n.key: n for n in extra}
        return self._extra

    def __getitem__(self, key: str) -> Node:
        if len(self._nodes) > self._planned:
            found = self._instances().get(key)
            if found is not None:
                return found
        return self._nodes[self._index()[key]]

    def __iter__(self) -> Iterator[str]:
        extra = self._instances() if len(self._nodes) > self._planned else {}
        for n in self._nodes[: self._planned]:
            if n.key not in extra:
                yield n.key
        yield from extra

    def __len__(self) -> int:
        return sum(1 for _ in self) if len(self._nodes) > self._planned else self._planned


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
