"""Delivering a run's events to listeners and a recorder, in order, off the tasks' path.

The runner only appends to a list (no await, no I/O); one pump coroutine per
run takes what has piled up every few milliseconds and hands each listener the
batch, in emission order, then the recorder. Only the run's start is awaited by
the runner (``Dispatcher.flush``), so that a run is on record before its first
task starts. A batch the recorder fails to take is retried and carried forward;
what is lost in the end becomes the run's ``history_error``. The pump is
shielded from the caller's cancellation so the events that describe a
cancellation are still recorded, but it gets a bounded time to finish once the
run is being cancelled.
"""

from __future__ import annotations

import inspect
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import Any, Protocol, cast

import anyio

from .._metrics import REGISTRY
from ..errors import DremioFrameError, StoreError
from ._errors import ArgumentError
from ._events import Event, RunFinished, RunStarted
from ._recorder import DirectRecorder, HistoryIncomplete, Record, RunRecorder, handed_back
from ._states import RunStatus

__all__ = ["Backlog", "Dispatcher", "Emit", "Listener", "dispatching", "normalize_listeners"]

logger = logging.getLogger("dremioframe_async.orchestration")

Listener = Callable[[Event], Any]
Emit = Callable[[Record], None]

# How long a cancelled run may still spend handing its last events to listeners.
DRAIN_BOUND_ON_CANCEL = 10.0
BATCH_WINDOW = 0.005
BATCH_ENOUGH = 256  # events waiting that the pump takes at once, without the window
# Pauses between the attempts to record one batch (so four attempts, about 1.3 s):
# enough to ride out a restarting server or a locked SQLite file, short enough
# that a run whose store is gone still ends promptly.
RECORD_BACKOFF = (0.05, 0.25, 1.0)
RECORD_RETRY_BUDGET = 5.0  # no retry starts later than this after the first attempt
# Events waiting for the pump past which the runners wait for it to take them, in
# a run with a store and no listener. A run makes events faster than a store writes
# them (and a store's worker thread gets the GIL only when the loop waits): without
# a bound, a million-task run held every record until its end, and wrote them all
# after it. Listeners are not waited for: one may wait for what the run does later.
BACKLOG_LIMIT = 20_000


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


class Backlog(Protocol):
    """The events a run made that its pump has not taken yet (see ``BACKLOG_LIMIT``)."""

    def full(self) -> bool: ...

    async def room(self) -> None: ...


class _Outbox:
    """Events on their way to the pump; appending is all that a running task pays."""

    def __init__(self) -> None:
        self.events: list[Record] = []
        self._waiting = anyio.Event()
        self._closed = anyio.Event()
        self._room: anyio.Event | None = None  # set when the pump takes the backlog
        # When the pump must take a batch even if nothing was emitted (``wake_at``),
        # and the scope of its wait, whose deadline that moves.
        self._wake = math.inf
        self._idle: anyio.CancelScope | None = None

    def full(self) -> bool:
        """Whether the runners should wait (:meth:`room`) before making more events."""
        return len(self.events) >= BACKLOG_LIMIT

    async def room(self) -> None:
        """Wait until the pump has taken the backlog (at once when there is room)."""
        while len(self.events) >= BACKLOG_LIMIT and not self._closed.is_set():
            if self._room is None:
                self._room = anyio.Event()
            await self._room.wait()

    def emit(self, event: Record) -> None:
        self.events.append(event)
        if len(self.events) == 1:
            self._waiting.set()

    def close(self) -> None:
        self._closed.set()
        self._waiting.set()

    def wake_at(self, deadline: float) -> None:
        """Have the pump take a batch by ``deadline`` (anyio's clock), events or not."""
        if deadline < self._wake:
            self._wake = deadline
            if self._idle is not None:
                self._idle.deadline = deadline

    async def take(self) -> list[Record] | None:
        """The next batch (empty when only ``wake_at`` was due), or None once closed
        and empty."""
        while True:
            # A pile that is a batch already (events made while the last batch was
            # written) is taken at once, without a trip around a busy loop: waiting
            # would only grow the batch that is still unwritten when the run ends.
            if len(self.events) < BATCH_ENOUGH:
                with anyio.CancelScope(deadline=self._wake) as self._idle:
                    await self._waiting.wait()
                self._idle = None
                if self._waiting.is_set() and len(self.events) < BATCH_ENOUGH:
                    # Let events pile up briefly: one wake-up per few milliseconds
                    # rather than per event keeps the pump's cost off a busy run.
                    # Closing cuts it short.
                    with anyio.move_on_after(BATCH_WINDOW):
                        await self._closed.wait()
            due = anyio.current_time() >= self._wake
            if due:
                self._wake = math.inf
            batch = self.take_now()
            if batch or self._closed.is_set() or due:
                return batch or (None if self._closed.is_set() else [])

    def take_now(self, *, rearm: bool = True) -> list[Record]:
        """Whatever has been emitted so far (possibly nothing); ``rearm=False``
        leaves the pump's wake-up set (for events put back with :meth:`requeue`)."""
        batch, self.events = self.events, []
        if rearm and not self._closed.is_set():
            self._waiting = anyio.Event()
        if self._room is not None:
            self._room.set()
            self._room = None
        return batch

    def requeue(self, batch: list[Record]) -> None:
        """Put ``batch`` back in front of what was emitted since it was taken."""
        self.events[:0] = batch
        self._waiting.set()


