"""Running one plan once: the runner pool, the run's start, its wind-down and its end.

A small, self-sizing pool of runner coroutines takes tasks off the ready queue
and runs them. A runner that takes a task when no other runner is free starts
more (up to the concurrency limit), so tasks that wait on I/O overlap, while
tasks that finish without waiting run back to back on the runners already
there, without one anyio task each. Runners leave when the queue is empty.
How a task becomes ready is in ``_settle``; how a runner runs it, in ``_attempts``.

When the caller cancels the run, running tasks are cancelled and the run winds
down: readiness keeps propagating, but only ``all_done`` and ``always`` tasks
(cleanup) may still start, once every upstream task has ended; every other task
ends CANCELLED. The cleanup runs shielded from the cancellation, bounded by the
pipeline's ``cleanup_grace``; setting the run's ``stop_cleanup`` event (the
second Ctrl-C) cancels it. Then the cancellation is re-raised.
"""

from __future__ import annotations

import time
from collections import deque

import anyio
import anyio.lowlevel

from ._attempts import Attempts
from ._backend import cancel_called_function
from ._events import RunFinished, RunStarted
from ._gc import FREEZE_MIN, freezing, may_hold_cycles
from ._logs import CURRENT_LOG
from ._node import NodesByKey, Settlement
from ._result import LazyTaskRuns, RunResult
from ._run_core import SLICE
from ._states import FINAL_STATES, RunStatus, TaskState

__all__ = ["SLICE", "Run"]

_S = TaskState
YIELD_INTERVAL = 0.0005  # seconds a runner may go on without yielding to the loop
# Runners started at once, at most: each runs its first task in the same trip around
# the loop, so more at once only made that trip longer (256 runners of a 1,000-task
# sleep fan-out in one trip of 26 ms on a slow host, with every other coroutine of
# the loop, a store's writes or the host's requests, waiting behind it).
SPAWN_BURST = 64
_RUNNER_NAME = f"{__name__}.Run._runner"  # given, not derived by anyio per task


class Run(Attempts):
    """The state and runners of one execution of a :class:`Plan`."""

    # -- runners -------------------------------------------------------------------

    def _maybe_spawn(self) -> None:
        """Start runners when ready tasks (or downstream tasks to tell) wait and every
        runner is busy."""
        if self.workers > self.busy or self._tg is None or self._paused():
            return
        if not self.ready and not self.spill:
            return
        want = min(len(self.ready) or 1, max(1, self.busy), SPAWN_BURST)
        if self.run_limiter is not None:
            want = min(want, int(self.run_limiter.available_tokens))
        if self.spill and not self.workers:
            want = max(want, 1)  # telling takes no slot
        for _ in range(want):
            self.workers += 1
            self._tg.start_soon(self._runner, name=_RUNNER_NAME)
        if self.workers >= self.freeze_at:
            self._freeze_running()

    def _freeze_running(self) -> None:
        """Freeze what is alive, as the run's runners reach a new high by ``FREEZE_MIN``.

        A running task's coroutines, frames, scopes and timers live until it ends:
        100,000 sleeping tasks made 3.8 million objects, which counted as survivors
        towards full collections that scanned them all (11 in a 5 s run, up to 1.1 s
        each). Frozen, they sit outside the collector; the run holds its claim until
        it ends (``_gc``), then thaws them. Only new highs freeze, so what a run
        freezes is bounded by its largest concurrency: garbage frozen with the live
        tasks (a cycle a task dropped) waits for the thaw, and a run that freezes in
        waves would pile it up. A run turned away (another holds the claim) tries
        again as it spawns more runners.
        """
        claim = self.running_claim
        if claim is None:
            claim = self.running_claim = freezing(FREEZE_MIN)
            if claim is None:
                return
            self.froze = True
        self.freeze_at = self.workers + FREEZE_MIN
        claim.freeze()

    def _paused(self) -> bool:
        # Once cancelled, nothing new starts until the wind-down picks the cleanup tasks.
        return self.cancelling and self._grace is None

    async def _runner(self) -> None:
        last_yield = time.perf_counter()
        plain = self.plain
        cancel_called = cancel_called_function() if plain is not None else None
        # A plain task leaves its capture set (see ``_logs``): the runner puts back the
        # run's own before anything else, whatever the runner that spawned it ran.
        outside = self.log_outside
        if CURRENT_LOG.get() is not outside:
            CURRENT_LOG.set(outside)
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
                        if plain is not None and plain[node.i]:
                            await self._run_plain(node, cancel_called)
                        else:
                            if CURRENT_LOG.get() is not outside:
                                CURRENT_LOG.set(outside)  # after a plain task
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
                    if self.backlog is not None and self.backlog.full() and not self.cancelling:
                        # The store catches up (``BACKLOG_LIMIT``). Not in a cancelled
                        # run's wind-down: its cleanup must not wait on a stuck store.
                        await self.backlog.room()
                    else:
                        await self._checkpoint()
                    last_yield = time.perf_counter()
        finally:
            self.workers -= 1

    # -- the run -------------------------------------------------------------------

    async def execute(self) -> RunResult:
        """Run every task; return the result, or re-raise the caller's cancellation."""
        self.log_outside = CURRENT_LOG.get()  # the caller's: a task's, when nested
        await self._make_nodes()
        try:
            return await self._execute()
        finally:
            if self.running_claim is not None:
                # Garbage frozen with its tasks (cycles they dropped) is looked at now.
                self.running_claim.thaw(collect=True)
                self.running_claim = None
            if self.froze and (self.n_bad or self.retried or self.cancelling):
                may_hold_cycles()  # its nodes may be cyclic garbage: see ``_gc``

    async def _execute(self) -> RunResult:
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

    def _sort_ready(self) -> None:
        """Keep the ready cleanup tasks; cancel the others (which may make more ready)."""
        waiting, self.ready = list(self.ready), deque()
        for node in waiting:
            self._unstarted_on_cancel(node)

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
        by_key = NodesByKey(self.nodes, len(plan.tasks), lambda: plan.key_index)
        self.results.final(by_key)
        return RunResult(
            self.plan.pipeline,
            self.run_id,
            self.status(),
            LazyTaskRuns(by_key, self.times.task_run),
            self.results,
            self.plan.key_of,
            self.started,
            self.finished,
            self.resources.close_errors,
        )
