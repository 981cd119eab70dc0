"""Running one plan once.

Readiness is bookkeeping, not waiting: each task instance keeps counts of how
its upstream tasks ended, and when an upstream task finishes the runner
updates its downstream tasks' counts and evaluates their trigger rules right
there. A task whose rule is met goes on a ready queue; a rule that can no
longer be met settles the task (and, in turn, its downstream tasks) at once.

A small, self-sizing pool of runner coroutines takes tasks off the ready queue
and runs them. A runner that takes a task when no other runner is free starts
more (up to the concurrency limit), so tasks that wait on I/O overlap, while
tasks that finish without waiting run back to back on the runners already
there, without one anyio task each. Runners leave when the queue is empty.

When the caller cancels the run, running tasks are cancelled and the run winds
down: readiness keeps propagating, but only ``all_done`` and ``always`` tasks
(cleanup) may still start, once every upstream task has ended; every other task
ends CANCELLED. The cleanup runs shielded from the cancellation, bounded by the
pipeline's ``cleanup_grace``; setting the run's ``stop_cleanup`` event (the
second Ctrl-C) cancels it. Then the cancellation is re-raised.
"""

from __future__ import annotations

import functools
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from itertools import islice
from types import MappingProxyType
from typing import Any

import anyio
import anyio.lowlevel
import tenacity
from anyio.abc import TaskGroup

from ._backend import cancel_is_stray, checkpoint_function, checkpoint_if_cancelled_function
from ._calls import AttemptSlots, call_async, call_sync, check_async
from ._dispatch import Emit
from ._errors import ExpandError, MapLengthError
from ._events import RunFinished, RunStarted, TaskRetrying, TaskStateChanged
from ._executor import DEFAULT_THREADS, ExecutorSession
from ._graph import KeepResults, Plan
from ._logs import shipped_logs
from ._mapping import MappedTask
from ._node import (
    AttemptLimit,
    ChildNode,
    Node,
    NodesByKey,
    Settlement,
    attempt_limit,
    elapsed,
    task_run,
    time_limit,
)
from ._observe import Observers
from ._placement import on_executor, remote_call
from ._pstate import RunState
from ._recorder import PriorRun
from ._resources import NO_RESOURCES, RunResources, with_resources
from ._result import LazyTaskRuns, RunContext, RunResult
from ._retry import make_retrying
from ._rules import (
    Verdict,
    decide,
    only_successes_matter,
    reevaluated_on_resume,
    runs_on_cancel,
)
from ._states import FINAL_STATES, RunStatus, TaskState
from ._task import Task, contains_task
from ._threads import SlotHandover, run_in_thread

__all__ = ["Run"]

_S = TaskState
_BAD = frozenset({_S.FAILED, _S.UPSTREAM_FAILED, _S.CANCELLED})  # a run with one is FAILED
YIELD_INTERVAL = 0.0005  # seconds a runner may go on without yielding to the loop
# Nodes made (SLICE), or downstream tasks told of a settled task (TELL_SLICE), between
# two yields to the loop: a wide run must not hold the application's loop for ms on end.
SLICE = 2048
TELL_SLICE = 512
_RUNNER_NAME = f"{__name__}.Run._runner"  # given, not derived by anyio per task


