"""Event streams of runs owned by other processes: one store read per run, and a cap.

Every open stream of a run that this process does not run used to read the store
itself every ``poll_interval``: 2,000 streams were 2,000 reads a second, a whole
core. A :class:`RunWatch` is shared by all the streams of one run. Whichever
stream finds the last read older than ``poll_interval`` reads the store, the
others wait for that read, so a run costs one read per interval whatever the
number of its streams; a stream that goes away mid-read leaves the next one to
read. No background task, so nothing to stop. :class:`StreamHub` also counts open
streams: past ``max_streams`` a new one is refused (503 with ``Retry-After``).
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Sequence

import anyio

from ..store import RunInfo, TaskInfo

__all__ = ["RunWatch", "Snapshot", "StreamHub"]

Snapshot = tuple[RunInfo, Sequence[TaskInfo]]
Reader = Callable[[str], Awaitable[Snapshot]]


class RunWatch:
    """The latest store read of one run, shared by its streams."""

    def __init__(self, run_id: str, read: Reader, interval: float) -> None:
        self.run_id, self._read, self.interval = run_id, read, interval
        self.version = 0
        self.snapshot: Snapshot | None = None
        self.streams = 0
        self._read_at = -math.inf
        self._reading = False
        self._changed = anyio.Event()

    async def next(self, seen: int) -> tuple[int, Snapshot]:
        """The first read newer than version ``seen`` (made by this stream or another).

        :raises RunNotFound: when the run has left the store.
        """
        while self.version <= seen or self.snapshot is None:
            wait = self._read_at + self.interval - anyio.current_time()
            if not self._reading and wait <= 0:
                await self._refresh()
                continue
            changed = self._changed
            # A reader that was cancelled never sets it: wake by the clock to take over.
            with anyio.move_on_after(max(wait, 0) + self.interval):
                await changed.wait()
        return self.version, self.snapshot

    async def _refresh(self) -> None:
        self._reading = True
        try:
            snapshot = await self._read(self.run_id)
        finally:
            self._reading = False
            self._read_at = anyio.current_time()
        self.snapshot, self.version = snapshot, self.version + 1
        changed, self._changed = self._changed, anyio.Event()
        changed.set()


class StreamHub:
    """Open event streams: how many, and the shared watch of each run they follow."""

    def __init__(self, max_streams: int, read: Reader, interval: float) -> None:
        if max_streams < 1:
            raise ValueError(f"max_streams must be >= 1, got {max_streams!r}")
        self.max_streams, self._read, self._interval = max_streams, read, interval
        self.open = 0
        self._watches: dict[str, RunWatch] = {}

    @property
    def full(self) -> bool:
        """Whether a new stream must be refused."""
        return self.open >= self.max_streams

    def enter(self) -> None:
        self.open += 1

    def leave(self) -> None:
        self.open -= 1

    def watch(self, run_id: str) -> RunWatch:
        """The shared watch of ``run_id`` (pair with :meth:`release`)."""
        found = self._watches.get(run_id)
        if found is None:
            found = self._watches[run_id] = RunWatch(run_id, self._read, self._interval)
        found.streams += 1
        return found

    def release(self, watch: RunWatch) -> None:
        watch.streams -= 1
        if watch.streams <= 0 and self._watches.get(watch.run_id) is watch:
            del self._watches[watch.run_id]
