"""schedule_pipeline on a virtual clock: cron and interval fires, overlap policies, catch-up."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from dremioframe_async import Pipeline, task
from dremioframe_async.orchestration import RunFinished
from dremioframe_async.schedule import ScheduleError, _fire_times, schedule_pipeline
from dremioframe_async.store import MemoryStore

START = datetime(2024, 1, 1, 10, 2).astimezone().timestamp()


class FakeClock:
    """Virtual time: sleeping jumps straight to the deadline (plus ``overshoot``)."""

    def __init__(self, t: float, overshoot: float = 0.0) -> None:
        self.t, self.overshoot = t, overshoot

    def now(self) -> float:
        return self.t

    async def sleep_until(self, deadline: float) -> None:
        self.t = max(self.t, deadline + self.overshoot)
        await anyio.lowlevel.checkpoint()


class Probe:
    """A one-task pipeline noting each run's slot, its concurrency, and an optional gate."""

    def __init__(self, gated: bool = False) -> None:
        self.slots: list[float] = []
        self.active = self.peak = 0
        self.gate = anyio.Event()
        if not gated:
            self.gate.set()

        @task(name="job")
        async def job(context: Any) -> None:
            self.slots.append(context.params["slot"])
            self.active += 1
            self.peak = max(self.peak, self.active)
            await self.gate.wait()
            self.active -= 1

        self.pipeline = Pipeline("scheduled").add_task(job())

    @staticmethod
    def context(when: datetime) -> dict[str, float]:
        return {"slot": when.timestamp()}


async def until(predicate: Any) -> None:
    with anyio.fail_after(10):
        while not predicate():
            await anyio.lowlevel.checkpoint()


def test_cron_fire_times() -> None:
    fires = _fire_times(None, "*/5 * * * *", START)
    assert [next(fires) - START for _ in range(3)] == [180, 480, 780]


@pytest.mark.asyncio
async def test_cron_runs_at_its_fire_times() -> None:
    probe = Probe()
    clock = FakeClock(START)
    count = await schedule_pipeline(
        probe.pipeline,
        cron="*/5 * * * *",
        overlap="allow",  # virtual time outruns the runs: skip and queue would drop fires
        context=probe.context,
        max_runs=3,
        clock=clock,
    )
    assert count == 3
    assert [s - START for s in probe.slots] == [180, 480, 780]  # 10:05, 10:10, 10:15


@pytest.mark.asyncio
async def test_interval_on_the_real_clock_records_each_run() -> None:
    probe, store = Probe(), MemoryStore()
    finished: list[str] = []
    count = await schedule_pipeline(
        probe.pipeline,
        interval=0.01,
        store=store,
        context=probe.context,
        max_runs=3,
        on_event=lambda e: finished.append(e.status) if isinstance(e, RunFinished) else None,
    )
    runs = await store.list_runs(pipeline="scheduled")
    assert count == len(runs) == 3
    assert {r.status for r in runs} == {"SUCCESS"}
    assert finished == ["SUCCESS"] * 3
    assert probe.slots == sorted(probe.slots)


@pytest.mark.asyncio
async def test_skip_drops_fires_during_a_run() -> None:
    probe, clock = Probe(gated=True), FakeClock(START)
    async with anyio.create_task_group() as tg:
        tg.start_soon(
            lambda: schedule_pipeline(
                probe.pipeline, interval=10, context=probe.context, max_runs=2, clock=clock
            )
        )
        await until(lambda: clock.t >= START + 50)
        probe.gate.set()
    assert probe.peak == 1
    assert probe.slots[0] == START + 10
    assert probe.slots[1] > START + 50  # every fire in between was skipped


class SettlingClock(FakeClock):
    """Virtual time that moves on only once ``settled()`` holds (the scheduler caught up)."""

    def __init__(self, t: float, settled: Any) -> None:
        super().__init__(t)
        self.settled = settled

    async def sleep_until(self, deadline: float) -> None:
        await until(self.settled)
        await super().sleep_until(deadline)


@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
@pytest.mark.anyio
async def test_queue_keeps_at_most_one_pending_fire(caplog: pytest.LogCaptureFixture) -> None:
    probe = Probe(gated=True)
    # The first fire's run must have started before time moves on: otherwise the
    # scheduling order alone (trio varies it) could merge +10 into +20.
    clock = SettlingClock(START, lambda: clock.t == START or len(probe.slots) > 0)
    caplog.set_level("INFO", logger="dremioframe_async.schedule")
    async with anyio.create_task_group() as tg:
        tg.start_soon(
            lambda: schedule_pipeline(
                probe.pipeline,
                interval=10,
                overlap="queue",
                context=probe.context,
                max_runs=3,
                clock=clock,
            )
        )
        # Fires at +20, +30, +40, +50 come while the first run (+10) is held.
        await until(lambda: clock.t >= START + 50 and probe.active == 1)
        assert len(probe.slots) == 1
        probe.gate.set()
    assert probe.peak == 1
    first, second, third = (s - START for s in probe.slots)
    assert first == 10
    assert second >= 50  # +20, +30 and +40 merged into the one waiting fire
    assert third > second
    assert "merging the run due at" in caplog.text


