"""Graceful cancellation and cleanup tasks in resumed runs, on asyncio and trio.

A cancelled run cancels its running tasks, then still runs its ``all_done`` and
``always`` tasks whose upstream tasks have all ended: shielded, within the
pipeline's ``cleanup_grace``, until a second cancellation (``stop_cleanup``).
Ordering uses anyio Events; ``fail_after(GUARD)`` is only a liveness bound.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import pytest

from dremioframe_async import Pipeline, RunFinished, TaskState, task
from dremioframe_async.orchestration import ArgumentError, Event, TaskStateChanged
from dremioframe_async.store import MemoryStore

pytestmark = pytest.mark.anyio

GUARD = 10  # seconds; a liveness bound only
_S = TaskState


class Recorder:
    def __init__(self) -> None:
        self.events: list[Event] = []

    def __call__(self, event: Event) -> None:
        self.events.append(event)

    def final(self) -> dict[str, TaskState]:
        return {
            e.key: e.state
            for e in self.events
            if isinstance(e, TaskStateChanged) and e.state is not _S.RUNNING
        }

    def reasons(self) -> dict[str, str]:
        return {e.key: e.reason for e in self.events if isinstance(e, TaskStateChanged)}

    def order(self) -> list[tuple[str, TaskState]]:
        return [(e.key, e.state) for e in self.events if isinstance(e, TaskStateChanged)]

    def status(self) -> str:
        last = self.events[-1]
        assert isinstance(last, RunFinished)
        return last.status


class CancelledRun:
    """Runs a pipeline under its own cancel scope, so the test can cancel it and go on."""

    def __init__(self) -> None:
        self.scope = anyio.CancelScope()
        self.stop = anyio.Event()
        self.returned: list[Any] = []
        self.reraised = False
        self.ended = anyio.Event()

    async def run(self, pipeline: Pipeline, **kwargs: Any) -> None:
        try:
            with self.scope:
                try:
                    self.returned.append(await pipeline.run(stop_cleanup=self.stop, **kwargs))
                except anyio.get_cancelled_exc_class():
                    self.reraised = True
                    raise
        finally:
            self.ended.set()


async def drive(
    pipeline: Pipeline, started: anyio.Event, then: Callable[[CancelledRun], Awaitable[None]]
) -> tuple[CancelledRun, Recorder]:
    """Run ``pipeline``, cancel it once ``started`` is set, then let ``then`` act."""
    rec, driver = Recorder(), CancelledRun()
    with anyio.fail_after(2 * GUARD):
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: driver.run(pipeline, on_event=rec))
            await started.wait()
            driver.scope.cancel()
            await then(driver)
            await driver.ended.wait()
    assert driver.reraised, "run() must re-raise the caller's cancellation"
    assert driver.returned == []
    return driver, rec


async def nothing(driver: CancelledRun) -> None:
    pass


async def test_cancel_runs_all_done_cleanup_shielded_and_still_reraises() -> None:
    started, cleanup_started, release = anyio.Event(), anyio.Event(), anyio.Event()
    ran: list[str] = []

    @task(name="work")
    async def work() -> None:
        started.set()
        await anyio.sleep_forever()

    @task(name="load")
    async def load() -> None:
        ran.append("load")

    @task(name="alert", trigger_rule="one_failed")
    async def alert() -> None:
        ran.append("alert")

    @task(name="cleanup", trigger_rule="all_done")
    async def cleanup() -> None:
        cleanup_started.set()
        await release.wait()  # would raise at once if the cleanup were not shielded
        ran.append("cleanup")

    w, ld, al, cl = work(), load(), alert(), cleanup()
    w >> ld >> cl
    w >> al >> cl

    async def let_cleanup_finish(driver: CancelledRun) -> None:
        await cleanup_started.wait()
        release.set()

    _, rec = await drive(Pipeline("p").add_task(w), started, let_cleanup_finish)
    assert ran == ["cleanup"]
    assert rec.final() == {
        "work": _S.CANCELLED,
        "load": _S.CANCELLED,
        "alert": _S.CANCELLED,  # an alert is not cleanup: a cancellation is not a failure
        "cleanup": _S.SUCCESS,
    }
    order = rec.order()
    assert order.index(("cleanup", _S.RUNNING)) > order.index(("load", _S.CANCELLED))
    assert rec.status() == "CANCELLED"


async def test_cleanup_tasks_keep_the_graph_order_while_winding_down() -> None:
    started = anyio.Event()
    ran: list[str] = []

    @task(name="work")
    async def work() -> None:
        started.set()
        await anyio.sleep_forever()

    def cleanup(name: str) -> Any:
        @task(name=name, trigger_rule="all_done")
        async def body() -> None:
            ran.append(f"{name} start")
            for _ in range(3):
                await anyio.lowlevel.checkpoint()  # give a wrongly concurrent one a chance
            ran.append(f"{name} end")

        return body()

    @task(name="between")
    async def between() -> None:
        ran.append("between")

    # "between" waits for "work" (cancelled) and "first" (cleanup): it must not be
    # settled before "first" ends, or "second" would start alongside "first".
    w, first, mid, second = work(), cleanup("first"), between(), cleanup("second")
    w >> first >> mid >> second
    w >> mid
    _, rec = await drive(Pipeline("p").add_task(w), started, nothing)
    assert ran == ["first start", "first end", "second start", "second end"]
    assert rec.final() == {
        "work": _S.CANCELLED,
        "first": _S.SUCCESS,
        "between": _S.CANCELLED,
        "second": _S.SUCCESS,
    }


async def test_second_cancellation_ends_the_cleanup() -> None:
    started, cleanup_started = anyio.Event(), anyio.Event()
    finally_ran: list[str] = []

    @task(name="work")
    async def work() -> None:
        started.set()
        await anyio.sleep_forever()

    @task(name="cleanup", trigger_rule="all_done")
    async def cleanup() -> None:
        cleanup_started.set()
        try:
            await anyio.sleep(GUARD)  # bounded: an engine that ignores the stop fails, not hangs
        finally:
            finally_ran.append("cleanup")

    w = work()
    w >> cleanup()

    async def cancel_again(driver: CancelledRun) -> None:
        await cleanup_started.wait()
        driver.stop.set()

    pipeline = Pipeline("p", cleanup_grace=3600).add_task(w)
    _, rec = await drive(pipeline, started, cancel_again)
    assert finally_ran == ["cleanup"]
    assert rec.final()["cleanup"] is _S.CANCELLED
    assert "second cancellation" in rec.reasons()["cleanup"]
    assert rec.status() == "CANCELLED"


async def test_cleanup_grace_bounds_the_cleanup() -> None:
    started = anyio.Event()

    @task(name="work")
    async def work() -> None:
        started.set()
        await anyio.sleep_forever()

    @task(name="cleanup", trigger_rule="all_done")
    async def cleanup() -> None:
        await anyio.sleep(GUARD)  # bounded: an engine that ignores the grace fails, not hangs

    w = work()
    w >> cleanup()
    pipeline = Pipeline("p", cleanup_grace=0.2).add_task(w)
    _, rec = await drive(pipeline, started, nothing)  # ends only because the grace runs out
    assert rec.final()["cleanup"] is _S.CANCELLED
    assert "cleanup_grace (0.2s) ran out" in rec.reasons()["cleanup"]


async def test_zero_grace_runs_no_cleanup() -> None:
    started = anyio.Event()
    ran: list[str] = []

    @task(name="work")
    async def work() -> None:
        started.set()
        await anyio.sleep_forever()

    @task(name="cleanup", trigger_rule="all_done")
    async def cleanup() -> None:
        ran.append("cleanup")

    w = work()
    w >> cleanup()
    _, rec = await drive(Pipeline("p", cleanup_grace=0).add_task(w), started, nothing)
    assert ran == []
    assert rec.final()["cleanup"] is _S.CANCELLED


async def test_queued_always_task_runs_but_a_running_one_is_cancelled() -> None:
    started = anyio.Event()
    ran: list[str] = []

    @task(name="busy", trigger_rule="always")
    async def busy() -> None:
        started.set()  # holds the only slot, so "later" waits in the queue
        await anyio.sleep_forever()

    @task(name="later", trigger_rule="always")
    async def later() -> None:
        ran.append("later")

    pipeline = Pipeline("p", max_concurrency=1).add_task(busy()).add_task(later())
    gate = anyio.Event()

    async def open_gate() -> None:
        await started.wait()
        await anyio.wait_all_tasks_blocked()  # "later" is waiting for the only slot
        gate.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(open_gate)
        _, rec = await drive(pipeline, gate, nothing)
    assert ran == ["later"]
    assert rec.final() == {"busy": _S.CANCELLED, "later": _S.SUCCESS}


async def test_cancelled_fan_out_is_cancelled_and_cleanup_still_runs() -> None:
    all_started = anyio.Event()
    running: list[int] = []
    ran: list[str] = []

    @task(name="items")
    async def items() -> list[int]:
        return [1, 2, 3]

    @task(name="each")
    async def each(n: int) -> None:
        running.append(n)
        if len(running) == 3:
            all_started.set()
        await anyio.sleep_forever()

    @task(name="cleanup", trigger_rule="all_done")
    async def cleanup() -> None:
        ran.append("cleanup")

    mapped = each.expand(n=items())
    mapped >> cleanup()
    _, rec = await drive(Pipeline("p").add_task(mapped), all_started, nothing)
    final = rec.final()
    assert ran == ["cleanup"]
    assert final["each"] is _S.CANCELLED
    assert [final[f"each[{i}]"] for i in range(3)] == [_S.CANCELLED] * 3
    assert final["cleanup"] is _S.SUCCESS


@pytest.mark.parametrize("grace", [-1, "30", True, float("nan")], ids=["neg", "str", "bool", "nan"])
def test_cleanup_grace_is_validated(grace: Any) -> None:
    with pytest.raises(ArgumentError, match="cleanup_grace"):
        Pipeline("p", cleanup_grace=grace)


# ---------------------------------------------------------------- resumed runs


async def test_resumed_run_runs_its_cleanup_and_alert_tasks_again() -> None:
    store = MemoryStore()
    fail = [True]
    ran: list[str] = []

    @task(name="extract")
    async def extract() -> int:
        ran.append("extract")
        return 1

    @task(name="load")
    async def load() -> None:
        ran.append("load")
        if fail[0]:
            raise RuntimeError("load failed")

    @task(name="notify", trigger_rule="one_success")
    async def notify() -> None:
        ran.append("notify")

    @task(name="cleanup", trigger_rule="all_done")
    async def cleanup() -> None:
        ran.append("cleanup")

    e, ld, nt, cl = extract(), load(), notify(), cleanup()
    e >> ld >> cl
    e >> nt
    pipeline = Pipeline("p").add_task(e)
    with anyio.fail_after(GUARD):
        first = await pipeline.run(store=store)
        assert first.status == "FAILED"
        assert first.states["cleanup"] is _S.SUCCESS
        fail[0] = False
        ran.clear()
        second = await pipeline.run(store=store, resume=first.run_id)
    assert second.status == "SUCCESS"
    assert ran.index("cleanup") > ran.index("load")  # at the end of the resumed run
    assert sorted(ran) == ["cleanup", "load", "notify"]  # extract's result was reused
    assert "resumed" not in second.tasks["cleanup"].reason


@pytest.mark.parametrize("width", [1, 2, 5])
async def test_an_always_task_waiting_for_a_slot_runs_after_its_upstream_is_cancelled(
    width: int,
) -> None:
    # Every slot is taken by a task that waits; the ``always`` task, ready from the
    # start, waits for a slot when the run is cancelled. It never started, and its
    # upstream task is still running: it runs once that one has ended.
    ran: list[str] = []

    async def slow() -> None:
        await anyio.sleep_forever()

    async def cleanup() -> None:
        ran.append("cleanup")

    pipeline = Pipeline("always_waits", max_concurrency=width, cleanup_grace=GUARD)
    ups = [task(name=f"up{i}")(slow)() for i in range(width)]
    last = task(name="cleanup", trigger_rule="always")(cleanup)()
    ups[0] >> last
    for up in ups:
        pipeline.add_task(up)
    recorder = Recorder()
    with anyio.fail_after(GUARD):
        async with anyio.create_task_group() as tg:

            async def run() -> None:
                with anyio.CancelScope() as scope:
                    scopes.append(scope)
                    await pipeline.run(on_event=recorder)

            scopes: list[anyio.CancelScope] = []
            tg.start_soon(run)
            await anyio.wait_all_tasks_blocked()
            scopes[0].cancel()
    assert ran == ["cleanup"]
    assert recorder.final()["cleanup"] is _S.SUCCESS
