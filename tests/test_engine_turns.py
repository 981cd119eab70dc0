"""A run starts a bounded number of tasks per turn of the loop (asyncio).

When many tasks' waits end together while more tasks are ready, each of their
runners would take the next task in the same turn: the longer that turn, the more
waits end in it and the longer the next. At most ``TURN_SHARE`` runners go on per
turn; the others wait their turn, first come, first served. trio has no turn to
count (``_backend.next_turn_function``): its runs are as before.
"""

from __future__ import annotations

import asyncio
from collections import Counter

import anyio
import pytest

from dremioframe_async.orchestration import Pipeline, Task
from dremioframe_async.orchestration._runner import TURN_SHARE, YIELD_INTERVAL

pytestmark = pytest.mark.anyio

WAVE = 600  # tasks whose waits end in one turn, with as many ready behind them


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # the share counts asyncio's turns


class Turns:
    """Counts the loop's turns (one ``sleep(0)`` a turn) and which turn each task
    of the second wave started in."""

    def __init__(self) -> None:
        self.turn = 0
        self.starts: Counter[int] = Counter()
        self.done = False

    async def tick(self) -> None:
        while not self.done:
            self.turn += 1
            await asyncio.sleep(0)


def _two_waves(turns: Turns, release: anyio.Event, on_start: object = None) -> Pipeline:
    """WAVE tasks wait for ``release``; WAVE more are ready behind them (the run's
    concurrency is WAVE), and start as the first ones end."""

    async def first() -> None:
        await release.wait()

    async def second() -> None:
        turns.starts[turns.turn] += 1
        if callable(on_start):
            on_start()
        # A task that waits (longer than a runner goes between yields), so that each
        # runner starts one in a turn.
        await anyio.sleep(2 * YIELD_INTERVAL)

    pipeline = Pipeline("turns", max_concurrency=WAVE)
    for i in range(WAVE):
        pipeline.add_task(Task(f"a{i}", first))
    for i in range(WAVE):
        pipeline.add_task(Task(f"b{i}", second))
    return pipeline


async def test_tasks_start_at_most_a_share_per_turn_when_many_waits_end_at_once() -> None:
    turns, release = Turns(), anyio.Event()
    pipeline = _two_waves(turns, release)

    async with anyio.create_task_group() as tg:

        async def run() -> None:
            result = await pipeline.run()
            assert result.status == "SUCCESS"
            turns.done = True

        tg.start_soon(run)
        await anyio.wait_all_tasks_blocked()  # the first wave waits for ``release``
        tg.start_soon(turns.tick)
        release.set()
    assert sum(turns.starts.values()) == WAVE  # every task of the second wave ran
    # The runners let go by the last turn, and those counted in this one.
    assert max(turns.starts.values()) <= 2 * TURN_SHARE < WAVE


async def test_a_run_cancelled_while_runners_wait_their_turn_ends_at_once() -> None:
    turns, release = Turns(), anyio.Event()
    with anyio.CancelScope() as scope:
        pipeline = _two_waves(turns, release, on_start=scope.cancel)
        async with anyio.create_task_group() as tg:

            async def let_go() -> None:
                await anyio.wait_all_tasks_blocked()  # the first wave waits
                tg.start_soon(turns.tick)
                release.set()

            tg.start_soon(let_go)
            with anyio.fail_after(10):
                try:
                    await pipeline.run()
                finally:
                    turns.done = True
    assert scope.cancelled_caught
    # The first start of the second wave cancelled the run: the runners waiting for
    # their turn did not go on to start the rest.
    assert sum(turns.starts.values()) <= 2 * TURN_SHARE
