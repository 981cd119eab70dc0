"""Run a pipeline on a schedule, inside the caller's event loop, until cancelled.

``schedule_pipeline(p, interval=60)`` or ``schedule_pipeline(p, cron="*/5 * * * *")``
(cron needs the ``cron`` extra: cronsim; evaluated in the local time zone).
Interval fires are aligned to the epoch (multiples of the interval: every
``interval=60`` schedule fires on the minute), as cron fires are aligned to the
clock, so that every process agrees on the fire times.

Exactly once across processes: with a ``store``, each fire is claimed in the
store under its (pipeline, fire time) before it runs; a scheduler that loses the
claim skips that fire. Any number of ``schedule_pipeline`` calls, ``schedule``
commands and ``serve`` processes on one store run each fire once. The run
records its fire time (``RunInfo.scheduled_for``), and waits for a free slot
when its pipeline has ``max_active_runs``. Each scheduled run carries its data
interval, from the previous fire time to its own, as ``context.params
["interval_start"]`` and ``["interval_end"]`` (timezone-aware ISO strings, as a
backfill's runs do); the store records it as ``RunInfo.interval``.

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
``queue`` one after the other as above. The overlap policy is this process's:
across processes, bound the runs with ``Pipeline(max_active_runs=1)``.

Pausing: a schedule paused in its store (``store.pause_schedule(name)``, the UI's
pause switch) fires nothing, in every process on the store, until resumed: each
scheduler reads the pauses before it claims a fire, and skips the fire (logged)
while its pipeline is paused. A scheduler that runs through the pause does not
make up the fires that fell during it, even with ``catch_up=True``; one started
after the pause was lifted, with ``catch_up=True``, counts from the latest run and
so does make them up (the store keeps no record of a lifted pause). Runs already
queued or running go on, and a fire whose claim was under way as the pause was
written may still run.

``Schedule(pipeline, cron=...)`` declares a schedule beside a pipeline, for
``dremioframe-async serve``, which queues each fire in the store for any of its
replicas to run.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Protocol, runtime_checkable

import anyio
from anyio.abc import TaskGroup

from .errors import DremioFrameError, MissingExtra
from .orchestration import Event, Pipeline, RunResult
from .store import RunStore, SchedulePauses, StoreError

__all__ = [
    "Clock",
    "FireClaims",
    "Schedule",
    "ScheduleError",
    "SystemClock",
    "claim_and_wait",
    "is_paused",
    "queue_fires",
    "schedule_pipeline",
    "with_interval",
]

log = logging.getLogger(__name__)
# How often a fire's claim is tried again while the store cannot be reached.
STORE_RETRY = 1.0
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
        # k * interval for whole k: every process computes the same floats.
        k = math.floor(anchor / interval) + 1
        while True:
            yield k * interval
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


def _previous_fire(interval: float | None, cron: str | None, fire: float) -> float:
    """The fire time before ``fire``: the start of ``fire``'s data interval."""
    if interval is not None:
        return (round(fire / interval) - 1) * interval
    from cronsim import CronSim  # present: the fire itself came from it

    ticks = CronSim(cron or "", datetime.fromtimestamp(fire).astimezone(), reverse=True)
    return next(ticks).timestamp()


def with_interval(
    params: Mapping[str, Any] | None, interval: float | None, cron: str | None, fire: float
) -> dict[str, Any]:
    """``params`` with the fire's data interval: ``interval_start`` (the previous fire)
    and ``interval_end`` (this one), as timezone-aware ISO strings, as backfills give.

    Values the caller set under those names win.
    """
    start = datetime.fromtimestamp(_previous_fire(interval, cron, fire)).astimezone()
    end = datetime.fromtimestamp(fire).astimezone()
    return {"interval_start": start.isoformat(), "interval_end": end.isoformat(), **(params or {})}


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _positive_finite(value: float) -> bool:
    return value > 0 and math.isfinite(value)


def _check(interval: float | None, cron: str | None, overlap: str, max_runs: int | None) -> None:
    if (interval is None) == (cron is None):
        raise ScheduleError("give exactly one of interval= (seconds) or cron= (an expression)")
    if interval is not None and not (_is_number(interval) and _positive_finite(interval)):
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


