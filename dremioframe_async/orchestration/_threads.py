"""Plain (sync) task functions in worker threads, with timeouts that keep limits exact.

A thread cannot be interrupted. When a sync attempt times out, the attempt fails
at once (the run goes on), but the thread runs on: its concurrency and pool
slots stay taken until it really returns, so the limits still hold. The thread
hands the slots back through the event loop when it ends.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

import anyio
import anyio.to_thread

from ._backend import call_soon_from_thread

__all__ = ["SlotHandover", "run_in_thread"]


class SlotHandover:
    """The slots of one sync attempt, and who releases them: the attempt or its thread."""

    def __init__(self, limiters: Sequence[anyio.CapacityLimiter], borrower: object) -> None:
        self._limiters = limiters
        self._borrower = borrower
        self._soon = call_soon_from_thread()
        self._lock = threading.Lock()
        self._thread_done = False
        self._abandoned = False

    def release(self) -> None:
        """Give the slots back; on the event loop's thread only."""
        for limiter in self._limiters:
            limiter.release_on_behalf_of(self._borrower)

    def abandon(self) -> bool:
        """The attempt gave up on its thread: True if the thread will release the slots."""
        with self._lock:
            if self._thread_done:
                return False
            self._abandoned = True
            return True

    def thread_finished(self) -> None:
        """Called by the worker thread as it ends."""
        with self._lock:
            self._thread_done = True
            if not self._abandoned:
                return
        try:
            self._soon(self.release)
        except RuntimeError:  # the loop is gone: nothing is left to bound
            return


async def run_in_thread(
    call: Callable[[], Any], limiter: anyio.CapacityLimiter, handover: SlotHandover | None
) -> Any:
    """Run ``call`` in a worker thread.

    Without ``handover`` a cancellation waits for the thread to return. With one,
    the attempt may give up on the thread (timeout, cancellation) and leave the
    release of its slots to the thread.
    """
    if handover is None:
        return await anyio.to_thread.run_sync(call, limiter=limiter)

    def guarded() -> Any:
        try:
            return call()
        finally:
            handover.thread_finished()

    return await anyio.to_thread.run_sync(guarded, limiter=limiter, abandon_on_cancel=True)
