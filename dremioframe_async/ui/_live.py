"""Runs of this process, folded from their own events as they happen.

:class:`LiveRuns` is an ``on_event`` listener. It keeps each run it hears of in
a :class:`~dremioframe_async.store.MemoryStore` of its own, so the pages read a
live run through the same frozen views as a recorded one, as fresh as the
engine's event batches (a few milliseconds). Events are only appended when they
arrive; they are folded when someone reads the run. Finished runs are kept
(the latest ``keep``) so a page opened just after the end still reads them here.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import anyio
import anyio.to_thread

from ..orchestration import Event, RunFinished, RunStarted, TaskLogged
from ..store import MemoryStore, RunInfo, TaskInfo
from ._threads import IN_THREAD_FROM, ui_threads

__all__ = ["VIEWS_IN_THREAD", "LiveRun", "LiveRuns"]

VIEWS_IN_THREAD = IN_THREAD_FROM  # a run's tasks from which its views are built off the loop


class LiveRun:
    """One run heard of in this process: its events, folded on demand, and a change signal."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.version = 0
        self.finished = False
        self._store = MemoryStore()
        self._pending: list[Event] = []
        self._changed = anyio.Event()
        self._reading = anyio.Lock()
        # The last read's views, with the version they show (see ``read``).
        self._read: tuple[int, RunInfo, Sequence[TaskInfo]] | None = None

    def add(self, event: Event) -> None:
        if isinstance(event, TaskLogged):
            return  # log lines are read from the store: no second copy of them here
        self._pending.append(event)
        self.version += 1
        if isinstance(event, RunFinished):
            self.finished = True
        self._changed.set()
        self._changed = anyio.Event()

    async def wait_changed(self, since: int) -> None:
        """Return once the run has changed after version ``since``."""
        while self.version == since:
            await self._changed.wait()

    async def read(self) -> tuple[RunInfo, Sequence[TaskInfo]]:
        """The run and its tasks as of now.

        One read at a time: a large run's views are built in a worker thread (about
        1.1 s for 100,000 tasks, which held the loop that also runs the run), and
        nothing may fold events into the store meanwhile. Reads of a running run
        while nothing has changed share the views the last one built.
        """
        async with self._reading:
            version = self.version
            if self._read is not None and self._read[0] == version:
                return self._read[1], self._read[2]
            run = await self._fold()
            if self._store.task_count(self.run_id) < VIEWS_IN_THREAD:
                tasks = await self._store.get_tasks(self.run_id)
            else:
                tasks = await anyio.to_thread.run_sync(
                    self._store.task_views, self.run_id, limiter=ui_threads()
                )
            # Kept while the run goes (its streams and pages read it again and again),
            # not once it has ended: up to ``keep`` ended runs stay here.
            self._read = None if self.finished else (version, run, tasks)
            return run, tasks

    async def read_run(self) -> RunInfo:
        """The run as of now, without its tasks' views."""
        async with self._reading:
            return await self._fold()

    async def _fold(self) -> RunInfo:
        """Fold the events that came since the last read; the run as of now."""
        if self._pending:
            pending, self._pending = self._pending, []
            await self._store.record(pending)
        return await self._store.get_run(self.run_id)


class LiveRuns:
    """An ``on_event`` listener keeping the runs of this process readable while they go."""

    def __init__(self, keep: int = 100) -> None:
        self._keep = keep
        self._runs: OrderedDict[str, LiveRun] = OrderedDict()
        self._started: dict[str, anyio.Event] = {}

    def __call__(self, event: Event) -> None:
        run = self._runs.get(event.run_id)
        if run is None:
            if not isinstance(event, RunStarted):
                return  # a run that began before this listener was attached
            run = self._runs[event.run_id] = LiveRun(event.run_id)
            self._evict()
        run.add(event)
        if isinstance(event, RunStarted) and (started := self._started.pop(event.run_id, None)):
            started.set()

    def _evict(self) -> None:
        done = [k for k, r in self._runs.items() if r.finished]
        for run_id in done[: max(0, len(done) - self._keep)]:
            del self._runs[run_id]

    def get(self, run_id: str) -> LiveRun | None:
        """The live run ``run_id``, or None when this process has not heard of it."""
        return self._runs.get(run_id)

    def expect(self, run_id: str) -> anyio.Event:
        """An event set when ``run_id`` starts (for a run about to be launched)."""
        return self._started.setdefault(run_id, anyio.Event())

    def forget_expected(self, run_id: str) -> None:
        """Drop the start signal of a run that failed before starting."""
        self._started.pop(run_id, None)
