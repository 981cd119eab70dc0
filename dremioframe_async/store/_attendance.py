"""Heartbeats and cancel requests of the runs one store attends, batched across runs.

Every run a store records is attended while it runs (``store.attend``): its
heartbeat is renewed in the store every ``heartbeat`` seconds, so any process on
any host can tell that it is alive, and cancel requests written by other
processes are picked up every ``cancel_poll`` seconds (sooner when the store
is woken, by PostgreSQL's ``NOTIFY`` say).

One store may attend thousands of runs at once, so the work is shared: each
attended run has a watcher task, but only the watcher holding the lock talks
to the database, for all the runs at once (one heartbeat statement, one cancel
query); the others wait for it and read the answer. When the leader's run ends,
another watcher takes over. A database error is logged and retried at the next
tick: losing a connection must never end a live run.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

import anyio

from ._errors import StoreConfigError

__all__ = ["DEFAULT_DEAD_AFTER", "DEFAULT_HEARTBEAT", "Attendance", "check_liveness"]

log = logging.getLogger("dremioframe_async.store")

DEFAULT_HEARTBEAT = 5.0
DEFAULT_DEAD_AFTER = 30.0
DEFAULT_CANCEL_POLL = 0.5

Beat = Callable[[Sequence[str]], Awaitable[None]]
Poll = Callable[[Sequence[str]], Awaitable[dict[str, int]]]


def check_liveness(heartbeat: float, dead_after: float) -> None:
    """Refuse settings under which a live run could be judged dead.

    :raises StoreConfigError: unless ``0 < heartbeat`` and ``dead_after >= 2 * heartbeat``.
    """
    if not (heartbeat > 0 and dead_after > 0):
        raise StoreConfigError(
            f"heartbeat and dead_after must be > 0, got {heartbeat}, {dead_after}"
        )
    if dead_after < 2 * heartbeat:
        raise StoreConfigError(
            f"dead_after ({dead_after} s) must be at least twice the heartbeat ({heartbeat} s): "
            "one late renewal must not make a live run look dead"
        )


@dataclass(slots=True)
class _Attended:
    on_cancel: Callable[[int], None]
    seen: int = 0


class Attendance:
    """The runs one store attends (see the module docstring)."""

    def __init__(self, beat: Beat, poll: Poll, heartbeat: float, cancel_poll: float) -> None:
        self._beat, self._poll = beat, poll
        self.heartbeat, self.cancel_poll = heartbeat, cancel_poll
        self._runs: dict[str, _Attended] = {}
        self._requests: dict[str, int] = {}
        self._last_beat = 0.0
        self._lock: anyio.Lock | None = None
        self._wake: anyio.Event | None = None
        self._refreshed: anyio.Event | None = None

    def fresh(self) -> Attendance:
        """The same settings, attending nothing (for a forked copy of the process)."""
        return Attendance(self._beat, self._poll, self.heartbeat, self.cancel_poll)

    @property
    def run_ids(self) -> list[str]:
        """The runs attended now."""
        return list(self._runs)

    def attends(self, run_id: str) -> bool:
        """Whether ``run_id`` is attended now."""
        return run_id in self._runs

    def wake(self) -> None:
        """Look for cancel requests now rather than at the next tick."""
        if self._wake is not None:
            self._wake.set()

    @asynccontextmanager
    async def attend(self, run_id: str, on_cancel: Callable[[int], None]) -> AsyncIterator[None]:
        """Attend ``run_id`` for the duration; ``on_cancel(n)`` gets the n-th cancel request."""
        if self._lock is None or not self._runs:
            # Made anew whenever nothing is attended: a store used again in another
            # event loop (after ``aclose()``) must not wait on this one's first loop.
            self._lock, self._wake, self._refreshed = anyio.Lock(), anyio.Event(), anyio.Event()
        entry = self._runs[run_id] = _Attended(on_cancel)
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._watch, run_id, entry)
                try:
                    yield
                finally:
                    tg.cancel_scope.cancel()
        finally:
            self._runs.pop(run_id, None)
            self._requests.pop(run_id, None)

    async def _watch(self, run_id: str, entry: _Attended) -> None:
        assert self._lock is not None
        while True:
            if self._lock.locked():
                assert self._refreshed is not None
                await self._refreshed.wait()
            else:
                async with self._lock:
                    try:
                        await self._tick()
                    finally:
                        # Wake the followers, also when this run (the leader) ends.
                        assert self._refreshed is not None
                        done, self._refreshed = self._refreshed, anyio.Event()
                        done.set()
            requests = self._requests.get(run_id, 0)
            if requests > entry.seen:
                entry.seen = requests
                entry.on_cancel(requests)

    async def _tick(self) -> None:
        assert self._wake is not None
        with anyio.move_on_after(min(self.cancel_poll, self.heartbeat)):
            await self._wake.wait()
        self._wake = anyio.Event()
        run_ids = list(self._runs)
        if not run_ids:
            return
        try:
            if time.monotonic() - self._last_beat >= self.heartbeat:
                await self._beat(run_ids)
                self._last_beat = time.monotonic()
            self._requests.update(await self._poll(run_ids))
        except Exception as exc:  # retried at the next tick: a live run must stay alive
            log.warning("could not renew heartbeats or read cancel requests: %s", exc)