@runtime_checkable
class FireClaims(Protocol):
    """What a store offers schedulers in many processes (every store of ``store``)."""

    async def claim_fire(
        self, pipeline: str, scheduled_for: float, params: Mapping[str, Any] | None = None
    ) -> str | None: ...

    async def claim_next(
        self, limits: Mapping[str, int | None], *, run_id: str | None = None
    ) -> Any: ...

    async def wait_queued(self, seconds: float) -> None: ...

    async def request_cancel(self, run_id: str) -> Any: ...

    async def get_run(self, run_id: str) -> Any: ...


async def claim_and_wait(
    store: FireClaims,
    pipeline: Pipeline,
    fire: float,
    params: Mapping[str, Any] | None,
) -> str | None:
    """Claim ``fire`` and then its run, once ``max_active_runs`` allows; the run's id.

    ``None`` when another process claimed the fire, or took or cancelled its run.
    A scheduler cancelled while it waits cancels its queued run, so none lingers.
    """
    run_id = await store.claim_fire(pipeline.name, fire, params)
    if run_id is None:
        return None
    limits = {pipeline.name: pipeline.max_active_runs}
    try:
        while True:
            try:
                if await store.claim_next(limits, run_id=run_id) is not None:
                    return run_id
                if (await store.get_run(run_id)).status != "QUEUED":
                    return None
            except StoreError as exc:  # the run stays queued: claim it once the store is back
                log.warning("store unavailable, waiting for run %s: %s", run_id, exc)
            await store.wait_queued(STORE_RETRY)
    except BaseException:
        with anyio.CancelScope(shield=True), anyio.move_on_after(10):
            await store.request_cancel(run_id)
        raise


async def is_paused(store: object, pipeline: str) -> bool:
    """Whether ``pipeline``'s schedule is paused in ``store`` (see ``store.SchedulePauses``).

    :raises StoreError: when the store cannot be reached.
    """
    return isinstance(store, SchedulePauses) and pipeline in await store.paused_schedules()


async def _claim_fire(
    store: FireClaims,
    name: str,
    fire: float,
    params: Mapping[str, Any] | None,
    clock: Clock,
    give_up_at: float,
) -> str | None:
    """``store.claim_fire``, tried again each second while the store cannot be reached.

    Given up (``None``, logged) once ``give_up_at`` (the next fire) comes: a
    scheduler lives through a database outage instead of ending with it. A
    schedule paused in the store claims nothing (``None``, logged).
    """
    while True:
        try:
            if await is_paused(store, name):
                log.info("%s is paused: the fire at %s is skipped", name, _iso(fire))
                return None
            return await store.claim_fire(name, fire, params)
        except StoreError as exc:
            if clock.now() + STORE_RETRY >= give_up_at:
                log.error(
                    "store unavailable: the fire of %s at %s is lost: %s", name, _iso(fire), exc
                )
                return None
            log.warning(
                "store unavailable, trying again: the fire of %s at %s: %s", name, _iso(fire), exc
            )
            await clock.sleep_until(clock.now() + STORE_RETRY)


async def queue_fires(schedule: Schedule, store: FireClaims, clock: Clock | None = None) -> None:
    """Queue ``schedule``'s fires in ``store`` as they come, until cancelled.

    Each fire is claimed once across every process doing this; its run waits in
    the queue for a process serving the pipeline (``dremioframe-async serve``).
    """
    clock = clock or SystemClock()
    name = schedule.pipeline.name
    fires = schedule.fire_times(clock.now())
    fire = next(fires)
    while True:
        await clock.sleep_until(fire)
        following = next(fires)
        when = datetime.fromtimestamp(fire).astimezone()
        given = schedule.params(when) if callable(schedule.params) else schedule.params
        params = with_interval(given, schedule.interval, schedule.cron, fire)
        if await _claim_fire(store, name, fire, params, clock, following) is not None:
            log.info("queued %s for the fire at %s", name, when.isoformat())
        fire = following


