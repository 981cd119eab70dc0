"""One attempt of a task: its slots, and the call on the loop or in a worker thread.

:class:`AttemptSlots` takes the attempt's pool and concurrency slots and gives
them back. :func:`call_async` runs a coroutine function on the loop;
:func:`call_sync` runs a plain function in one of the run's worker threads,
where a timed-out attempt may leave its slots to the thread that still runs.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from types import TracebackType
from typing import Any

import anyio

from ._errors import AttemptTimeout, TaskDefinitionError
from ._node import AttemptLimit
from ._threads import SlotHandover

__all__ = ["AttemptSlots", "call_async", "call_sync", "check_async"]


class AttemptSlots:
    """The pool and concurrency slots of one attempt, held for the ``async with`` body.

    Each slot is taken without yielding when one is free. Slots are taken on
    behalf of this object, one per attempt, so a thread that outlives its
    attempt can keep them without confusing the next attempt.
    """

    __slots__ = ("_held", "_limiters")

    def __init__(self, limiters: Sequence[anyio.CapacityLimiter]) -> None:
        self._limiters = limiters
        self._held = 0

    async def __aenter__(self) -> AttemptSlots:
        try:
            for limiter in self._limiters:
                try:
                    limiter.acquire_on_behalf_of_nowait(self)
                except anyio.WouldBlock:
                    await limiter.acquire_on_behalf_of(self)
                self._held += 1
        except BaseException:
            self.release()  # cancelled while waiting: give back what was taken
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    def release(self) -> None:
        """Give back the slots taken (what leaving the ``async with`` does)."""
        for limiter in self._limiters[: self._held]:
            limiter.release_on_behalf_of(self)
        self._held = 0

    def handover(self) -> SlotHandover:
        """What a worker thread needs to give these slots back should the attempt leave it."""
        return SlotHandover(self._limiters[: self._held], self)

    def disown(self) -> None:
        """The thread releases the slots when it ends: leaving the block must not."""
        self._held = 0


async def call_async(
    key: str, call: Callable[[], Awaitable[Any]], time_limit: AttemptLimit | None
) -> Any:
    """Await a coroutine function's call on the loop, within ``time_limit`` if given.

    :raises AttemptTimeout: the call passed its time limit.
    """
    if time_limit is None:
        return check_async(key, await call())
    with _within(time_limit):
        return check_async(key, await call())


async def call_sync(
    key: str,
    call: Callable[[], Any],
    time_limit: AttemptLimit | None,
    slots: AttemptSlots,
    run: Callable[[Callable[[], Any], SlotHandover | None], Awaitable[Any]],
) -> Any:
    """Run a plain function through ``run`` (a worker thread or the run's executor).

    Past ``time_limit`` the attempt fails without waiting for the call.

    A thread cannot be interrupted: an attempt that times out (or is cancelled)
    fails at once, and the thread keeps the attempt's slots until it returns.
    """
    if time_limit is None:
        return _check_sync(key, await run(call, None))
    handover = slots.handover()
    try:
        with _within(time_limit):
            return _check_sync(key, await run(call, handover))
    except BaseException:
        if handover.abandon():
            slots.disown()  # the thread still runs: it releases the slots when it ends
        raise


@contextmanager
def _within(limit: AttemptLimit) -> Iterator[None]:
    """Like ``anyio.fail_after``, but the error names the setting: a bare ``TimeoutError``
    says nothing in a run's history. A ``TimeoutError`` the task raises itself passes as is."""
    with anyio.move_on_after(limit.seconds) as scope:
        yield
    if scope.cancelled_caught:
        raise AttemptTimeout(limit.setting)


def check_async(key: str, outcome: Any) -> Any:
    """``outcome`` of a coroutine function's call; an awaitable there is the task's mistake."""
    if outcome is not None and inspect.isawaitable(outcome):
        if inspect.iscoroutine(outcome):
            outcome.close()  # never awaited: close it rather than leak a warning
        raise TaskDefinitionError(
            key,
            f"the async function returned an awaitable ({type(outcome).__name__}) "
            "instead of a result; await it in the task",
        )
    return outcome


def _check_sync(key: str, outcome: Any) -> Any:
    if inspect.iscoroutine(outcome):
        outcome.close()  # never awaited: close it rather than leak a warning
        raise TaskDefinitionError(
            key, "a plain function returned a coroutine; declare it async def"
        )
    return outcome
