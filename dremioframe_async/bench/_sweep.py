"""``sweep``: run any async callable at growing concurrency and measure each step."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio

from ._results import Latency, Machine, Outcome, Step, Sweep

__all__ = ["Progress", "Work", "sweep"]

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


@dataclass(frozen=True, slots=True)
class _Plan:
    duration: float | None
    queries: int | None
    warmup: float
    label: str
    on_progress: Callable[[Progress], object] | None
    interval: float


@dataclass(slots=True)
class _Tally:
    """Everything one step records; mutated only by the step's own tasks."""

    started: float
    tickets: int | None = None
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
    def now(cls, tickets: int | None) -> _Tally:
        started = time.monotonic()
        return cls(started, tickets, last=started)

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

    def fail(self, exc: Exception) -> None:
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

    :raises ValueError: no concurrency, a concurrency below 1, or not exactly one
        of ``duration`` and ``queries`` (positive); a negative ``warmup``.
    """
    plan = _plan(concurrency, duration, queries, warmup, label, on_progress, progress_interval)
    machine = Machine.current()
    steps = [await _step(work, c, plan) for c in concurrency]
    return Sweep(label, tuple(steps), machine, Machine.current(), warmup, duration, queries)


def _plan(
    concurrency: Sequence[int],
    duration: float | None,
    queries: int | None,
    warmup: float,
    label: str,
    on_progress: Callable[[Progress], object] | None,
    interval: float,
) -> _Plan:
    if not concurrency or any(int(c) != c or c < 1 for c in concurrency):
        raise ValueError(f"concurrency must be whole numbers of at least 1, not {concurrency!r}")
    if (duration is None) == (queries is None):
        raise ValueError("give exactly one of duration= (seconds) and queries= (a count)")
    if duration is not None and not duration > 0:
        raise ValueError(f"duration must be positive, not {duration!r}")
    if queries is not None and queries < 1:
        raise ValueError(f"queries must be at least 1, not {queries!r}")
    if not warmup >= 0:
        raise ValueError(f"warmup must be zero or more seconds, not {warmup!r}")
    return _Plan(duration, queries, warmup, label, on_progress, max(interval, 0.01))


async def _step(work: Work, concurrency: int, plan: _Plan) -> Step:
    if plan.warmup > 0:
        await _run(work, concurrency, plan, _Tally.now(None), plan.warmup, warm=True)
    tally = _Tally.now(plan.queries)
    await _run(work, concurrency, plan, tally, plan.duration, warm=False)
    return tally.step(concurrency, time.monotonic())


async def _run(
    work: Work, concurrency: int, plan: _Plan, tally: _Tally, seconds: float | None, *, warm: bool
) -> None:
    deadline = None if seconds is None else tally.started + seconds

    def keep_going() -> bool:
        if deadline is not None and time.monotonic() >= deadline:
            return False
        return tally.take_ticket()

    async with anyio.create_task_group() as outer:
        if plan.on_progress is not None:
            outer.start_soon(_ticker, plan, concurrency, tally, warm)
        async with anyio.create_task_group() as callers:
            for _ in range(concurrency):
                callers.start_soon(_caller, work, tally, keep_going)
        outer.cancel_scope.cancel()
    if plan.on_progress is not None:
        plan.on_progress(_progress(plan, concurrency, tally, warm, done=True))


async def _caller(work: Work, tally: _Tally, keep_going: Callable[[], bool]) -> None:
    while keep_going():
        start = time.monotonic()
        tally.enter(start)
        try:
            result = await work()
        except Exception as exc:  # counted and flagged on the step, never averaged away
            tally.leave(time.monotonic())
            tally.fail(exc)
        else:
            end = time.monotonic()
            tally.leave(end)
            tally.succeed(end - start, _outcome(result))


def _outcome(result: Any) -> Outcome:
    if isinstance(result, Outcome):
        return result
    rows, nbytes = getattr(result, "num_rows", None), getattr(result, "nbytes", None)
    if isinstance(rows, int) and isinstance(nbytes, int):
        return Outcome(rows, nbytes)
    return Outcome()


async def _ticker(plan: _Plan, concurrency: int, tally: _Tally, warm: bool) -> None:
    assert plan.on_progress is not None
    while True:
        await anyio.sleep(plan.interval)
        plan.on_progress(_progress(plan, concurrency, tally, warm))


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
