"""A run waits for its store when the events it made pile up (``BACKLOG_LIMIT``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import anyio
import pytest
from anyio import wait_all_tasks_blocked
from anyio.lowlevel import checkpoint

from dremioframe_async.orchestration import Pipeline, Task, _dispatch
from dremioframe_async.store import MemoryStore

pytestmark = pytest.mark.anyio

WIDTH = 3000
LIMIT = 200


class HeldStore(MemoryStore):
    """A MemoryStore whose writes wait, after the run's start, until released."""

    takes_task_records: Literal[True] = True

    def __init__(self) -> None:
        super().__init__()
        self.release = anyio.Event()
        self.held = anyio.Event()
        self.batches = 0

    async def record(self, events: Sequence[Any]) -> None:
        self.batches += 1
        if self.batches > 1:  # the first is the run's start, which the run awaits
            self.held.set()
            await self.release.wait()
        await super().record(events)


async def test_the_runners_wait_while_the_store_has_not_taken_the_backlog(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_dispatch, "BACKLOG_LIMIT", LIMIT)
    ran = 0

    async def count() -> None:
        nonlocal ran
        ran += 1
        await checkpoint()  # each task yields: the runners see the backlog often

    root = Task("root", count)
    for i in range(WIDTH):
        root >> Task(f"t{i}", count)
    store = HeldStore()
    result = None

    async def run() -> None:
        nonlocal result
        result = await Pipeline("backlog").add_task(root).run(store=store)

    async with anyio.create_task_group() as tg:
        tg.start_soon(run)
        await store.held.wait()
        await wait_all_tasks_blocked()
        # The store holds one batch; the runners stopped once the next one was full.
        assert ran < WIDTH / 2
        store.release.set()
    assert result is not None
    assert result.status == "SUCCESS"
    assert ran == WIDTH + 1
    runs = await store.list_runs()
    tasks = await store.get_tasks(runs[0].run_id)
    assert len(tasks) == WIDTH + 1
    assert {t.state.value for t in tasks} == {"SUCCESS"}


async def test_a_listener_that_waits_for_a_later_task_is_not_waited_for(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The listener waits for the last task; had the runners waited for the
    # listener's backlog, the last task would never run.
    monkeypatch.setattr(_dispatch, "BACKLOG_LIMIT", LIMIT)
    gate = anyio.Event()

    async def work() -> None:
        await checkpoint()

    async def last() -> None:
        gate.set()

    async def listener(event: object) -> None:
        await gate.wait()

    root, end = Task("root", work), Task("last", last)
    for i in range(WIDTH):
        root >> Task(f"t{i}", work) >> end
    with anyio.fail_after(30):
        result = await Pipeline("listened").add_task(root).run(on_event=listener)
    assert result.status == "SUCCESS"


async def test_a_cancelled_runs_cleanup_does_not_wait_for_a_stuck_store(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_dispatch, "BACKLOG_LIMIT", LIMIT)
    monkeypatch.setattr(_dispatch, "DRAIN_BOUND_ON_CANCEL", 0.5)  # the stuck store's bound
    cleaned = 0
    started = anyio.Event()

    async def work() -> None:
        started.set()
        await anyio.sleep_forever()

    async def cleanup() -> None:
        nonlocal cleaned
        cleaned += 1
        await checkpoint()

    root = Task("root", work)
    for i in range(WIDTH):
        root >> Task(f"clean{i}", cleanup, trigger_rule="all_done")
    store = HeldStore()  # never released: the store takes the start, then hangs
    pipeline = Pipeline("stuck", cleanup_grace=30).add_task(root)
    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:

            async def run() -> None:
                await pipeline.run(store=store)

            tg.start_soon(run)
            await started.wait()
            await store.held.wait()
            tg.cancel_scope.cancel()
    assert cleaned == WIDTH  # every cleanup ran, none waited for the store's backlog


async def test_a_start_cancelled_while_the_pump_holds_the_lock_is_recorded_with_its_end() -> None:
    # The lock a run's start takes can be held (by the pump, delivering): a start
    # cancelled while it waited there went out with the pump's next batch, and no end
    # ever followed it, so the run stayed RUNNING.
    import time

    from dremioframe_async.orchestration import RunStarted

    store = MemoryStore()
    async with _dispatch.dispatching((), store) as dispatcher:
        assert dispatcher.emit is not None
        assert dispatcher.flush is not None
        release = anyio.Event()
        async with anyio.create_task_group() as tg:

            async def hold_the_lock() -> None:
                async with dispatcher._lock:
                    await release.wait()

            tg.start_soon(hold_the_lock)
            await wait_all_tasks_blocked()
            dispatcher.emit(RunStarted("held", "p", time.time(), {}, ()))
            with anyio.CancelScope() as scope:
                tg.start_soon(lambda: _cancel_once_blocked(scope))
                await dispatcher.flush()
            assert scope.cancelled_caught  # the cancellation is not held up by the lock
            release.set()
    run = await store.get_run("held")
    assert run.status.value == "CANCELLED"


async def _cancel_once_blocked(scope: anyio.CancelScope) -> None:
    await wait_all_tasks_blocked()
    scope.cancel()