@dataclass(frozen=True, slots=True)
class Schedule:
    """A pipeline's schedule, declared beside it for ``dremioframe-async serve``.

    ``params`` are each run's parameters, or a callable of the fire time (an aware
    local ``datetime``) returning them.

    :raises ScheduleError: (a ValueError) unless exactly one of a positive ``interval``
        (seconds) and a valid ``cron`` expression is given.
    """

    pipeline: Pipeline
    interval: float | None = None
    cron: str | None = None
    params: Mapping[str, Any] | Callable[[datetime], Mapping[str, Any]] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.pipeline, Pipeline):
            raise ScheduleError(f"Schedule needs a Pipeline, got {type(self.pipeline).__name__}")
        _check(self.interval, self.cron, "skip", None)
        next(self.fire_times(time.time()))  # a bad cron expression fails here

    def fire_times(self, after: float) -> Iterator[float]:
        """Fire times strictly after ``after``, ascending, forever."""
        return _fire_times(self.interval, self.cron, after)

    def describe(self) -> str:
        """``"every 60 s"`` or ``"cron 0 2 * * *"``."""
        return f"cron {self.cron}" if self.cron is not None else f"every {self.interval:g} s"


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
    on_result: Callable[[RunResult], Any] | None = None,
    interval_seconds: float | None = None,
) -> int:
    """Run ``pipeline`` at every fire time until cancelled (or ``max_runs`` runs started).

    ``interval_seconds=`` is accepted as an alias of ``interval=`` (the keyword
    ``dremioframe.orchestration`` uses).

    Each run is ``pipeline.run(context, store=store, on_event=on_event)``; a
    failed run is recorded and the schedule goes on. ``context`` may also be a
    callable that receives the fire time (an aware local ``datetime``) and
    returns the run's context, so each run can be parametrized by its slot.
    Returns the number of fires this process took up, once their runs have all
    finished. ``max_runs`` counts the same fires: one skipped because the schedule
    is paused or another process claimed it counts too, so ``max_runs`` bounds how
    many fires this process waits for, not how many runs it starts.
    ``on_result`` receives each run's result; a run whose history could not be
    recorded (``RunResult.history_error``) is also logged as an error.
    Cancelling the schedule cancels the runs in progress, which still run their
    cleanup tasks; ``stop_cleanup`` is handed to each run (see ``Pipeline.run``).

    :raises ScheduleError: (a ValueError) for a bad interval, cron expression, overlap
        or max_runs, or both ``interval=`` and ``interval_seconds=``.
    :raises MissingExtra: (an ImportError) for ``cron=`` without cronsim installed.
    """
    if interval_seconds is not None:
        if interval is not None:
            raise ScheduleError("give interval= or its alias interval_seconds=, not both")
        interval = interval_seconds
    _check(interval, cron, overlap, max_runs)
    clock = clock or SystemClock()
    now = clock.now()
    fires = _fire_times(interval, cron, await _anchor(pipeline, store, catch_up, now))
    next_fire = next(fires)

    async def run(fire: float) -> RunResult | None:
        when = datetime.fromtimestamp(fire).astimezone()
        given = context(when) if callable(context) else context
        params = with_interval(given, interval, cron, fire)
        run_id = None
        claims: object = store
        if isinstance(claims, FireClaims):
            try:
                if await is_paused(claims, pipeline.name):
                    log.info("%s is paused: the fire at %s is skipped", pipeline.name, _iso(fire))
                    return None
                run_id = await claim_and_wait(claims, pipeline, fire, params)
            except StoreError as exc:  # the next fire tries again: the schedule goes on
                log.error("store unavailable: the fire at %s is skipped: %s", _iso(fire), exc)
                return None
            if run_id is None:
                log.info("%s: the fire at %s runs elsewhere", pipeline.name, when.isoformat())
                return None
        log.info("starting %s for the fire at %s", pipeline.name, when.isoformat())
        result = await pipeline.run(
            params, store=store, on_event=on_event, stop_cleanup=stop_cleanup, run_id=run_id
        )
        if result.history_error is not None:
            log.error("run %s: %s", result.run_id, result.history_error)
        if on_result is not None:
            on_result(result)
        return result

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
