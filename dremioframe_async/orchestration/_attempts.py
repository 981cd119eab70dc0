"""Running one node: its attempts (slots, timeouts, retries, where it runs), its fan-out."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from typing import Any

import anyio
import tenacity

from ._arguments import Arguments
from ._backend import cancel_is_stray
from ._calls import AttemptSlots, call_async, call_sync, check_async
from ._errors import ExpandError, MapLengthError
from ._events import TaskRetrying
from ._gc import FREEZE_MIN, freezing
from ._logs import CURRENT_LOG, shipped_logs
from ._mapping import MappedTask
from ._node import AttemptLimit, ChildNode, Node, attempt_limit, elapsed, time_limit
from ._placement import on_executor, remote_call
from ._resources import with_resources
from ._retry import make_retrying
from ._rules import runs_on_cancel
from ._run_core import SLICE
from ._states import TaskState
from ._threads import SlotHandover, run_in_thread

__all__ = ["Attempts"]

_S = TaskState


class Attempts(Arguments):
    """Running a node taken off the ready queue, to its final state."""

    async def _run_node(self, node: Node) -> None:
        try:
            if isinstance(node.task, MappedTask) and node.parent is None:
                await self._expand(node)
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
            if self._cancelled(node, exc):
                raise
        except Exception as exc:
            self._settle(node, _S.FAILED, error=exc)
        else:
            self._settle(node, _S.SUCCESS, result=result)

    async def _run_plain(self, node: Node, cancel_called: Callable[[], bool] | None) -> None:
        """``_run_node`` for a plain task (``Plan.plain``) in a run without an
        executor: one attempt, in its slots if it has any, a call of its function
        in its observers' scope, and nothing else to set up (most of a wide no-op
        fan-out's cost was that set-up).

        ``cancel_called``: the runner's quick check for a cancelled scope around
        it (see ``_backend.cancel_called_function``); None: always the full one.
        """
        slots = AttemptSlots(node.limiters) if node.limiters else None
        try:
            if slots is not None:
                await slots.__aenter__()
            try:
                # As in ``_attempt``: no body starts once the run is being cancelled,
                # even when taking the slots did not have to wait.
                if cancel_called is None or cancel_called():
                    await self._checkpoint_if_cancelled()
                self._mark_running(node)
                task = node.task
                observe = self.observe
                capture = observe.capture if observe is not None else None
                if capture is not None:
                    # Log capture alone (the common case): no scope to open or close.
                    # The attempt is this node while it is RUNNING, its log made with
                    # its first line and ended where it settles (see ``_logs``). The
                    # variable is left set: a line filed later finds the node settled,
                    # and the runner puts back the run's own before any other task.
                    CURRENT_LOG.set((capture, node) if task.options.capture_logs else None)
                    result = await task.action(*task.args, **task.kwargs)
                    if result is not None:
                        result = check_async(node.key, result)
                elif observe is None:
                    result = await task.action(*task.args, **task.kwargs)
                    if result is not None:
                        result = check_async(node.key, result)
                else:
                    # The awaitable check inside the scope, as in ``_attempt``: a span
                    # and the metrics see an attempt that returned an awaitable fail.
                    with observe(node) or nullcontext():
                        result = await task.action(*task.args, **task.kwargs)
                        if result is not None:
                            result = check_async(node.key, result)
            finally:
                if slots is not None:
                    slots.release()
        except anyio.get_cancelled_exc_class() as exc:
            if self._cancelled(node, exc):
                raise
        except Exception as exc:
            self._settle(node, _S.FAILED, error=exc)
        else:
            self._settle(node, _S.SUCCESS, result=result)

    def _cancelled(self, node: Node, exc: BaseException) -> bool:
        """Settle ``node``, whose attempt was cancelled; whether the run is (re-raise)."""
        if cancel_is_stray():
            # The task awaited something that had been cancelled on its own:
            # that is this task failing, not the run being cancelled.
            self._settle(node, _S.FAILED, error=exc)
            return False
        # The run's own cancellation (a task's inner scopes catch theirs;
        # timeouts arrive as TimeoutError): wind down and re-raise.
        self.cancelling = True
        if node.attempts == 0:  # never started (it waited for a slot)
            self._unstarted_on_cancel(node)
        else:
            self._settle(node, _S.CANCELLED, reason=self._why_cancelled())
        return True

    def _unstarted_on_cancel(self, node: Node) -> None:
        """A task that never started, in a cancelled run: ready again if it is cleanup
        whose upstream tasks ended (the wind-down may still run it); left unqueued if it
        is cleanup with upstream tasks still to end (decided once they have); otherwise
        CANCELLED."""
        if self._is_cleanup(node):
            self.ready.append(node)
        elif runs_on_cancel(node.task.options.trigger_rule) and node.parent is None:
            node.queued = False
        else:
            self._settle(node, _S.CANCELLED, reason=self._why_cancelled())

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
        self.times.start(node, time.time())
        if node.began is None and node.task.options.deadline is not None:
            node.began = anyio.current_time()  # only a deadline reads it (``elapsed``)
        node.state = _S.RUNNING
        if self.task_records and node.attempts == 1:
            self._first_start(node)  # not through ``_state_event``: one call less
        elif self.emit is not None:
            self._state_event(node)

    def _before_sleep(self, node: Node) -> Callable[[tenacity.RetryCallState], None]:
        def hook(state: tenacity.RetryCallState) -> None:
            self.retried = True
            if self.emit is None or state.outcome is None or state.next_action is None:
                return
            error = state.outcome.exception()
            assert error is not None
            if self.task_records and state.attempt_number == 1:
                # Its start may still wait for the grace: without it, the row would
                # show a failed attempt of a PENDING task until the next attempt.
                self.emit(self._start_record(node))
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

    # -- dynamic fan-out -----------------------------------------------------------

    def _instances(
        self, node: Node, values: Sequence[dict[str, Any]], first: int, children: list[Node]
    ) -> int:
        """Queue instances ``first``... of a fan-out, a slice of them; return how many."""
        end = min(first + SLICE, len(values))
        made = [ChildNode(node, j, values[j]) for j in range(first, end)]
        for child in made:
            child.queued = True
        children.extend(made)
        self.nodes.extend(made)
        self.ready.extend(made)
        return len(made)

    async def _expand(self, node: Node) -> None:
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
        node.state = _S.RUNNING
        self.times.start(node, time.time())
        if self.emit is not None:
            self._state_event(node)
        if not values:
            self._settle(node, _S.SUCCESS, result=[])
            return
        node.left = node.width = len(values)
        self.remaining += len(values)
        children: list[Node] = []
        node.children = children  # filled a slice at a time; read once the last has ended
        # A wide fan-out's instances are made frozen (``_gc``), under the run's claim for
        # its running tasks when it holds one (kept to the run's end: not thawed here).
        held = self.running_claim if len(values) >= FREEZE_MIN else None
        claim = held or freezing(len(values))
        if claim is not None:
            self.froze = True
        # A slice at a time, the first ones running meanwhile, as a run makes its nodes.
        # Shielded: every counted instance is made, so that the run can settle it.
        with anyio.CancelScope(shield=True):
            try:
                made = 0
                while made < len(values):
                    if claim is not None:
                        with claim.slice():
                            made += self._instances(node, values, made, children)
                    else:
                        made += self._instances(node, values, made, children)
                    self._maybe_spawn()
                    if made < len(values):
                        await self._checkpoint()
            finally:
                if claim is not None and claim is not held:
                    claim.thaw()
