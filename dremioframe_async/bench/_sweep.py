"""``sweep``: run any async callable at growing concurrency and measure each step."""

from __future__ import annotations

import logging
import math
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio

from ._results import Latency, Machine, Outcome, Step, Sweep

__all__ = ["CUT", "DRAIN", "MIN_DRAIN", "NOT_YIELDING", "Progress", "Work", "sweep"]

logger = logging.getLogger("dremioframe_async.bench")

CUT = "StepTimeout"
"""The error name for a call still running when its step's time was up (it is cancelled)."""
DRAIN = 0.1
MIN_DRAIN = 1.0
"""At a step's end no call starts. Calls in flight may still finish for the longest of
``DRAIN`` times the duration, ``MIN_DRAIN`` seconds, and twice the slowest call the step
completed (never longer than the duration itself); then they are cancelled. Healthy
calls of any length finish; a hung server costs the step that much, not more."""
NOT_YIELDING = "NotYielding"
"""The error name for a call that ran on past its step's end without ever yielding to the
event loop (blocking code in an async function), so that it could not be cancelled."""
# A call that ends within this long after its step's end merely raced the cut.
_GRACE = 0.1

Work = Callable[[], Awaitable[Any]]
"""The benchmarked call: returns an :class:`Outcome`, a table (``num_rows``/``nbytes``)
or anything else (counted as a query without rows)."""


@dataclass(frozen=True, slots=True)
class Progress:
    """A live view of the running step, handed to ``on_progress``."""

    label: str
    concurrency: int
    warmup: bool
    elapsed: float
    queries: int
    errors: int
    done: bool = False


@dataclass(slots=True)
class _Plan:
    duration: float | None
    queries: int | None
    warmup: float
    label: str
    on_progress: Callable[[Progress], object] | None
    interval: float

    def report(self, progress: Progress) -> None:
        """Hand ``progress`` to ``on_progress``; one that fails is logged and dropped,
        so that a broken display cannot lose the figures."""
        if self.on_progress is None:
            return
        try:
            self.on_progress(progress)
        except Exception:
            logger.warning("on_progress failed; the sweep goes on without it", exc_info=True)
            self.on_progress = None


@dataclass(slots=True)
class _Tally:
    """Everything one step records; mutated only by the step's own tasks."""

    started: float
    tickets: int | None = None
    seconds: float | None = None
    deadline: float | None = None  # no call starts from then on
    cut_at: float | None = None  # calls still running then are cancelled (fixed at deadline)
    latencies: list[float] = field(default_factory=list)
    phases: dict[str, list[float]] = field(default_factory=dict)
    errors: Counter[str] = field(default_factory=Counter)
    examples: dict[str, str] = field(default_factory=dict)  # the first message per type
    rows: int = 0
    bytes: int = 0
    in_flight: int = 0
    peak: int = 0
    area: float = 0.0  # integral of calls in flight over time
    last: float = 0.0

    @classmethod
    def now(cls, tickets: int | None, seconds: float | None) -> _Tally:
        started = time.monotonic()
        deadline = None if seconds is None else started + seconds
        return cls(started, tickets, seconds, deadline, last=started)

    def fix_cut(self) -> float:
        """When calls still running are cancelled: fixed once the step's time is up."""
        assert self.deadline is not None
        assert self.seconds is not None
        if self.cut_at is None:
            slowest = 2 * max(self.latencies, default=0.0)
            drain = max(DRAIN * self.seconds, MIN_DRAIN, slowest)
            self.cut_at = self.deadline + min(drain, max(self.seconds, MIN_DRAIN))
        return self.cut_at

    def on_time(self, now: float) -> bool:
        """Whether a call may still start at ``now``."""
        return self.deadline is None or now < self.deadline

    def late(self, end: float) -> str | None:
        """The error name for a call that ended at ``end``, after the cut (else None)."""
        if self.deadline is None or end < self.deadline or end < (cut := self.fix_cut()):
            return None
        return NOT_YIELDING if end > cut + _GRACE else CUT

    def take_ticket(self) -> bool:
        if self.tickets is None:
            return True
        if self.tickets <= 0:
            return False
        self.tickets -= 1
        return True

    def _account(self, now: float) -> None:
        self.area += self.in_flight * (now - self.last)
        self.last = now

    def enter(self, now: float) -> None:
        self._account(now)
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)

    def leave(self, now: float) -> None:
        self._account(now)
        self.in_flight -= 1

    def fail(self, exc: Exception, late: str | None = None) -> None:
        """Count a failed call: by its lateness (past the step's end), else by its type."""
        if late is not None:
            self.errors[late] += 1
            return
        name = type(exc).__name__
        self.errors[name] += 1
        self.examples.setdefault(name, " ".join(str(exc).split()) or "(no message)")

    def succeed(self, seconds: float, outcome: Outcome) -> None:
        self.latencies.append(seconds)
        self.rows += outcome.rows
        self.bytes += outcome.bytes
        for name, value in outcome.phases.items():
            self.phases.setdefault(name, []).append(value)

    def step(self, concurrency: int, ended: float) -> Step:
        if self.cut_at is not None:  # the cleanup of cut calls is not measured
            ended = min(ended, self.cut_at)
        self._account(ended)
        seconds = max(ended - self.started, 1e-9)
        queries = len(self.latencies)
        return Step(
            concurrency=concurrency,
            queries=queries,
            seconds=seconds,
            queries_per_s=queries / seconds,
            rows_per_s=self.rows / seconds,
            mb_per_s=self.bytes / 1e6 / seconds,
            latency=Latency.of(self.latencies),
            phases={name: Latency.of(values) for name, values in self.phases.items()},
            errors=dict(sorted(self.errors.items())),
            error_examples=dict(sorted(self.examples.items())),
            measured_concurrency=self.area / seconds,
            peak_concurrency=self.peak,
            rows=self.rows,
            bytes=self.bytes,
        )


