"""Per-run state of one task instance, kept apart from the declarations it runs."""

from __future__ import annotations

import math
import operator
from array import array
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, NamedTuple

import anyio

from ._pstate import PipelineState
from ._result import TaskRun
from ._rules import UpstreamCounts
from ._states import TaskState
from ._task import Task

__all__ = [
    "ChildNode",
    "KeptResults",
    "Node",
    "NodesByKey",
    "Settlement",
    "Times",
    "elapsed",
    "time_limit",
]

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
        "i",
        "key",
        "n_success",
        "queued",
        "reason",
        "result",
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
    """One instance of a fan-out: its parent, its mapped arguments and its times are slots too.

    (A plan task's times are in its run's ``Times``, by plan position, which an
    instance shares with its fan-out.)
    """

    __slots__ = ("finished", "parent", "started", "value")

    def __init__(self, parent: Node, j: int, value: Any) -> None:
        super().__init__(parent.i, f"{parent.key}[{j}]", parent.task, ())
        self.parent = parent
        self.value = value
        self.started: float | None = None
        self.finished: float | None = None
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
        found = self.find(key)
        if found is None:
            raise KeyError(key)
        return found

    @property
    def planned_only(self) -> bool:
        """Whether every node is a plan task's (no fan-out made instances)."""
        return len(self._nodes) == self._planned

    def find(self, key: str) -> Node | None:
        """The node of ``key``, or None: ``get`` without ``Mapping``'s exception round trip."""
        if len(self._nodes) > self._planned:
            found = self._instances().get(key)
            if found is not None:
                return found
        i = self._index().get(key)
        return None if i is None else self._nodes[i]

    def __iter__(self) -> Iterator[str]:
        return (n.key for n in self.ordered())

    def ordered(self) -> Iterator[Node]:
        """The nodes, one per key, in this mapping's order (no lookup by key)."""
        extra = self._instances() if len(self._nodes) > self._planned else {}
        for n in self._nodes[: self._planned]:
            if n.key not in extra:
                yield n
        yield from extra.values()

    def __len__(self) -> int:
        return sum(1 for _ in self) if len(self._nodes) > self._planned else self._planned


class KeptResults(Mapping[str, Any]):
    """The results a run keeps, by key, read from its nodes.

    A result is on its node from the node's settlement, so the run copies none
    into a dict of its own (a million-task run would hold a million entries).
    A key maps to its node's result when the node ended SUCCESS and the run
    keeps that task's results (``keep``, by plan position: None keeps all).

    While the run goes on, keys are plan keys (what tasks' arguments and
    contexts read); ``final`` then makes every key of the ended run readable,
    its fan-out instances' too, in the order of ``RunResult.tasks``. A fan-out
    instance's key that a plan task also has (a task named ``"m[0]"`` beside a
    fan-out ``m``) reads the instance's result, as ``RunResult.tasks`` reads the
    instance, or the plan task's when the instance has none.
    """

    __slots__ = ("_by_key", "_index", "_keep", "_len", "_nodes")

    def __init__(
        self, nodes: list[Node], index: Callable[[], Mapping[str, int]], keep: bytearray | None
    ) -> None:
        self._nodes = nodes
        self._index = index  # plan key -> position, made on first use
        self._keep = keep
        self._by_key: NodesByKey | None = None
        self._len: int | None = None

    def final(self, by_key: NodesByKey) -> None:
        """The run has ended: look keys up among all of ``by_key``'s nodes."""
        self._by_key = by_key

    def _node(self, key: object) -> Node | None:
        if not isinstance(key, str):
            return None
        if self._by_key is not None and not self._by_key.planned_only:
            node = self._by_key.find(key)
            if node is not None and node.parent is not None and not self._kept(node):
                # An instance without a result: a plan task of its key may have one.
                i = self._index().get(key)
                if i is not None and self._kept(self._nodes[i]):
                    return self._nodes[i]
            return node
        # Plan keys alone (the run goes on, or it made no fan-out instances): one
        # index lookup (``dict(result)`` reads every key).
        i = self._index().get(key)
        return None if i is None or i >= len(self._nodes) else self._nodes[i]

    def _kept(self, node: Node) -> bool:
        keep = self._keep
        return node.state is _S.SUCCESS and (keep is None or bool(keep[node.i]))

    def __getitem__(self, key: str) -> Any:
        node = self._node(key)
        if node is None or not self._kept(node):
            raise KeyError(key)
        return node.result

    def __contains__(self, key: object) -> bool:
        node = self._node(key)
        return node is not None and self._kept(node)

    def __iter__(self) -> Iterator[str]:
        if self._by_key is None:  # the run goes on: its plan tasks (nothing reads this)
            nodes: Iterable[Node] = (n for n in self._nodes if n.parent is None)
            return (n.key for n in nodes if self._kept(n))
        return (
            n.key
            for n in self._by_key.ordered()
            if self._kept(n) or (n.parent is not None and n.key in self)  # see ``_node``
        )

    def __len__(self) -> int:
        if self._by_key is None:
            return sum(1 for _ in self)
        if self._len is None:  # the run has ended: its count no longer changes
            self._len = sum(1 for _ in self)
        return self._len


class Settlement(NamedTuple):
    """A final state for one node, on the runner's work list until it is applied."""

    node: Node
    state: TaskState
    result: Any = None
    error: BaseException | None = None
    reason: str = ""


class Times:
    """When each task of a run first started and when it ended (``time.time()``).

    A plan task's two times are in two arrays of doubles, by plan position (NaN
    until set): 16 bytes a task, where two float objects in two slots of its
    node took 64. A fan-out's instances share their fan-out's position, so
    theirs stay on their nodes (``ChildNode``).
    """

    __slots__ = ("ends", "starts")

    def __init__(self, tasks: int) -> None:
        unset = array("d", [math.nan])
        self.starts = unset * tasks
        self.ends = unset * tasks

    def started(self, node: Node) -> float | None:
        """When ``node`` first started; None if it never did."""
        if isinstance(node, ChildNode):
            return node.started
        t = self.starts[node.i]
        return None if t != t else t  # NaN: not yet

    def finished(self, node: Node) -> float | None:
        """When ``node`` ended; None while it has not."""
        if isinstance(node, ChildNode):
            return node.finished
        t = self.ends[node.i]
        return None if t != t else t

    def start(self, node: Node, now: float) -> None:
        """``node`` starts now: kept if it is its first start."""
        if isinstance(node, ChildNode):
            if node.started is None:
                node.started = now
        else:
            starts, i = self.starts, node.i
            if starts[i] != starts[i]:
                starts[i] = now

    def task_run(self, n: Node) -> TaskRun:
        return TaskRun(
            n.key,
            n.task.name,
            n.state,
            n.attempts,
            self.started(n),
            self.finished(n),
            n.error,
            n.reason,
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