class Run:
    """The state and runners of one execution of a :class:`Plan`."""

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
        executor: ExecutorSession | None = None,
        resources: RunResources | None = None,
        observe: Observers | None = None,
        state: RunState | None = None,
        keep_results: KeepResults = "all",
    ) -> None:
        self.plan = plan
        self.observe = observe  # log capture, tracing and metrics of attempts; None: none
        self.state = state if state is not None else RunState(plan.pipeline, None)
        self.executor = executor  # None: plain functions in this run's threads
        self.resources = resources if resources is not None else RunResources(NO_RESOURCES)
        self.run_id = run_id
        self.params = MappingProxyType(dict(params))
        self.emit = emit
        self.prior = prior
        self.on_start = on_start
        self.results: dict[str, Any] = {}
        self.ready: deque[Node] = deque()
        self.run_limiter = run_limiter
        # Each run has its own threads for plain functions, sized to its concurrency,
        # so runs nested in sync tasks cannot starve each other of threads.
        self.thread_limiter = anyio.CapacityLimiter(
            run_limiter.total_tokens if run_limiter is not None else DEFAULT_THREADS
        )
        self._limits = (run_limiter, pools)
        self.nodes: list[Node] = []  # made at the start of execute(), a slice at a time
        self.remaining = 0
        # Settled nodes whose downstream tasks are still to be told, by a runner, a
        # slice at a time: (node, its state, how many were told so far).
        self.spill: deque[tuple[Node, TaskState, int]] = deque()
        self.n_bad = 0  # nodes settled FAILED, UPSTREAM_FAILED or CANCELLED
        self.keep = plan.kept_results(keep_results)
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
        """One node per plan task, yielding to the loop between slices.

        Shielded: a cancellation waits for the last slice (a few milliseconds),
        so the run always has all its nodes to settle.
        """
        plan, (run_limiter, pools) = self.plan, self._limits
        keys, ups, nodes = plan.keys, plan.upstream, self.nodes
        limited = run_limiter is not None or bool(pools)
        # One limiters tuple per pool, shared by its tasks.
        shared: dict[str | None, tuple[anyio.CapacityLimiter, ...]] = {}
        planned = iter(plan.index.items())  # the index's own ints: 28 bytes a node less
        with anyio.CancelScope(shield=True):
            while chunk := [Node(i, keys[i], t, ups[i]) for t, i in islice(planned, SLICE)]:
                if limited:
                    for node in chunk:
                        pool = node.task.options.pool
                        lims = shared.get(pool)
                        if lims is None:
                            own = (pools[pool],) if pool is not None else ()
                            lims = (*own, run_limiter) if run_limiter is not None else own
                            shared[pool] = lims
                        if lims:  # none: the class default, without a per-node __dict__
                            node.limiters = lims
                nodes.extend(chunk)
                if len(chunk) == SLICE:
                    await self._checkpoint()
        self.remaining = len(nodes)

    # -- events --------------------------------------------------------------------

    def _state_event(self, node: Node) -> None:
        assert self.emit is not None
        pstate = node.pstate  # its pipeline-state writes travel on its SUCCESS event
        writes = pstate.writes if pstate is not None and node.state is _S.SUCCESS else None
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

    def _before_sleep(self, node: Node) -> Callable[[tenacity.RetryCallState], None]:
        def hook(state: tenacity.RetryCallState) -> None:
            if self.emit is None or state.outcome is None or state.next_action is None:
                return
            error = state.outcome.exception()
            assert error is not None
            self.emit(
                TaskRetrying(
                    self.run_id,
                    self.plan.pipeline,
                    node.key,
                    state.attempt_number,
                    error,
                    state.next_action.sleep,
                    time.time(),
                )
            )

        return hook

    # -- settling tasks and propagating --------------------------------------------

    def _settle(
        self,
        node: Node,
        state: TaskState,
        *,
        result: Any = None,
        error: BaseException | None = None,
        reason: str = "",
    ) -> None:
        """Give ``node`` its final state and let everything downstream react."""
        self._drain([Settlement(node, state, result, error, reason)])

    def _drain(self, work: list[Settlement]) -> None:
        # A work list rather than recursion: long chains settle without deep stacks.
        nodes, keep = self.nodes, self.keep
        while work:
            n, st, res, err, why = work.pop()
            n.state, n.error, n.reason, n.finished = st, err, why, time.time()
            if st is _S.SUCCESS:
                n.result = res
                if keep is None or keep[n.i]:
                    self.results[n.key] = res
                if n.pstate is not None:
                    self.state.commit(n.pstate.writes)
            elif st in _BAD:
                self.n_bad += 1  # counted here: the run's status reads no node at its end
            self.remaining -= 1
            if self.emit is not None:
                self._state_event(n)
            if keep is not None and not keep[n.i] and n.parent is None:
                n.result = None  # on its event (for the store) but kept by nobody
            if self.closing:
                continue
            if n.parent is not None:
                self._child_done(n.parent, work)
                continue
            downs = self.plan.downstream[n.i]
            if len(downs) > TELL_SLICE and not self.cancelling:
                self.spill.append((n, st, TELL_SLICE))  # the rest, from a runner (_tell_more)
                downs = downs[:TELL_SLICE]
            for d in downs:
                self._upstream_done(nodes[d], st, work)

    def _upstream_done(self, d: Node, state: TaskState, work: list[Settlement]) -> None:
        d.count(state)
        if d.queued or d.state in FINAL_STATES:
            return
        rule = d.task.options.trigger_rule
        if self.cancelling:
            self._decide_cancelled(d, work)
            return
        if state is _S.SUCCESS and only_successes_matter(rule):
            # The common case, decided without a snapshot of the counts.
            if d.n_success == len(d.upstream):
                self._enqueue(d, work)
            return
        decision = decide(rule, d.counts())
        if decision.verdict is Verdict.RUN:
            self._enqueue(d, work)
        elif decision.verdict is not Verdict.WAIT:
            d.queued = True  # decided: another path to ``d`` must not settle it again
            work.append(Settlement(d, decision.verdict.state(), reason=decision.reason))

    def _decide_cancelled(self, d: Node, work: list[Settlement]) -> None:
        """In a cancelled run: cleanup runs once all upstream tasks ended, nothing else."""
        if d.counts().pending:
            return  # decided once its upstream tasks end, so cleanup keeps the graph's order
        if runs_on_cancel(d.task.options.trigger_rule):
            self._enqueue(d, work)
        else:
            d.queued = True
            work.append(Settlement(d, _S.CANCELLED, reason=self._why_cancelled()))

    def _child_done(self, parent: Node, work: list[Settlement]) -> None:
        parent.left -= 1
        if parent.left:
            return
        if any(c.state is _S.CANCELLED for c in parent.children):
            work.append(Settlement(parent, _S.CANCELLED, reason=self._why_cancelled()))
            return
        failed = [c for c in parent.children if c.state is not _S.SUCCESS]
        if failed:
            first = failed[0]
            why = f"{len(failed)} of {len(parent.children)} instances did not succeed"
            work.append(Settlement(parent, _S.FAILED, error=first.error, reason=why))
        else:
            work.append(Settlement(parent, _S.SUCCESS, [c.result for c in parent.children]))
        if self.observe is not None and self.observe.tracing is not None:
            self.observe.tracing.mapped_done(parent, work[-1].state)

    def _enqueue(self, node: Node, work: list[Settlement]) -> None:
        node.queued = True
        if (
            self.prior is not None
            and node.parent is None
            and node.key in self.prior.results
            and not reevaluated_on_resume(node.task.options.trigger_rule)
        ):
            why = self.prior.reuse_reason
            work.append(Settlement(node, _S.SUCCESS, self.prior.results[node.key], reason=why))
        else:
            self.ready.append(node)

    # -- runners -------------------------------------------------------------------

    def _maybe_spawn(self) -> None:
        """Start runners when ready tasks (or downstream tasks to tell) wait and every
        runner is busy."""
        if self.workers > self.busy or self._tg is None or self._paused():
            return
        if not self.ready and not self.spill:
            return
        want = min(len(self.ready) or 1, max(1, self.busy))
        if self.run_limiter is not None:
            want = min(want, int(self.run_limiter.available_tokens))
        if self.spill and not self.workers:
            want = max(want, 1)  # telling takes no slot
        for _ in range(want):
            self.workers += 1
            self._tg.start_soon(self._runner, name=_RUNNER_NAME)

    def _tell_more(self) -> None:
        """Tell the next slice of a settled task's downstream tasks that it ended."""
        n, st, told = self.spill[0]
        downs = self.plan.downstream[n.i]
        end = told + TELL_SLICE
        if end >= len(downs):
            self.spill.popleft()
        else:
            self.spill[0] = (n, st, end)
        work: list[Settlement] = []
        nodes = self.nodes
        for d in downs[told:end]:
            self._upstream_done(nodes[d], st, work)
        self._drain(work)
        self._maybe_spawn()

    def _tell_all(self) -> None:
        """Tell every spilled downstream task at once (the run is being cancelled)."""
        while self.spill:
            self._tell_more()

    def _paused(self) -> bool:
        # Once cancelled, nothing new starts until the wind-down picks the cleanup tasks.
        return self.cancelling and self._grace is None

    async def _runner(self) -> None:
        last_yield = time.perf_counter()
        try:
            while not self._paused():
                if self.spill and len(self.ready) < SLICE:
                    self._tell_more()  # keeps the ready queue fed, a slice at a time
                elif not self.ready:
                    break
                else:
                    node = self.ready.popleft()
                    self.busy += 1
                    self._maybe_spawn()
                    try:
                        await self._run_node(node)
                    finally:
                        self.busy -= 1
                # Yield between tasks (never while counted busy) at least every
                # YIELD_INTERVAL: tasks that never wait must not starve the loop or
                # delay cancellation, but a yield per task would double their cost.
                # A runner with nothing left to take returns to the loop anyway.
                if (
                    self.ready or self.spill
                ) and time.perf_counter() - last_yield >= YIELD_INTERVAL:
                    await self._checkpoint()
                    last_yield = time.perf_counter()
        finally:
            self.workers -= 1

    async def _run_node(self, node: Node) -> None:
        try:
            if isinstance(node.task, MappedTask) and node.parent is None:
                self._expand(node)
                return
            if node.task.wants_context and not self.state.loaded:
                await self.state.load()  # once per run, before its first context is made
            call = self._prepare_call(node)
            if call is None:
                return
            if node.task.options.resources and not self._remote(node):
                call = await self._open_resources(node, call)
            result: Any
            if node.task.options.retries:
                result = await make_retrying(
                    node.task.options,
                    self._retry_sleep,
                    self._before_sleep(node),
                    functools.partial(elapsed, node),
                )(self._attempt, node, call)
            else:
                result = await self._attempt(node, call)
        except anyio.get_cancelled_exc_class() as exc:
            if cancel_is_stray():
                # The task awaited something that had been cancelled on its own:
                # that is this task failing, not the run being cancelled.
                self._settle(node, _S.FAILED, error=exc)
                return
            # The run's own cancellation (a task's inner scopes catch theirs;
            # timeouts arrive as TimeoutError): wind down and re-raise.
            self.cancelling = True
            if node.attempts == 0 and self._is_cleanup(node):
                self.ready.append(node)  # never started: the wind-down may still run it
            else:
                self._settle(node, _S.CANCELLED, reason=self._why_cancelled())
            raise
        except Exception as exc:
            self._settle(node, _S.FAILED, error=exc)
        else:
            self._settle(node, _S.SUCCESS, result=result)

    async def _open_resources(self, node: Node, call: Callable[[], Any]) -> Callable[[], Any]:
        # Opening counts in the first attempt: its timeout bounds the wait, and
        # what the wait took is taken off that attempt's time limit.
        node.began = anyio.current_time()
        call = await with_resources(
            self.resources, node.task, call, node.key, time_limit(node, first=True)
        )
        node.opening = anyio.current_time() - node.began
        return call

    async def _retry_sleep(self, seconds: float) -> None:
        # Between attempts the task holds no concurrency or pool slot: let
        # another runner use them meanwhile.
        self._maybe_spawn()
        await anyio.sleep(seconds)

    async def _attempt(self, node: Node, call: Callable[[], Any]) -> Any:
        async with AttemptSlots(node.limiters) as slots:
            # No task body starts once the run is being cancelled, even when no
            # await above had to suspend.
            await self._checkpoint_if_cancelled()
            self._mark_running(node)
            options = node.task.options
            timeout = (
                None  # the common case, without a call
                if options.timeout is None and options.deadline is None
                else attempt_limit(node, first=node.attempts == 1)
            )
            scope = self.observe(node) if self.observe is not None else None
            if node.task.is_async and timeout is None and not self._remote(node):
                # The common case, without one more coroutine.
                if scope is None:
                    return check_async(node.key, await call())
                with scope:
                    return check_async(node.key, await call())
            if scope is None:
                return await self._invoke(node, call, slots, timeout)
            with scope:
                return await self._invoke(node, call, slots, timeout)

    async def _invoke(
        self, node: Node, call: Callable[[], Any], slots: AttemptSlots, limit: AttemptLimit | None
    ) -> Any:
        if node.task.is_async and not self._remote(node):
            return await call_async(node.key, call, limit)
        return await call_sync(
            node.key, call, limit, slots, functools.partial(self._call_sync, node)
        )

    async def _call_sync(
        self, node: Node, call: Callable[[], Any], handover: SlotHandover | None
    ) -> Any:
        if self.executor is None or not self._remote(node):
            return await run_in_thread(call, self.thread_limiter, handover)
        release = handover.thread_finished if handover is not None else None
        factories = self.resources.factories
        return await self.executor.run(
            remote_call(node.task, node.key, call, release, shipped_logs(), factories)
        )

    def _remote(self, node: Node) -> bool:
        """Whether the node's attempts run on the run's executor (see ``_placement``)."""
        if self.executor is None:
            return False
        task = node.task
        return on_executor(task.is_async, task.options, self.executor, self.resources.factories)

    def _mark_running(self, node: Node) -> None:
        node.attempts += 1
        if node.pstate is not None:
            node.pstate.begin_attempt()
        if node.started is None:
            node.started = time.time()
        if node.began is None and node.task.options.deadline is not None:
            node.began = anyio.current_time()  # only a deadline reads it (``elapsed``)
        node.state = _S.RUNNING
        if self.emit is not None:
            self._state_event(node)

    # -- arguments -----------------------------------------------------------------

    def _prepare_call(self, node: Node) -> Callable[[], Any] | None:
        """Bind the task's arguments for this run; None if an input is missing."""
        task = node.task
        args: Iterable[Any] = task.args
        kwargs: dict[str, Any] = task.kwargs
        if task.has_task_args:
            missing = self._missing_inputs(node)
            if missing is not None:
                state, why = missing
                self._settle(node, state, reason=why)
                return None
            args = [self._resolve(a) for a in task.args]
            kwargs = {k: self._resolve(v) for k, v in task.kwargs.items()}
        if node.parent is not None:
            kwargs = {**kwargs, **node.value}
        if task.wants_context:
            kwargs = {**kwargs, "context": self._context(node)}
        return functools.partial(task.action, *args, **kwargs)

    def _missing_inputs(self, node: Node) -> tuple[TaskState, str] | None:
        for up in node.task.data_dependencies():
            key = self.plan.keys[self.plan.index[up]]
            if key not in self.results:
                state = self.nodes[self.plan.index[up]].state
                verdict = _S.SKIPPED if state is _S.SKIPPED else _S.UPSTREAM_FAILED
                return verdict, f"input {key!r} has no result: it ended {state.value}"
        return None

    def _resolve(self, value: Any) -> Any:
        """``value`` with each Task in it replaced by its result; others kept as given."""
        if isinstance(value, Task):
            return self.results[self.plan.keys[self.plan.index[value]]]
        if not contains_task(value):
            return value
        if isinstance(value, dict):
            return {k: self._resolve(v) for k, v in value.items()}
        items = [self._resolve(v) for v in value]
        if isinstance(value, tuple) and hasattr(value, "_make"):  # a namedtuple
            return value._make(items)
        return type(value)(items)

    def _context(self, node: Node) -> RunContext:
        i = node.i
        node.pstate = self.state.view()
        return RunContext(
            self.run_id,
            self.params,
            self.results,
            lambda key: self._is_ancestor(i, key),
            lambda: (self.plan.keys[u] for u in self._walk_up(i)),
            self.plan.key_of,
            lambda: self._upstream_failures(i),
            self.resources.view(node.key, node.task.options.resources),
            node.pstate,
            node.key,
            node.task.name,
        )

    def _upstream_failures(self, i: int) -> dict[str, BaseException]:
        found: dict[str, BaseException] = {}
        for u in self._walk_up(i):
            node = self.nodes[u]
            if node.state is _S.FAILED and node.error is not None:
                found[node.key] = node.error
        return found

    def _walk_up(self, i: int) -> Iterator[int]:
        """Every task upstream of plan task ``i``, nearest first; nothing is kept."""
        seen: set[int] = set()
        frontier = deque(self.plan.upstream[i])
        while frontier:
            u = frontier.popleft()
            if u not in seen:
                seen.add(u)
                yield u
                frontier.extend(self.plan.upstream[u])

    def _is_ancestor(self, i: int, key: str) -> bool:
        # Searched per lookup rather than cached per task: caching every task's
        # ancestor set costs quadratic memory on long chains.
        j = self.plan.key_index.get(key)
        if j is None:
            return False
        return j in self.plan.upstream[i] or any(u == j for u in self._walk_up(i))

    # -- dynamic fan-out -----------------------------------------------------------

    def _expand(self, node: Node) -> None:
        task = node.task
        assert isinstance(task, MappedTask)
        missing = self._missing_inputs(node)
        if missing is not None:
            self._settle(node, missing[0], reason=missing[1])
            return
        try:
            values = task.instances(self._resolve, node.key)
        except (ExpandError, MapLengthError) as exc:
            self._settle(node, _S.FAILED, error=exc)
            return
        node.state, node.started = _S.RUNNING, time.time()
        if self.emit is not None:
            self._state_event(node)
        if not values:
            self._settle(node, _S.SUCCESS, result=[])
            return
        node.left = len(values)
        children: list[Node] = []
        for j, value in enumerate(values):
            child = ChildNode(node, j, value)
            child.queued = True
            children.append(child)
            self.ready.append(child)
        node.children = children
        self.nodes.extend(children)
        self.remaining += len(values)
        self._maybe_spawn()

    # -- the run -------------------------------------------------------------------

    async def execute(self) -> RunResult:
        """Run every task; return the result, or re-raise the caller's cancellation."""
        await self._make_nodes()
        if self.emit is not None:
            params = dict(self.params)
            resumed = self.prior.run_id if self.prior is not None else None
            self.emit(
                RunStarted(
                    self.run_id,
                    self.plan.pipeline,
                    self.started,
                    params,
                    self.plan.keys,
                    resumed,
                    self.observe.traceparent() if self.observe is not None else None,
                )
            )
        if self.on_start is not None:
            await self.on_start()  # the run's record is durable before any task starts
        try:
            try:
                async with anyio.create_task_group() as tg:
                    self._tg = tg
                    self._start_roots()
                    self._maybe_spawn()
                # A task may have swallowed the run's cancellation: it still stands.
                await anyio.lowlevel.checkpoint_if_cancelled()
            except anyio.get_cancelled_exc_class():
                await self._wind_down()
                raise
        except BaseException:
            self._cancel_rest()
            raise
        finally:
            self._tg = None
            await self.resources.aclose()  # shielded and bounded: the run's end waits for it
            self._finish()
        if self.remaining:  # pragma: no cover - would be an engine bug
            raise RuntimeError(f"run {self.run_id} ended with {self.remaining} unsettled tasks")
        return self.result()

    def _start_roots(self) -> None:
        work: list[Settlement] = []
        nodes = self.nodes
        for i in self.plan.starts:  # not every node: a wide run starts from a few
            node = nodes[i]
            if node.state is _S.PENDING and not node.queued:
                self._enqueue(node, work)
                self._drain(work)

    # -- graceful cancellation -----------------------------------------------------

    def _is_cleanup(self, node: Node) -> bool:
        return runs_on_cancel(node.task.options.trigger_rule) and not node.counts().pending

    async def _wind_down(self) -> None:
        """Run the cleanup tasks a cancelled run may still run: shielded, within the grace."""
        self.cancelling = True
        self._tell_all()  # before sorting: a cleanup task must see how its upstream tasks ended
        self._sort_ready()
        if not self.ready or self.cleanup_grace <= 0:
            return
        with anyio.CancelScope(shield=True) as scope:
            scope.deadline = anyio.current_time() + self.cleanup_grace
            self._grace = scope
            async with anyio.create_task_group() as watch:
                if self.stop_cleanup is not None:
                    watch.start_soon(self._stop_on_event, self.stop_cleanup, scope)
                async with anyio.create_task_group() as tg:
                    self._tg = tg
                    self._maybe_spawn()
                watch.cancel_scope.cancel()

    async def _stop_on_event(self, stop: anyio.Event, scope: anyio.CancelScope) -> None:
        await stop.wait()
        scope.cancel()

    def _why_cancelled(self) -> str:
        if self._grace is None or not self._grace.cancel_called:
            return "run cancelled"
        if self.stop_cleanup is not None and self.stop_cleanup.is_set():
            return "run cancelled; cleanup stopped by a second cancellation"
        grace = f"{self.cleanup_grace:g}s"
        return f"run cancelled; cleanup cut short when cleanup_grace ({grace}) ran out"

    def _sort_ready(self) -> None:
        """Keep the ready cleanup tasks; cancel the others (which may make more ready)."""
        waiting, self.ready = list(self.ready), deque()
        for node in waiting:
            if self._is_cleanup(node):
                self.ready.append(node)
            elif runs_on_cancel(node.task.options.trigger_rule) and node.parent is None:
                node.queued = False  # an ``always`` task with upstream tasks still to end
            else:
                self._settle(node, _S.CANCELLED, reason=self._why_cancelled())

    def _cancel_rest(self) -> None:
        self.cancelling = self.closing = True
        for node in self.nodes:
            if node.state not in FINAL_STATES:
                self._settle(node, _S.CANCELLED, reason=self._why_cancelled())

    def status(self) -> RunStatus:
        if self.cancelling:
            return RunStatus.CANCELLED
        failed = self.resources.close_errors or self.n_bad
        return RunStatus.FAILED if failed else RunStatus.SUCCESS

    def _finish(self) -> None:
        self.finished = time.time()
        if self.emit is not None:
            self.emit(
                RunFinished(
                    self.run_id, self.plan.pipeline, self.status(), self.finished, self.started
                )
            )

    def result(self) -> RunResult:
        plan = self.plan
        return RunResult(
            self.plan.pipeline,
            self.run_id,
            self.status(),
            LazyTaskRuns(NodesByKey(self.nodes, len(plan.tasks), lambda: plan.key_index), task_run),
            self.results,
            self.plan.key_of,
            self.started,
            self.finished,
            self.resources.close_errors,
        )