async def sweep(
    work: Work,
    *,
    concurrency: Sequence[int],
    duration: float | None = None,
    queries: int | None = None,
    warmup: float = 0.0,
    label: str = "",
    on_progress: Callable[[Progress], object] | None = None,
    progress_interval: float = 0.5,
) -> Sweep:
    """Run ``work`` at each concurrency in turn and measure every step.

    At each step, ``concurrency`` callers call ``work`` back to back (a closed
    loop) for ``duration`` seconds, or until ``queries`` calls have started. A
    call that raises an ``Exception`` is counted by type and flags its step;
    cancellation is never caught. Before each step, ``warmup`` seconds of calls at
    the same concurrency run unmeasured. Clocks are monotonic; the machine's CPU
    count and load average are recorded before and after. ``on_progress`` gets a
    :class:`Progress` every ``progress_interval`` seconds and when a step ends.

    ``work`` returns an :class:`Outcome` (rows, bytes, phase timings), an object
    with ``num_rows`` and ``nbytes`` (a pyarrow table), or anything else.

    With ``duration``, each step (and its warm-up) ends on time: no call starts
    after ``duration``, and calls still running a while later (:data:`MIN_DRAIN`)
    are cancelled and counted as ``StepTimeout`` errors of that step;
    a call that runs on past the end without ever yielding to the event loop
    (blocking code in an async function) is counted as ``NotYielding``. With
    ``queries`` a step lasts as long as its calls do. An ``on_progress`` that raises
    is logged and dropped; a ``KeyboardInterrupt`` in ``work`` comes out as itself.

    :raises ValueError: no concurrency, a concurrency that is not a whole number
        of at least 1, or not exactly one of ``duration`` (finite seconds) and
        ``queries`` (a whole number), both positive; a ``warmup`` that is negative
        or not finite.
    """
    plan = _plan(concurrency, duration, queries, warmup, label, on_progress, progress_interval)
    machine = Machine.current()
    steps = [await _step(work, c, plan) for c in concurrency]
    return Sweep(label, tuple(steps), machine, Machine.current(), warmup, duration, queries)


