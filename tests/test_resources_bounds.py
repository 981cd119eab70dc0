"""Bounds on a run's resources, on asyncio and trio: an opening that never ends, a close
stuck in a worker thread, a close that raises CancelledError.

``fail_after(GUARD)`` is only a liveness bound: a run that hangs fails the test.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import anyio
import pytest

from dremioframe_async import Pipeline, TaskState, task
from dremioframe_async.orchestration import ResourceError, _resources

pytestmark = pytest.mark.anyio

GUARD = 10  # seconds; a liveness bound only


class NeverOpens:
    entered = 0

    async def __aenter__(self) -> NeverOpens:
        NeverOpens.entered += 1
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    async def __aexit__(self, *exc: object) -> None:
        raise AssertionError("never opened, so never closed")


async def test_an_opening_that_never_ends_is_bounded_by_the_task_timeout() -> None:
    @task(resources=("svc",), timeout=0.3)
    async def use(svc: Any) -> None:
        raise AssertionError("never called")

    with anyio.fail_after(GUARD):
        result = await Pipeline("stuck-open", resources={"svc": NeverOpens}).add_task(use()).run()
    assert result.states["use"] is TaskState.FAILED
    error = result.errors["use"]
    assert isinstance(error, ResourceError)
    assert "did not open within the timeout=0.3 s of 'use'" in str(error)


async def test_without_a_task_timeout_the_open_timeout_fails_it_for_the_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_resources, "OPEN_TIMEOUT", 0.3)
    NeverOpens.entered = 0

    @task(resources=("svc",))
    async def first(svc: Any) -> None:
        raise AssertionError("never called")

    @task(resources=("svc",), trigger_rule="all_done")
    async def second(svc: Any) -> None:
        raise AssertionError("never called")

    f = first()
    f >> second()
    with anyio.fail_after(GUARD):
        result = await Pipeline("never", resources={"svc": NeverOpens}).add_task(f).run()
    for key in ("first", "second"):
        error = result.errors[key]
        assert isinstance(error, ResourceError)
        assert "did not open" in str(error)
        assert "0.3 s" in str(error)
    assert NeverOpens.entered == 1  # failed for the run: the second task did not try again


async def test_opening_counts_in_the_first_attempt() -> None:
    """Opening takes 1.2 s, the body 1.2 s, the timeout is 2 s: counted, the attempt fails."""

    class SlowToOpen:
        async def __aenter__(self) -> SlowToOpen:
            await anyio.sleep(1.2)  # a slow login, not an ordering device
            return self

        async def __aexit__(self, *exc: object) -> None:
            return None

    @task(resources=("svc",), timeout=2.0)
    async def use(svc: Any) -> str:
        await anyio.sleep(1.2)
        return "done"

    with anyio.fail_after(GUARD):
        result = await Pipeline("slow", resources={"svc": SlowToOpen}).add_task(use()).run()
    assert result.states["use"] is TaskState.FAILED
    assert isinstance(result.errors["use"], TimeoutError)
    assert result.tasks["use"].attempts == 1


async def test_a_close_stuck_in_a_thread_does_not_hold_the_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_resources, "CLOSE_TIMEOUT", 0.3)
    release = threading.Event()
    closed = threading.Event()

    class FlushesInAThread:
        async def __aenter__(self) -> FlushesInAThread:
            return self

        async def __aexit__(self, *exc: object) -> None:
            # A blocking flush in a worker thread: no cancellation reaches it.
            await anyio.to_thread.run_sync(release.wait)
            closed.set()

    @task(resources=("out",))
    async def write(out: Any) -> int:
        return 1

    # Safety net so that a broken bound ends the test instead of hanging it.
    safety = threading.Timer(GUARD, release.set)
    safety.start()
    try:
        p = Pipeline("flush", resources={"out": FlushesInAThread}).add_task(write())
        result = await p.run()
        held_until_released = release.is_set()
    finally:
        release.set()
        safety.cancel()
    assert not held_until_released  # the run ended while the close was still stuck
    assert result.states["write"] is TaskState.SUCCESS
    assert result.status == "FAILED"
    assert "did not close within 0.3 s" in str(result.resource_errors["out"])
    with anyio.fail_after(GUARD):  # the abandoned close still finishes once the thread returns
        while not closed.is_set():
            await anyio.sleep(0.01)
    await anyio.wait_all_tasks_blocked()  # and its host task has ended


@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # trio's Cancelled cannot be raised
async def test_a_close_raising_cancelled_error_is_reported() -> None:
    class CancelsOnClose:
        async def __aenter__(self) -> CancelsOnClose:
            return self

        async def __aexit__(self, *exc: object) -> None:
            raise asyncio.CancelledError("a library's own cancellation")

    @task(resources=("svc",))
    async def use(svc: Any) -> int:
        return 1

    with anyio.fail_after(GUARD):
        result = await Pipeline("cancels", resources={"svc": CancelsOnClose}).add_task(use()).run()
    assert result.states["use"] is TaskState.SUCCESS
    assert result.status == "FAILED"
    error = result.resource_errors["svc"]
    assert isinstance(error, ResourceError)
    assert "CancelledError" in str(error)
