"""Backfills: one run of a pipeline per data interval over a date range, resumable.

``await backfill(pipeline, start=..., end=..., every="1d", store=store)`` cuts
``[start, end)`` into intervals (``every``: a duration; or ``cron``: the
intervals between consecutive cron ticks; ``end`` is exclusive, so November 1
to December 1 by ``1d`` is 30 intervals) and runs the pipeline once per
interval, at most ``max_active`` at once, oldest first. Each run gets
``context.params["interval_start"]`` and ``["interval_end"]`` (timezone-aware
ISO strings) and ``["backfill_id"]``; the store records the interval and the
backfill on the run (``RunInfo.interval``, ``RunInfo.backfill``).

Which intervals run, from the latest recorded run of the pipeline for each:

* ``rerun="missing"`` (default): intervals with no run, or whose latest run
  never finished (CANCELLED, INTERRUPTED). Succeeded and failed intervals are
  skipped, so after Ctrl-C the same call continues where it stopped.
* ``rerun="failed"``: the missing ones and those whose latest run FAILED.
* ``rerun="all"``: every interval.

An interval whose latest run is still RUNNING (another process) is skipped
unless ``rerun="all"``. The backfill id is derived from the pipeline and the
range, so the same command resumed later groups its runs with the first ones.
Naive datetimes are taken as UTC.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import anyio

from .errors import DremioFrameError, MissingExtra
from .orchestration import Event, Pipeline, RunResult, RunStatus
from .store import RunInfo, RunStore

__all__ = [
    "BackfillError",
    "BackfillResult",
    "Interval",
    "Rerun",
    "backfill",
    "intervals",
    "parse_duration",
]

Rerun = Literal["missing", "failed", "all"]
_DURATION = re.compile(r"(\d+)([smhdw])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_UNFINISHED = frozenset({RunStatus.CANCELLED, RunStatus.INTERRUPTED})


class BackfillError(DremioFrameError, ValueError):
    """A backfill that cannot run: a bad range, duration, cron expression or option."""


@dataclass(frozen=True, slots=True, order=True)
class Interval:
    """One data interval, ``[start, end)``, timezone-aware."""

    start: dt.datetime
    end: dt.datetime

    def params(self) -> dict[str, str]:
        """The run parameters that carry this interval."""
        return {"interval_start": self.start.isoformat(), "interval_end": self.end.isoformat()}


@dataclass(frozen=True, slots=True)
class BackfillResult:
    """What a backfill did: the runs it made, by interval, and the intervals it skipped."""

    backfill_id: str
    runs: tuple[tuple[Interval, RunResult], ...] = ()
    skipped: tuple[tuple[Interval, str], ...] = ()  # with the status that made it skip
    failed: tuple[Interval, ...] = field(default=())

    @property
    def status(self) -> RunStatus:
        """FAILED when any run did not succeed, else SUCCESS."""
        return RunStatus.FAILED if self.failed else RunStatus.SUCCESS


def parse_duration(text: str | dt.timedelta) -> dt.timedelta:
    """``"1d"``, ``"6h"``, ``"1h30m"``, ``"2w"``, ``"90s"`` (or a timedelta) as a timedelta.

    :raises BackfillError: anything else, or a duration that is not positive.
    """
    if isinstance(text, dt.timedelta):
        step = text
    else:
        pieces = _DURATION.findall(text.strip().lower())
        if not pieces or "".join(n + u for n, u in pieces) != text.strip().lower():
            raise BackfillError(f"a duration looks like 1d, 6h, 1h30m, 2w or 90s, not {text!r}")
        step = sum((dt.timedelta(**{_UNITS[u]: int(n)}) for n, u in pieces), dt.timedelta())
    if step <= dt.timedelta():
        raise BackfillError(f"a duration must be positive, got {text!r}")
    return step


def _aware(when: dt.datetime | dt.date | str) -> dt.datetime:
    if isinstance(when, str):
        try:
            when = dt.datetime.fromisoformat(when)
        except ValueError as exc:
            raise BackfillError(f"not an ISO date or datetime: {when!r}") from exc
    if not isinstance(when, dt.datetime):
        when = dt.datetime(when.year, when.month, when.day)
    return when if when.tzinfo is not None else when.replace(tzinfo=dt.UTC)


def _cron_ticks(cron: str, start: dt.datetime, end: dt.datetime) -> list[dt.datetime]:
    try:
        from cronsim import CronSim, CronSimError
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise MissingExtra("cron backfills", "cronsim", "cron") from exc
    try:
        ticks = CronSim(cron, start - dt.timedelta(microseconds=1))  # start itself may tick
    except CronSimError as exc:
        raise BackfillError(f"invalid cron expression {cron!r}: {exc}") from exc
    found: list[dt.datetime] = []
    for tick in ticks:
        if tick > end:
            return found
        found.append(tick)
    return found  # pragma: no cover - CronSim is endless


def intervals(
    start: dt.datetime | dt.date | str,
    end: dt.datetime | dt.date | str,
    *,
    every: str | dt.timedelta | None = None,
    cron: str | None = None,
) -> list[Interval]:
    """The intervals of ``[start, end)``: steps of ``every`` (the last one ends at ``end``),
    or the spans between consecutive ticks of ``cron`` within the range.

    :raises BackfillError: not exactly one of ``every`` and ``cron``, an empty
        range, or a bad duration or cron expression.
    """
    first, last = _aware(start), _aware(end)
    if (every is None) == (cron is None):
        raise BackfillError("give exactly one of every= (a duration) or cron= (an expression)")
    if last <= first:
        raise BackfillError(f"the range is empty: end {last.isoformat()} <= start")
    if cron is not None:
        ticks = _cron_ticks(cron, first, last)
        return [Interval(a, b) for a, b in itertools.pairwise(ticks)]
    step = parse_duration(every)  # type: ignore[arg-type]
    bounds, t = [], first
    while t < last:
        bounds.append(t)
        t = t + step
    return [Interval(a, min(a + step, last)) for a in bounds]


def backfill_id(pipeline: str, found: Sequence[Interval]) -> str:
    """A stable id for a backfill of ``pipeline`` over these intervals."""
    text = "|".join([pipeline, *(f"{i.start.isoformat()}/{i.end.isoformat()}" for i in found)])
    return "bf-" + hashlib.sha256(text.encode()).hexdigest()[:12]


async def _latest_runs(store: RunStore, pipeline: str) -> dict[tuple[str, str], RunInfo]:
    """The latest run of ``pipeline`` per recorded interval."""
    latest: dict[tuple[str, str], RunInfo] = {}
    for run in await store.list_runs(pipeline=pipeline, limit=None):
        if run.interval is not None and run.interval not in latest:
            latest[run.interval] = run  # newest first: the first seen is the latest
    return latest


def _to_run(latest: RunInfo | None, rerun: Rerun) -> bool:
    if latest is None or rerun == "all":
        return True
    if latest.status in _UNFINISHED:
        return True
    return rerun == "failed" and latest.status is RunStatus.FAILED


async def backfill(
    pipeline: Pipeline,
    *,
    start: dt.datetime | dt.date | str,
    end: dt.datetime | dt.date | str,
    store: RunStore,
    every: str | dt.timedelta | None = None,
    cron: str | None = None,
    max_active: int = 1,
    rerun: Rerun = "missing",
    context: Mapping[str, Any] | None = None,
    on_event: Callable[[Event], Any] | None = None,
    on_run: Callable[[Interval, RunResult], Any] | None = None,
    on_start: Callable[[Sequence[Interval], Sequence[tuple[Interval, str]]], Any] | None = None,
    stop_cleanup: anyio.Event | None = None,
) -> BackfillResult:
    """Run ``pipeline`` once per interval of ``[start, end)`` (see the module's docs).

    ``on_start(to_run, skipped)`` is called once the plan is known, ``on_run``
    after each run. Cancelling the backfill cancels the runs in progress (they
    are recorded CANCELLED and run again next time) and re-raises.

    :raises BackfillError: (a ValueError) a bad range, duration, cron expression,
        ``max_active`` or ``rerun``.
    """
    if isinstance(max_active, bool) or not isinstance(max_active, int) or max_active < 1:
        raise BackfillError(f"max_active must be a whole number >= 1, got {max_active!r}")
    if rerun not in ("missing", "failed", "all"):
        raise BackfillError(f"rerun must be 'missing', 'failed' or 'all', got {rerun!r}")
    found = intervals(start, end, every=every, cron=cron)
    ident = backfill_id(pipeline.name, found)
    latest = await _latest_runs(store, pipeline.name)
    keys = {i: (i.start.isoformat(), i.end.isoformat()) for i in found}
    todo = [i for i in found if _to_run(latest.get(keys[i]), rerun)]
    skipped = tuple((i, latest[keys[i]].status.value) for i in found if i not in todo)
    if on_start is not None:
        on_start(todo, skipped)
    done: list[tuple[Interval, RunResult]] = []
    slots = anyio.Semaphore(max_active)

    async def one(interval: Interval) -> None:
        try:
            params = {**(context or {}), **interval.params(), "backfill_id": ident}
            result = await pipeline.run(
                params, store=store, on_event=on_event, stop_cleanup=stop_cleanup
            )
        finally:
            slots.release()
        done.append((interval, result))
        if on_run is not None:
            on_run(interval, result)

    try:
        async with anyio.create_task_group() as tg:
            for interval in todo:
                # A slot is taken before the run starts, so runs start oldest first.
                await slots.acquire()
                tg.start_soon(one, interval)
    except BaseExceptionGroup as group:
        # A run that could not start (its store failed, say) surfaces as itself.
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from None
        raise
    runs = tuple(sorted(done, key=lambda pair: pair[0]))
    failed = tuple(i for i, r in runs if r.status is not RunStatus.SUCCESS)
    return BackfillResult(ident, runs, skipped, failed)