def _whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _plan(
    concurrency: Sequence[int],
    duration: float | None,
    queries: int | None,
    warmup: float,
    label: str,
    on_progress: Callable[[Progress], object] | None,
    interval: float,
) -> _Plan:
    if not concurrency or any(not _whole(c) or c < 1 for c in concurrency):
        raise ValueError(f"concurrency must be whole numbers of at least 1, not {concurrency!r}")
    if (duration is None) == (queries is None):
        raise ValueError("give exactly one of duration= (seconds) and queries= (a count)")
    if duration is not None and not 0 < duration < math.inf:
        raise ValueError(f"duration must be a positive, finite number of seconds, not {duration!r}")
    if queries is not None and (not _whole(queries) or queries < 1):
        raise ValueError(f"queries must be a whole number of at least 1, not {queries!r}")
    if not 0 <= warmup < math.inf:
        raise ValueError(f"warmup must be a finite number of seconds, zero or more, not {warmup!r}")
    return _Plan(duration, queries, warmup, label, on_progress, max(interval, 0.01))


async def _step(work: Work, concurrency: int, plan: _Plan) -> Step:
    if plan.warmup > 0:
        await _run(work, concurrency, plan, _Tally.now(None, plan.warmup), warm=True)
    tally = _Tally.now(plan.queries, plan.duration)
    await _run(work, concurrency, plan, tally, warm=False)
    return tally.step(concurrency, time.monotonic())


async def _run(work: Work, concurrency: int, plan: _Plan, tally: _Tally, *, warm: bool) -> None:
    try:
        async with anyio.create_task_group() as outer:
            if plan.on_progress is not None:
                outer.start_soon(_ticker, plan, concurrency, tally, warm)
            with anyio.CancelScope() as cut:
                if tally.deadline is not None:  # the step ends on time, hung calls or not
                    outer.start_soon(_cut_when_due, tally, cut)
                async with anyio.create_task_group() as callers:
                    for _ in range(concurrency):
                        callers.start_soon(_caller, work, tally)
            outer.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        _raise_interrupt(group)
        raise
    plan.report(_progress(plan, concurrency, tally, warm, done=True))


async def _cut_when_due(tally: _Tally, cut: anyio.CancelScope) -> None:
    assert tally.deadline is not None
    await anyio.sleep(max(tally.deadline - time.monotonic(), 0.0))
    cut.deadline = anyio.current_time() + max(tally.fix_cut() - time.monotonic(), 0.0)


def _raise_interrupt(group: BaseExceptionGroup[BaseException]) -> None:
    """Raise a KeyboardInterrupt or SystemExit found in ``group`` as itself."""
    interrupts, _ = group.split((KeyboardInterrupt, SystemExit))
    while interrupts is not None:
        first = interrupts.exceptions[0]
        if not isinstance(first, BaseExceptionGroup):
            raise first from None
        interrupts = first


async def _caller(work: Work, tally: _Tally) -> None:
    while tally.on_time(time.monotonic()) and tally.take_ticket():
        start = time.monotonic()
        tally.enter(start)
        try:
            result = await work()
        except anyio.get_cancelled_exc_class():
            # The step's end (or the sweep's cancellation): counted, never swallowed.
            tally.leave(time.monotonic())
            tally.errors[CUT] += 1
            raise
        except Exception as exc:  # counted and flagged on the step, never averaged away
            end = time.monotonic()
            tally.leave(end)
            tally.fail(exc, tally.late(end))
        else:
            end = time.monotonic()
            tally.leave(end)
            late = tally.late(end)
            if late is None:
                tally.succeed(end - start, _outcome(result))
            else:
                tally.errors[late] += 1


def _outcome(result: Any) -> Outcome:
    if isinstance(result, Outcome):
        return result
    rows, nbytes = getattr(result, "num_rows", None), getattr(result, "nbytes", None)
    if isinstance(rows, int) and isinstance(nbytes, int):
        return Outcome(rows, nbytes)
    return Outcome()


async def _ticker(plan: _Plan, concurrency: int, tally: _Tally, warm: bool) -> None:
    while plan.on_progress is not None:
        await anyio.sleep(plan.interval)
        plan.report(_progress(plan, concurrency, tally, warm))


def _progress(
    plan: _Plan, concurrency: int, tally: _Tally, warm: bool, *, done: bool = False
) -> Progress:
    return Progress(
        plan.label,
        concurrency,
        warm,
        time.monotonic() - tally.started,
        len(tally.latencies),
        sum(tally.errors.values()),
        done,
    )
