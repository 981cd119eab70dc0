"""The state of one run of a plan: its nodes, queues and counters, and its events.

``RunCore`` is the base of ``Run`` (``_runner``). Each class above it adds one
concern, in a module of its own, and calls only what the classes below it define
(``_maybe_spawn``, the runner pool's, is the one hook called from below):

* ``_settle.Settling``: final states and their propagation (trigger rules),
* ``_arguments.Arguments``: a task's arguments and context for this run,
* ``_attempts.Attempts``: running a node: its attempts, retries and fan-out,
* ``_runner.Run``: the runner pool, the run's start, its wind-down and its end.

One class split over modules rather than objects that call each other: the
hot paths keep plain method calls on one instance.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterator, Mapping
from itertools import islice
from types import MappingProxyType
from typing import Any

import anyio
from anyio.abc import TaskGroup

from ._backend import checkpoint_function, checkpoint_if_cancelled_function
from ._dispatch import Backlog, Emit
from ._events import TaskStateChanged
from ._executor import DEFAULT_THREADS, ExecutorSession
from ._gc import FREEZE_MIN, Freezing, freezing
from ._graph import KeepResults, Plan
from ._node import KeptResults, Node, Times
from ._observe import Observers
from ._pstate import RunState
from ._recorder import PriorRun, TaskRecord
from ._resources import NO_RESOURCES, RunResources
from ._rules import runs_on_cancel
from ._states import FINAL_STATES, TaskState
from ._task import Task

__all__ = ["SLICE", "TELL_SLICE", "RunCore"]

_S = TaskState
# Nodes made, or a fan-out's instances made (SLICE), or downstream tasks told of a
# settled task (TELL_SLICE), between two yields to the loop: a wide run must not hold the
# application's loop for ms on end. SLICE also bounds the ready queue a runner refills.
SLICE = 1024
# How long a task runs before a store records its start on its own (see
# ``RunCore.started_records``): below what an operator can tell apart on a
# refreshing page, above a short query or a sleep. A shorter task's start is
# written once, on its final row.
START_GRACE = 0.1
TELL_SLICE = 512


class RunCore:
    """The state of one execution of a :class:`Plan`, and the events it emits."""

    def __init__(
        self,
        plan: Plan,
        *,
        run_id: str,
        params: Mapping[str, Any],
        run_limiter: anyio.CapacityLimiter | None,
        pools: Mapping[str, anyio.CapacityLimiter],
        emit: Emit | None,
        prior: PriorRun | None,
        cleanup_grace: float = math.inf,
        stop_cleanup: anyio.Event | None = None,
        on_start: Callable[[], Awaitable[None]] | None = None,
        task_records: bool = False,
        executor: ExecutorSession | None = None,
        resources: RunResources | None = None,
        observe: Observers | None = None,
        state: RunState | None = None,
        keep_results: KeepResults = "all",
        backlog: Backlog | None = None,
    ) -> None:
        self.plan = plan
        self.observe = observe  # log capture, tracing and metrics of attempts; None: none
        self.state = state if state is not None else RunState(plan.pipeline, None)
        self.executor = executor  # None: plain functions in this run's threads
        # Which tasks a runner may run by ``_run_plain`` (None: none, in this run).
        self.plain = plan.plain if executor is None else None
        self.resources = resources if resources is not None else RunResources(NO_RESOURCES)
        self.run_id = run_id
        self.params = MappingProxyType(dict(params))
        self.emit = emit
        self.backlog = backlog  # events not yet taken by the pump: runners wait when full
        # Only a store reads this run's events: task changes go to it as plain tuples.
        self.task_records = task_records
        # First attempts begun and not recorded yet (``started_records``), in start
        # order, and how to have the pump take a batch when the oldest is due.
        self.starting: list[Node] = []
        self.wake_at: Callable[[float], None] | None = None
        # The log capture of the run's caller (``_logs``): put back in each runner.
        self.log_outside: Any = None
        self.prior = prior
        self.on_start = on_start
        self.ready: deque[Node] = deque()
        self.run_limiter = run_limiter
        # Each run has its own threads for plain functions, sized to its concurrency,
        # so runs nested in sync tasks cannot starve each other of threads.
        self.thread_limiter = anyio.CapacityLimiter(
            run_limiter.total_tokens if run_limiter is not None else DEFAULT_THREADS
        )
        self._limits = (run_limiter, pools)
        self._shared_limiters: dict[str | None, tuple[anyio.CapacityLimiter, ...]] = {}
        self.froze = False  # some of its nodes were made frozen (``_gc``)
        # Its claim on freezing for its running tasks, held to its end (``Run``), and
        # how many runners trigger the next freeze.
        self.running_claim: Freezing | None = None
        self.freeze_at = FREEZE_MIN
        self.retried = False  # some task was retried (its errors may hold cycles: ``_gc``)
        self.nodes: list[Node] = []  # made at the start of execute(), a slice at a time
        self.remaining = 0
        # Settled nodes whose downstream tasks are still to be told, by a runner, a
        # slice at a time: (node, its state, how many were told so far).
        self.spill: deque[tuple[Node, TaskState, int]] = deque()
        self.n_bad = 0  # nodes settled FAILED, UPSTREAM_FAILED or CANCELLED
        self.keep = plan.kept_results(keep_results)
        # The kept results, read from the nodes (no dict of its own).
        self.results = KeptResults(self.nodes, lambda: plan.key_index, self.keep)
        self.times = Times(len(plan.tasks))  # each plan task's first start and its end
        self.workers = 0
        self.busy = 0
        self.cancelling = False  # the caller cancelled: only cleanup tasks may start
        self.closing = False  # the run is over: settle what is left, no more propagation
        self.cleanup_grace = cleanup_grace
        self.stop_cleanup = stop_cleanup
        self._grace: anyio.CancelScope | None = None  # set while cleanup runs after a cancel
        self._tg: TaskGroup | None = None
        self.started = time.time()
        self.finished = self.started
        self._checkpoint = checkpoint_function()
        self._checkpoint_if_cancelled = checkpoint_if_cancelled_function()

    async def _make_nodes(self) -> None:
        """One node per plan task; a run of more than one slice yields before each.

        Shielded: a cancellation waits for the last slice (a few milliseconds),
        so the run always has all its nodes to settle. A large run makes them
        frozen, out of the cyclic collector's count (``_gc``).
        """
        planned = zip(self.plan.positions, self.plan.tasks, strict=True)
        claim = freezing(len(self.plan.tasks))
        # A run of several slices yields before each, the first included: the caller's
        # step before it (an application's previous run ending, its result dropped,
        # this run's set-up) and the first slice are then two trips around the loop.
        sliced = len(self.plan.tasks) > SLICE
        with anyio.CancelScope(shield=True):
            try:
                while True:
                    if sliced:
                        await self._checkpoint()
                    if claim is not None:
                        self.froze = True
                        with claim.slice():
                            made = self._node_slice(planned)
                    else:
                        made = self._node_slice(planned)
                    if made < SLICE:
                        break
            finally:
                if claim is not None:
                    claim.thaw()
        self.remaining = len(self.nodes)

    def _node_slice(self, planned: Iterator[tuple[int, Task]]) -> int:
        """Make the next ``SLICE`` nodes, with their limiters; return how many."""
        plan, (run_limiter, pools) = self.plan, self._limits
        keys, ups = plan.keys, plan.upstream
        chunk = [Node(i, keys[i], t, ups[i]) for i, t in islice(planned, SLICE)]
        if run_limiter is not None or pools:
            shared = self._shared_limiters  # one limiters tuple per pool, shared by its tasks
            for node in chunk:
                pool = node.task.options.pool
                lims = shared.get(pool)
                if lims is None:
                    own = (pools[pool],) if pool is not None else ()
                    lims = (*own, run_limiter) if run_limiter is not None else own
                    shared[pool] = lims
                if lims:  # none: the class default, without a per-node __dict__
                    node.limiters = lims
        self.nodes.extend(chunk)
        return len(chunk)

    # -- events --------------------------------------------------------------------

    def _state_event(self, node: Node) -> None:
        assert self.emit is not None
        state = node.state
        pstate = node.pstate  # its pipeline-state writes travel on its SUCCESS event
        writes = pstate.writes if pstate is not None and state is _S.SUCCESS else None
        if self.task_records:
            if state is _S.RUNNING and node.attempts <= 1:
                self._first_start(node)
                return
            self.emit(
                (
                    self.run_id,
                    node.key,
                    state,
                    time.time(),
                    node.attempts,
                    node.error,
                    node.result if state is _S.SUCCESS else None,
                    node.reason,
                    self.plan.upstream_keys[node.i] if node.parent is None else (),
                    writes,
                    self.plan.pipeline,
                    self.times.started(node),
                )
            )
            return
        self.emit(
            TaskStateChanged(
                self.run_id,
                self.plan.pipeline,
                node.key,
                node.state,
                time.time(),
                node.attempts,
                node.error,
                node.result if node.state is _S.SUCCESS else None,
                node.reason,
                self.plan.upstream_keys[node.i] if node.parent is None else (),
                writes,
            )
        )

    def _first_start(self, node: Node) -> None:
        """With task records: ``node``'s first start, recorded only once the task has
        run for START_GRACE, as the store takes a batch (``started_records``); a task
        that ends first has its start on its final record. The first start waiting
        asks the pump for a batch when it is due, in case nothing else is emitted.
        """
        if not self.starting and self.wake_at is not None:
            self.wake_at(anyio.current_time() + START_GRACE)
        self.starting.append(node)

    def started_records(self) -> list[TaskRecord]:
        """The starts of the tasks still running that began ``START_GRACE`` ago or more.

        Called as the store takes a batch, and put in front of it. Younger starts
        wait for a later batch, which the pump is asked to take when the oldest of
        them is due. Most tasks of a wide run end within the grace: their rows are
        written once, with their start, instead of twice. A start may so come after
        a later attempt's records (a retry within the grace): every record carries
        the task's first start, and the stores keep the first start and the highest
        attempt, so the row is the same in any order.
        """
        starting, times = self.starting, self.times
        due = time.time() - START_GRACE
        young = len(starting)
        running = _S.RUNNING
        old: list[Node] = []  # running for the grace or longer: their starts go now
        for i, node in enumerate(starting):
            state = node.state
            if state is running:
                if (times.started(node) or 0.0) > due:
                    young = i  # in start order: this one and those after it wait
                    break
                old.append(node)
            elif state not in FINAL_STATES:
                old.append(node)  # between attempts (its first start still unrecorded)
        if young < len(starting):
            if self.wake_at is not None:
                began = times.started(starting[young]) or due
                self.wake_at(anyio.current_time() + max(0.0, began - due))
            self.starting = starting[young:]
        else:
            self.starting = []
        return [self._start_record(node) for node in old]

    def _start_record(self, node: Node) -> TaskRecord:
        """The record of ``node``'s first start, as ``started_records`` hands it over."""
        started = self.times.started(node)
        return (
            self.run_id,
            node.key,
            _S.RUNNING,
            started or 0.0,
            min(node.attempts, 1),
            None,
            None,
            "",
            self.plan.upstream_keys[node.i] if node.parent is None else (),
            None,
            self.plan.pipeline,
            started,
        )

    # -- cancellation --------------------------------------------------------------

    def _why_cancelled(self) -> str:
        if self._grace is None or not self._grace.cancel_called:
            return "run cancelled"
        if self.stop_cleanup is not None and self.stop_cleanup.is_set():
            return "run cancelled; cleanup stopped by a second cancellation"
        grace = f"{self.cleanup_grace:g}s"
        return f"run cancelled; cleanup cut short when cleanup_grace ({grace}) ran out"

    def _is_cleanup(self, node: Node) -> bool:
        """Whether a cancelled run may still start ``node``: cleanup whose upstream ended."""
        return runs_on_cancel(node.task.options.trigger_rule) and not node.counts().pending
