"""Event streams of runs owned by other processes: one store read per run, and a cap.

Every open stream of a run that this process does not run used to read the store
itself every ``poll_interval``: 2,000 streams were 2,000 reads a second, a whole
core. A :class:`RunWatch` is shared by all the streams of one run. Whichever
stream finds the last read older than ``poll_interval`` reads the store, the
others wait for that read, so a run costs one read per interval whatever the
number of its streams, and only a change wakes them; a stream that goes away
mid-read leaves the next one to read. No background task, so nothing to stop.
:class:`StreamHub` also counts open streams: past ``max_streams`` a new one is
refused (503 with ``Retry-After``).
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Sequence

import anyio

from ..store import RunInfo, TaskInfo
from ._model import run_json, task_state_json

__all__ = ["RunWatch", "Snapshot", "StreamHub"]

Snapshot = tuple[RunInfo, Sequence[TaskInfo]]
Reader = Callable[[str], Awaitable[Snapshot]]


class RunWatch:
    """The latest store read of one run, shared by its streams.

    One stream at a time leads: it sleeps until the next read is due, reads, and
    publishes a new version only when the run or a task's state changed; the others
    sleep until then (or until their own ``at_most``, for heartbeats). So an idle run
    wakes one coroutine per interval, not one per stream. A leader that leaves (its
    client went away, or its wait ended) wakes the others, and one takes over.
    """

    def __init__(self, run_id: str, read: Reader, interval: float) -> None:
        self.run_id, self._read, self.interval = run_id, read, interval
        self.version = 0
        self.snapshot: Snapshot | None = None
        self.streams = 0
        self._shown: object = None
        self._read_at = -math.inf
        self._leader = False
        self._changed = anyio.Event()

    async def next(self, seen: int, at_most: float = math.inf) -> tuple[int, Snapshot | None]:
        """The first version newer than ``seen``, or the current one after ``at_most`` s.

        :raises RunNotFound: when the run has left the store.
        """
        deadline = anyio.current_time() + at_most
        while self.version <= seen and anyio.current_time() < deadline:
            if not self._leader:
                self._leader = True
                try:
                    with anyio.move_on_after(deadline - anyio.current_time()):
                        await self._lead(seen)
                finally:
                    self._leader = False
                    self._wake()  # someone else leads from here
                continue
            changed = self._changed
            with anyio.move_on_after(deadline - anyio.current_time()):
                await changed.wait()
        return self.version, self.snapshot

    async def _lead(self, seen: int) -> None:
        while self.version <= seen:
            await anyio.sleep(max(0.0, self._read_at + self.interval - anyio.current_time()))
            try:
                snapshot = await self._read(self.run_id)
            finally:
                self._read_at = anyio.current_time()
            shown = (run_json(snapshot[0]), [task_state_json(t) for t in snapshot[1]])
            if shown != self._shown:
                self._shown, self.snapshot = shown, snapshot
                self.version += 1
                self._wake()

    def _wake(self) -> None:
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