class _Recording:
    """Hands batches to the recorder; a failed batch is retried, then carried forward.

    Events that could not be recorded are prepended to the next batch (the stores
    fold a batch into row upserts, so a later batch written with them is the same
    as both written in turn). Whatever is still unrecorded when the run ends is
    its ``history_error``.
    """

    def __init__(self, recorder: RunRecorder) -> None:
        self.recorder = recorder
        self.unrecorded: list[Record] = []
        self.cause: Exception | None = None

    async def record(self, batch: list[Record]) -> None:
        # Events the recorder hands back go in front of ``events``, in place: ``batch``
        # is this pump's own list.
        events = [*self.unrecorded, *batch] if self.unrecorded else batch
        try:
            await _record_with_retries(self.recorder, events)
        except Exception as exc:
            logger.warning(
                "run recorder %r failed to record %d event(s), retrying with the next batch: "
                "%s: %s",
                self.recorder,
                len(events),
                type(exc).__name__,
                exc,
            )
            self.unrecorded, self.cause = events, exc
        else:
            self.unrecorded, self.cause = [], None

    def history_error(self) -> HistoryIncomplete | None:
        if self.cause is None or not self.unrecorded:
            return None
        run_id = _run_id(self.unrecorded[0])
        error = HistoryIncomplete(run_id, repr(self.recorder), len(self.unrecorded), self.cause)
        error.__cause__ = self.cause
        return error


async def _record_with_retries(recorder: RunRecorder, events: list[Record]) -> None:
    """Record ``events``, retrying with backoff while the budget lasts; raise the last error.

    Events the recorder hands back with an error (``_recorder.hand_back``: earlier
    batches of the run it had returned for) are put in front of ``events``, in place.
    """
    deadline = anyio.current_time() + RECORD_RETRY_BUDGET
    for delay in (*RECORD_BACKOFF, None):
        try:
            await _timed_record(recorder, events)
        except Exception as exc:
            events[:0] = handed_back(exc)
            # A store that waits on its own before failing (SQLite's busy timeout,
            # a connect timeout) has used the budget already: do not multiply it.
            if delay is None or anyio.current_time() + delay > deadline:
                raise
            await anyio.sleep(delay)
        else:
            return


async def _timed_record(recorder: RunRecorder, events: Sequence[Record]) -> None:
    """``recorder.record(events)``, timed into the process metrics when they are on.

    ``events`` holds task records only when the recorder is a :class:`DirectRecorder`.
    """
    write = cast(DirectRecorder, recorder).record
    if not REGISTRY.enabled:
        await write(events)
        return
    started, outcome = time.perf_counter(), "error"
    try:
        await write(events)
        outcome = "ok"
    finally:
        elapsed = time.perf_counter() - started
        REGISTRY.store_seconds.observe((type(recorder).__name__, outcome), elapsed)


def _run_id(record: Record) -> str:
    return record[0] if isinstance(record, tuple) else record.run_id


def takes_task_records(recorder: object) -> bool:
    """Whether ``recorder``'s ``record`` is declared to take task records.

    The declaration must sit on the class that defines the ``record`` in use: a
    subclass of a built-in store that overrides ``record`` (to inspect or filter
    what is recorded) gets events, as it did before task records existed, unless
    it declares ``takes_task_records = True`` itself.
    """
    for cls in type(recorder).__mro__:
        if "record" in cls.__dict__:
            return cls.__dict__.get("takes_task_records", False) is True
    return False


