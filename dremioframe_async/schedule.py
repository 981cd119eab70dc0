"""Run a pipeline on a schedule, inside the caller's event loop, until cancelled.

``schedule_pipeline(p, interval=60)`` or ``schedule_pipeline(p, cron="*/5 * * * *")``
(cron needs the ``cron`` extra: cronsim; evaluated in the local time zone).
An interval schedule fires first one interval after it starts.

Overlap policy, when a fire comes while an earlier run is still going:

* ``skip`` (default): the fire is dropped (and logged).
* ``queue``: runs go one at a time; a fire that comes during a run waits for it.
  At most one fire waits: a later fire merges into the waiting one, which then
  takes the later fire time. So a schedule faster than its runs never builds a
  backlog: when a long run ends, one run follows at once for the latest fire.
* ``allow``: runs overlap freely.

Catch-up: fires missed while the scheduler was not running or woke late (a
suspended machine, a blocked loop) are dropped by default, except the latest
one. ``catch_up=True`` fires every missed slot instead; with a ``store``, it
also counts from the start of the pipeline's latest recorded run, so fires
missed while no scheduler was running at all are made up. The overlap policy
then treats those fires like any other: ``allow`` runs them all, ``skip`` and
``queue`` one after the other as above.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any, Literal, Protocol

import anyio
from anyio.abc import TaskGroup

from .errors import DremioFrameError, MissingExtra
from .orchestration import Event, Pipeline, RunResult
from .store import RunStore

__all__ = ["Clock", "ScheduleError", "SystemClock", "schedule_pipeline"]

log = logging.getLogger(__name__)
Overlap = Literal["skip", "queue", "allow"]
Listener = Callable[[Event], Any]


class ScheduleError(DremioFrameError, ValueError):
    """A schedule that cannot run: a bad interval, cron expression, overlap or max_runs."""


class Clock(Protocol):
    """Where the scheduler gets time from (tests pass a virtual one)."""

    def now(self) -> float:
        """Current time in epoch seconds."""
        ...

    async def sleep_until(self, deadline: float) -> None:
        """Return at or after ``deadline`` (epoch seconds)."""
        ...


class SystemClock:
    """Wall-clock time and anyio sleeps."""

    def now(self) -> float:
        return time.time()

    async def sleep_until(self, deadline: float) -> None:
        await anyio.sleep(max(0.0, deadline - time.time()))


def _fire_times(interval: float | None, cron: str | None, anchor: float) -> Iterator[float]:
    """Fire times strictly after ``anchor``, ascending, forever."""
    if interval is not None:
        k = 1
        while True:
            yield anchor + k * interval
            k += 1
    try:
        from cronsim import CronSim, CronSimError
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise MissingExtra("cron schedules", "cronsim", "cron") from exc
    try:
        times = CronSim(cron or "", datetime.fromtimestamp(anchor).astimezone())
    except CronSimError as exc:
        raise ScheduleError(f"invalid cron expression {cron!r}: {exc}") from exc
    for fire in times:
        yield fire.timestamp()


def _check(interval: float | None, cron: str | None, overlap: str, max_runs: int | None) -> None:
    if (interval is None) == (cron is None):
        raise ScheduleError("give exactly one of interval= (seconds) or cron= (an expression)")
    if interval is not None and not (interval > 0 and math.isfinite(interval)):
        raise ScheduleError(f"interval must be a positive number of seconds, got {interval!r}")
    if overlap not in ("skip", "queue", "allow"):
        raise ScheduleError(f"overlap must be 'skip', 'queue' or 'allow', got {overlap!r}")
    if max_runs is not None and max_runs < 1:
        raise ScheduleError(f"max_runs must be at least 1, got {max_runs!r}")


class _Scheduler:
    """Launches runs at fire times according to the overlap policy."""

    def __init__(self, run: Callable[[float], Any], overlap: Overlap, tg: TaskGroup) -> None:
        self._run, self._overlap, self._tg = run, overlap, tg
        self.running = 0
        self.launched = 0
        self._pending: float | None = None  # queue: the one fire waiting for a run to end
        self._wake = anyio.Event()
        self._closed = False
        if overlap == "queue":
            tg.start_soon(self._drain)

    async def _one(self, fire: float) -> None:
        # The caller counted this run as running already, so a fire in the same
        # instant sees it (skip) even before this task gets to start.
        try:
            await self._run(fire)
        finally:
            self.running -= 1

    async def _drain(self) -> None:
        while True:
            if self._pending is not None:
                fire, self._pending = self._pending, None
                self.running += 1
                await self._one(fire)
            elif self._closed:
                return
            else:
                self._wake = anyio.Event()
                await self._wake.wait()

    def fire(self, fire: float) -> None:
        if self._overlap == "queue":
            self._queue(fire)
            return
        if self._overlap == "skip" and self.running:
            log.info("skipping the run due at %s: the previous run is still going", _iso(fire))
            return
        self.running += 1
        self.launched += 1
        self._tg.start_soon(self._one, fire)

    def _queue(self, fire: float) -> None:
        if self._pending is None:
            self.launched += 1
        else:
            log.info(
                "merging the run due at %s into the one due at %s: a run is still going",
                _iso(self._pending),
                _iso(fire),
            )
        self._pending = fire
        self._wake.set()

    def close(self) -> None:
        self._closed = True
        self._wake.set()


def _iso(fire: float) -> str:
    return datetime.fromtimestamp(fire).astimezone().isoformat()


async def _anchor(pipeline: Pipeline, store: RunStore | None, catch_up: bool, now: float) -> float:
    if not (catch_up and store is not None):
        return now
    latest = await store.list_runs(pipeline=pipeline.name, limit=1)
    return latest[0].started if latest else now


async def schedule_pipeline(
    pipeline: Pipeline,
    *,
    interval: float | None = None,
    cron: str | None = None,
    overlap: Overlap = "skip",
    catch_up: bool = False,
    store: RunStore | None = None,
    context: Mapping[str, Any] | Callable[[datetime], Mapping[str, Any]] | None = None,
    max_runs: int | None = None,
    on_event: Listener | Sequence[Listener] | None = None,
    clock: Clock | None = None,
    stop_cleanup: anyio.Event | None = None,
) -> int:
    """Run ``pipeline`` at every fire time until cancelled (or ``max_runs`` runs started).

    Each run is ``pipeline.run(context, store=store, on_event=on_event)``; a
    failed run is recorded and the schedule goes on. ``context`` may also be a
    callable that receives the fire time (an aware local ``datetime``) and
    returns the run's context, so each run can be parametrized by its slot.
    Returns the number of runs started, once they have all finished.
    Cancelling the schedule cancels the runs in progress, which still run their
    cleanup tasks; ``stop_cleanup`` is handed to each run (see ``Pipeline.run``).

    :raises ScheduleError: (a ValueError) for a bad interval, cron expression, overlap
        or max_runs.
    :raises MissingExtra: (an ImportError) for ``cron=`` without cronsim installed.
    """
    _check(interval, cron, overlap, max_runs)
    clock = clock or SystemClock()
    now = clock.now()
    fires = _fire_times(interval, cron, await _anchor(pipeline, store, catch_up, now))
    next_fire = next(fires)

    async def run(fire: float) -> RunResult:
        when = datetime.fromtimestamp(fire).astimezone()
        log.info("starting %s for the fire at %s", pipeline.name, when.isoformat())
        params = context(when) if callable(context) else context
        return await pipeline.run(params, store=store, on_event=on_event, stop_cleanup=stop_cleanup)

    async with anyio.create_task_group() as tg:
        scheduler = _Scheduler(run, overlap, tg)
        try:
            while max_runs is None or scheduler.launched < max_runs:
                await clock.sleep_until(next_fire)
                now = clock.now()
                due = [next_fire]
                while (next_fire := next(fires)) <= now:
                    due.append(next_fire)
                for fire in due if catch_up else due[-1:]:
                    if max_runs is None or scheduler.launched < max_runs:
                        scheduler.fire(fire)
        finally:
            scheduler.close()
    return scheduler.launched
