"""Delivering a run's events to listeners and a recorder, in order, off the tasks' path.

The runner only appends to a list (no await, no I/O); one pump coroutine per
run takes what has piled up every few milliseconds and hands each listener the
batch, in emission order, then the recorder. The pump is shielded from the
caller's cancellation so the events that describe a cancellation are still
recorded, but it gets a bounded time to finish once the run is being cancelled.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import anyio

from ._errors import ArgumentError
from ._events import Event
from ._recorder import RunRecorder

__all__ = ["Emit", "Listener", "dispatching", "normalize_listeners"]

logger = logging.getLogger("dremioframe_async.orchestration")

Listener = Callable[[Event], Any]
Emit = Callable[[Event], None]

# How long a cancelled run may still spend handing its last events to listeners.
DRAIN_BOUND_ON_CANCEL = 10.0
BATCH_WINDOW = 0.005


def normalize_listeners(on_event: Listener | Sequence[Listener] | None) -> tuple[Listener, ...]:
    """Accept one callable or a sequence of them.

    :raises ArgumentError: for anything that is not callable.
    """
    if on_event is None:
        return ()
    if callable(on_event):
        return (on_event,)
    if not isinstance(on_event, Iterable):
        raise ArgumentError(
            f"on_event needs a callable or a list of them, got {type(on_event).__name__}"
        )
    listeners = tuple(on_event)
    for listener in listeners:
        if not callable(listener):
            raise ArgumentError(f"on_event needs callables, got {type(listener).__name__}")
    return listeners


async def _deliver(listener: Listener, batch: Sequence[Event]) -> None:
    for event in batch:
        try:
            outcome = listener(event)
            if outcome is not None and inspect.isawaitable(outcome):
                await outcome
        except Exception:
            # A broken listener must not break the run it observes.
            logger.exception("event listener %r failed on %s", listener, type(event).__name__)


async def _record(recorder: RunRecorder, batch: Sequence[Event]) -> None:
    try:
        await recorder.record(batch)
    except Exception:
        logger.exception("run recorder %r failed to record %d event(s)", recorder, len(batch))


class _Outbox:
    """Events on their way to the pump; appending is all that a running task pays."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self._waiting = anyio.Event()
        self._closed = anyio.Event()

    def emit(self, event: Event) -> None:
        self.events.append(event)
        if len(self.events) == 1:
            self._waiting.set()

    def close(self) -> None:
        self._closed.set()
        self._waiting.set()

    async def take(self) -> list[Event] | None:
        """The next batch, or None once closed and empty."""
        await self._waiting.wait()
        # Let events pile up briefly: one wake-up per few milliseconds rather than
        # per event keeps the pump's cost off a busy run. Closing cuts it short.
        with anyio.move_on_after(BATCH_WINDOW):
            await self._closed.wait()
        batch, self.events = self.events, []
        if not self._closed.is_set():
            self._waiting = anyio.Event()
        return batch or None


async def _pump(
    outbox: _Outbox,
    listeners: tuple[Listener, ...],
    recorder: RunRecorder | None,
    scope: anyio.CancelScope,
    done: anyio.Event,
) -> None:
    try:
        with scope:
            while (batch := await outbox.take()) is not None:
                for listener in listeners:
                    await _deliver(listener, batch)
                if recorder is not None:
                    await _record(recorder, batch)
    finally:
        done.set()


@asynccontextmanager
async def dispatching(
    listeners: tuple[Listener, ...], recorder: RunRecorder | None
) -> AsyncIterator[Emit | None]:
    """Yield an ``emit`` function (or None when nobody listens) for one run."""
    if not listeners and recorder is None:
        yield None
        return
    outbox = _Outbox()
    scope = anyio.CancelScope(shield=True)
    done = anyio.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(_pump, outbox, listeners, recorder, scope, done)
        try:
            yield outbox.emit
            outbox.close()
            # Wait for the last events unshielded, so that the caller can still
            # cancel a run whose listener or recorder hangs.
            await done.wait()
        except BaseException:
            outbox.close()
            scope.deadline = anyio.current_time() + DRAIN_BOUND_ON_CANCEL
            raise