class Dispatcher:
    """One run's event delivery: ``emit`` (None when nobody listens) and ``flush``.

    ``flush`` (None without a recorder) records what was emitted so far at once,
    and raises when the recorder cannot take it: the runner awaits it after
    ``RunStarted`` so that a run's row is committed before its first task starts.
    Listeners get those events from the pump as usual. ``history_error`` is set
    once the run's events have been delivered.
    """

    def __init__(
        self, outbox: _Outbox | None, listeners: tuple[Listener, ...], recording: _Recording | None
    ) -> None:
        self._outbox = outbox
        self._listeners = listeners
        self._recording = recording
        # Taken once per batch: a free lock is taken without a trip around the loop.
        self._lock = anyio.Lock(fast_acquire=True)
        self.emit: Emit | None = outbox.emit if outbox is not None else None
        # What the runners wait on when it is full: only without listeners, since a
        # listener may wait for something the run does later (the run would hang).
        self.backlog: Backlog | None = outbox if not listeners else None
        self.flush: Callable[[], Awaitable[None]] | None = (
            self._flush if recording is not None else None
        )
        self.history_error: HistoryIncomplete | None = None
        # Nobody but a recorder that takes them reads the events: the runner emits
        # task changes as TaskRecord tuples.
        recorder = recording.recorder if recording is not None else None
        self.task_records = not listeners and takes_task_records(recorder)
        self._recorded_ahead = 0  # leading events of the next batch already recorded
        # With task records: the run's starts still to record (``Run.started_records``).
        self.started_records: Callable[[], Sequence[Record]] | None = None
        # Asks the pump for a batch by a deadline (anyio's clock): for those starts.
        self.wake_at: Callable[[float], None] | None = (
            outbox.wake_at if outbox is not None else None
        )

    async def _flush(self) -> None:
        assert self._outbox is not None
        assert self._recording is not None
        start = next((e for e in self._outbox.events if type(e) is RunStarted), None)
        try:
            await self._lock.acquire()
        except anyio.get_cancelled_exc_class():
            # Cancelled before it took the start (a run started in a cancelled scope):
            # the start goes out with the pump's batches, wherever it is now, and no end
            # would follow it, leaving the run RUNNING with no one running it. Its end
            # is queued behind it (the pump delivers in order), without the lock.
            if start is not None:
                self._outbox.emit(
                    RunFinished(
                        start.run_id, start.pipeline, RunStatus.CANCELLED, time.time(), start.time
                    )
                )
            raise
        try:
            batch = self._outbox.take_now(rearm=False)
            if not batch:
                return
            try:
                # One attempt: a store that cannot take a run's start fails the run
                # before any task starts, at once, rather than after a retry budget.
                await _timed_record(self._recording.recorder, batch)
            except DremioFrameError:
                raise
            except Exception as exc:
                raise StoreError(
                    f"run {_run_id(batch[0])} not started: {self._recording.recorder!r} could not "
                    f"record its start ({type(exc).__name__}: {exc})"
                ) from exc
            except BaseException:
                # Cancelled while the start was being written: it may have landed, and
                # the runner ends no run it did not start. Record its end, so that it
                # does not stay RUNNING (the pump writes it, shielded and bounded).
                self._end_unstarted(batch)
                raise
            # Listeners hear of the start with the run's first task events, in the
            # pump's next batch, as if it had not been flushed; the recorder has it.
            self._outbox.requeue(batch)
            self._recorded_ahead = len(batch)
        finally:
            self._lock.release()

    def _end_unstarted(self, batch: list[Record]) -> None:
        assert self._outbox is not None
        for event in batch:
            self._outbox.emit(event)
            if isinstance(event, RunStarted):
                end = RunFinished(
                    event.run_id, event.pipeline, RunStatus.CANCELLED, time.time(), event.time
                )
                self._outbox.emit(end)

    async def pump(self, scope: anyio.CancelScope, done: anyio.Event) -> None:
        assert self._outbox is not None
        try:
            with scope:
                while (batch := await self._outbox.take()) is not None:
                    async with self._lock:
                        await self._deliver(batch)
        finally:
            done.set()

    async def _deliver(self, batch: list[Record]) -> None:
        for listener in self._listeners:  # with listeners, the batch holds events only
            await _deliver(listener, cast(list[Event], batch))
        if self._recording is not None:
            ahead, self._recorded_ahead = self._recorded_ahead, 0
            rest = batch[ahead:]
            if self.started_records is not None and (starts := self.started_records()):
                rest = [*starts, *rest]
            if rest:
                await self._recording.record(rest)

    def finish(self) -> None:
        if self._recording is not None:
            self.history_error = self._recording.history_error()


@asynccontextmanager
async def dispatching(
    listeners: tuple[Listener, ...], recorder: RunRecorder | None
) -> AsyncIterator[Dispatcher]:
    """Yield the :class:`Dispatcher` of one run."""
    if not listeners and recorder is None:
        yield Dispatcher(None, (), None)
        return
    outbox = _Outbox()
    dispatcher = Dispatcher(outbox, listeners, _Recording(recorder) if recorder else None)
    scope = anyio.CancelScope(shield=True)
    done = anyio.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(dispatcher.pump, scope, done)
        try:
            yield dispatcher
            outbox.close()
            # Wait for the last events unshielded, so that the caller can still
            # cancel a run whose listener or recorder hangs.
            await done.wait()
        except BaseException:
            outbox.close()
            scope.deadline = anyio.current_time() + DRAIN_BOUND_ON_CANCEL
            raise
        finally:
            dispatcher.finish()
