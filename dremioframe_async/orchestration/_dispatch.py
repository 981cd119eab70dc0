"""Delivering a run's events to listeners and a recorder, in order, off the tasks' path.

The runner only appends to an unbounded in-memory stream (no await, no I/O); one
pump coroutine per run drains it in batches. The pump is shielded from the
caller's cancellation so the events that describe a cancellation are still
recorded, but it gets a bounded time to finish once the run is being cancelled.
"""

from __future__ import annotations

import inspect
import logging
import math
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream

from ._events import Event
from ._recorder import RunRecorder

__all__ = ["Emit", "Listener", "dispatching", "normalize_listeners"]

logger = logging.getLogger("dremioframe_async.orchestration")

Listener = Callable[[Event], Any]
Emit = Callable[[Event], None]

# How long a cancelled run may still spend handing its last events to listeners.
DRAIN_BOUND_ON_CANCEL = 10.0
_MAX_BATCH = 4096
BATCH_WINDOW = 0.005


def normalize_listeners(on_event: Listener | Sequence[Listener] | None) -> tuple[Listener, ...]:
    """Accept one callable or a sequence of them.

    :raises TypeError: for anything that is not callable.
    """
    if on_event is None:
        return ()
    listeners = (on_event,) if callable(on_event) else tuple(on_event)
    for listener in listeners:
        if not callable(listener):
            raise TypeError(f"on_event needs callables, got {type(listener).__name__}")
    return listeners


async def _call_listener(listener: Listener, event: Event) -> None:
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


async def _next_batch(
    receive: MemoryObjectReceiveStream[Event], closed: anyio.Event
) -> list[Event] | None:
    try:
        batch = [await receive.receive()]
    except anyio.EndOfStream:
        return None
    # Let events pile up briefly: one wake-up per few milliseconds rather than per
    # event keeps the pump's cost off a busy run. The run's end cuts the wait short.
    with anyio.move_on_after(BATCH_WINDOW):
        await closed.wait()
    while len(batch) < _MAX_BATCH:
        try:
            batch.append(receive.receive_nowait())
        except (anyio.WouldBlock, anyio.EndOfStream):
            break
    return batch


async def _pump(
    receive: MemoryObjectReceiveStream[Event],
    listeners: tuple[Listener, ...],
    recorder: RunRecorder | None,
    scope: anyio.CancelScope,
    closed: anyio.Event,
) -> None:
    with scope, receive:
        while (batch := await _next_batch(receive, closed)) is not None:
            for event in batch:
                for listener in listeners:
                    await _call_listener(listener, event)
            if recorder is not None:
                await _record(recorder, batch)


@asynccontextmanager
async def dispatching(
    listeners: tuple[Listener, ...], recorder: RunRecorder | None
) -> AsyncIterator[Emit | None]:
    """Yield an ``emit`` function (or None when nobody listens) for one run."""
    if not listeners and recorder is None:
        yield None
        return
    send, receive = anyio.create_memory_object_stream[Event](math.inf)
    scope = anyio.CancelScope(shield=True)
    closed = anyio.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(_pump, receive, listeners, recorder, scope, closed)
        try:
            with send:
                yield send.send_nowait
        except BaseException:
            scope.deadline = anyio.current_time() + DRAIN_BOUND_ON_CANCEL
            raise
        finally:
            closed.set()
