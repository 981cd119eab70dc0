"""Paused schedules, on every store: a pause written through one handle of a store holds
for a scheduler reading another (another process, another host), until it is lifted."""

from __future__ import annotations

from collections.abc import Callable

import _store_fixtures
import anyio
import pytest
from _store_fixtures import StoreFactory

from dremioframe_async import Pipeline, task
from dremioframe_async.schedule import Schedule, queue_fires, schedule_pipeline
from dremioframe_async.store import RunStore, SchedulePauses

store_factory = _store_fixtures.store_factory
store = _store_fixtures.store
T0 = 1_800_000_000.0


class SteppedClock:
    """Virtual time that moves only when the test steps it to the next fire."""

    def __init__(self, t: float) -> None:
        self.t = t
        self.sleeping_until: float | None = None
        self._changed = anyio.Event()

    def now(self) -> float:
        return self.t

    def _poke(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    async def _until(self, done: Callable[[], bool]) -> None:
        while not done():
            await self._changed.wait()

    async def sleep_until(self, deadline: float) -> None:
        self.sleeping_until = deadline
        self._poke()
        await self._until(lambda: self.t >= deadline)

    async def step(self) -> float:
        """Move to the fire the scheduler waits for; return it once the scheduler is done
        with it (it waits for the next one)."""
        await self._until(lambda: (self.sleeping_until or 0.0) > self.t)
        fire = self.t = self.sleeping_until or 0.0
        self._poke()
        await self._until(lambda: (self.sleeping_until or 0.0) > fire)
        return fire


def pipeline() -> Pipeline:
    @task(name="tick")
    async def tick() -> None:
        return None

    return Pipeline("ticks").add_task(tick())


async def fires(store: RunStore) -> list[float]:
    return sorted(r.scheduled_for or 0.0 for r in await store.list_runs(pipeline="ticks"))


@pytest.mark.asyncio
async def test_pausing_is_kept_in_the_store(store_factory: StoreFactory) -> None:
    one, two = store_factory(), store_factory()
    assert isinstance(one, SchedulePauses)
    assert isinstance(two, SchedulePauses)
    assert await one.paused_schedules() == {}
    assert await one.pause_schedule("etl") is True
    since = (await two.paused_schedules())["etl"]
    assert await two.pause_schedule("etl") is False  # already paused: kept as it was
    assert await one.paused_schedules() == {"etl": since}
    assert await two.pause_schedule("etl", paused=False) is True
    assert await one.paused_schedules() == {}
    assert await one.pause_schedule("etl", paused=False) is False


@pytest.mark.asyncio
async def test_queued_fires_skip_a_paused_schedule(store_factory: StoreFactory) -> None:
    operator, scheduler = store_factory(), store_factory()  # two handles: two processes
    assert isinstance(operator, SchedulePauses)
    clock = SteppedClock(T0 + 0.5)
    schedule = Schedule(pipeline(), interval=60)
    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            tg.start_soon(queue_fires, schedule, scheduler, clock)
            first = await clock.step()
            await operator.pause_schedule("ticks")
            paused = await clock.step()
            await operator.pause_schedule("ticks", paused=False)
            third = await clock.step()
            tg.cancel_scope.cancel()
    assert paused == first + 60
    assert await fires(operator) == [first, third]  # nothing queued while paused


class InstantClock:
    """Virtual time: sleeping jumps straight to the deadline."""

    def __init__(self, t: float) -> None:
        self.t = t

    def now(self) -> float:
        return self.t

    async def sleep_until(self, deadline: float) -> None:
        self.t = max(self.t, deadline)
        await anyio.lowlevel.checkpoint()


@pytest.mark.asyncio
async def test_schedule_pipeline_skips_a_paused_schedule(store: RunStore) -> None:
    assert isinstance(store, SchedulePauses)
    clock = InstantClock(T0 + 0.5)
    await store.pause_schedule("ticks")
    with anyio.fail_after(20):
        # max_runs=1 returns once the fire's run (here: its skip) is over.
        await schedule_pipeline(pipeline(), interval=60, store=store, clock=clock, max_runs=1)
        assert await fires(store) == []
        await store.pause_schedule("ticks", paused=False)
        await schedule_pipeline(pipeline(), interval=60, store=store, clock=clock, max_runs=1)
    assert await fires(store) == [T0 + 120]