@pytest.mark.asyncio
async def test_queue_runs_a_fire_that_waits_once_the_run_ends() -> None:
    probe, clock = Probe(gated=True), FakeClock(START)
    async with anyio.create_task_group() as tg:
        tg.start_soon(
            lambda: schedule_pipeline(
                probe.pipeline,
                interval=10,
                overlap="queue",
                context=probe.context,
                max_runs=2,
                clock=clock,
            )
        )
        await until(lambda: clock.t >= START + 20 and probe.active == 1)
        probe.gate.set()
    assert [s - START for s in probe.slots] == [10, 20]  # max_runs reached: nothing merged


@pytest.mark.asyncio
async def test_allow_overlaps_runs() -> None:
    probe, clock = Probe(gated=True), FakeClock(START)
    async with anyio.create_task_group() as tg:
        tg.start_soon(
            lambda: schedule_pipeline(
                probe.pipeline,
                interval=10,
                overlap="allow",
                context=probe.context,
                max_runs=3,
                clock=clock,
            )
        )
        await until(lambda: probe.active == 3)
        probe.gate.set()
    assert probe.peak == 3


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("catch_up", "expected"), [(False, [30]), (True, [10, 20, 30])], ids=["latest-only", "catch-up"]
)
async def test_missed_fires_after_waking_late(catch_up: bool, expected: list[int]) -> None:
    probe = Probe()
    clock = FakeClock(START, overshoot=25)  # the first wake-up comes at +35
    await schedule_pipeline(
        probe.pipeline,
        interval=10,
        overlap="allow",  # every missed fire runs (queue would merge them)
        catch_up=catch_up,
        context=probe.context,
        max_runs=len(expected),
        clock=clock,
    )
    assert [s - START for s in probe.slots] == expected


@pytest.mark.asyncio
async def test_catch_up_counts_from_the_latest_recorded_run() -> None:
    probe, store = Probe(), MemoryStore()
    first = await probe.pipeline.run({"slot": 0.0}, store=store)
    clock = FakeClock(first.started + 35)
    await schedule_pipeline(
        probe.pipeline,
        interval=10,
        overlap="allow",  # every missed fire runs (queue would merge them)
        catch_up=True,
        store=store,
        context=probe.context,
        max_runs=3,
        clock=clock,
    )
    # Interval fires are the multiples of the interval (aligned to the epoch).
    aligned = math.floor(first.started / 10) * 10
    assert probe.slots[1:] == [aligned + 10, aligned + 20, aligned + 30]
    assert len(await store.list_runs()) == 4


@pytest.mark.asyncio
async def test_cancelling_stops_the_schedule() -> None:
    probe = Probe()
    with anyio.CancelScope() as scope:
        await schedule_pipeline(
            probe.pipeline,
            interval=0.01,
            context=probe.context,
            on_event=lambda e: scope.cancel() if isinstance(e, RunFinished) else None,
        )
    assert scope.cancelled_caught
    assert len(probe.slots) == 1


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "exactly one"),
        ({"interval": 1, "cron": "* * * * *"}, "exactly one"),
        ({"interval": 0}, "positive"),
        ({"interval": 1, "overlap": "sometimes"}, "overlap"),
        ({"interval": 1, "max_runs": 0}, "max_runs"),
        ({"cron": "not a cron"}, "invalid cron"),
    ],
    ids=["none", "both", "zero-interval", "bad-overlap", "zero-runs", "bad-cron"],
)
async def test_bad_arguments(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        await schedule_pipeline(Probe().pipeline, **kwargs)


@pytest.mark.asyncio
async def test_real_clock_sleeps_until_its_deadline() -> None:
    from dremioframe_async.schedule import SystemClock

    clock = SystemClock()
    deadline = clock.now() + 0.05
    await clock.sleep_until(deadline)
    # A fire must not start before its slot (a few ms allow for clock granularity).
    assert clock.now() >= deadline - 0.005
    with anyio.fail_after(5):  # a deadline already past returns at once
        await clock.sleep_until(clock.now() - 3600)


@pytest.mark.asyncio
async def test_interval_seconds_is_an_alias_of_interval() -> None:
    # dremioframe.orchestration's keyword keeps working.
    probe = Probe()
    clock = FakeClock(START)
    runs = await schedule_pipeline(
        probe.pipeline,
        interval_seconds=10,
        context=probe.context,
        max_runs=2,
        clock=clock,
        overlap="allow",
    )
    assert runs == 2
    assert [s - probe.slots[0] for s in probe.slots] == [0, 10]
    with pytest.raises(ScheduleError, match="not both"):
        await schedule_pipeline(probe.pipeline, interval=1, interval_seconds=1)
